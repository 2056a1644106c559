"""``diagnose.check``: a run's findings from Python, as ``diagnose check RUN_DIR [--prove]`` prints them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diagnose.findings import Finding, check_run
from diagnose.findings.proof import PROOF_MAX_SEEDS, findings_with_proof
from diagnose.userstudy.prove import DEFAULT_SEEDS, prove_run, read_proof

__all__ = ["check", "Check"]


@dataclass(frozen=True)
class Check:
    """A run's findings (in order: root causes first) and, where it was proven, each finding's proof.

    ``str()`` gives what ``diagnose check`` prints; :meth:`status` a finding's proof status.
    """

    run_dir: Path
    findings: list[Finding]
    proof: dict | None

    @property
    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    @property
    def root_causes(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "root-cause"]

    def status(self, finding: str) -> str | None:
        """A finding's proof status ('proven', 'refuted', 'inconclusive', 'untested', 'failed'), or None where
        it was not proven (no proof, or not among the proof's findings)."""
        return next((f["status"] for f in (self.proof or {}).get("findings", []) if f["id"] == finding), None)

    def __str__(self) -> str:
        return findings_with_proof(self.findings, self.proof)[0]


def check(run_dir: str | os.PathLike, *, prove: bool = False, also: Sequence[str] = (),
          seeds: int | Sequence[int] = DEFAULT_SEEDS, max_seeds: int = PROOF_MAX_SEEDS, jobs: int | None = None,
          executor: object | None = None) -> Check:
    """Reads a run record (a ``diagnose.Monitor``'s ``run_dir``) and applies every rule.

    Args:
        run_dir: the run's directory.
        prove: also prove the findings: each mechanical fix trained over seeds against the run as it was, in
            ``run_dir/proof`` (resumed where it exists; the run's Monitor needs ``rebuild=``). Without it, a
            proof made before is read back where there is one.
        also: finding ids to prove although the rules did not report them (a reading to confirm or refute).
        seeds, max_seeds, jobs, executor: the proof's seeds to start with, the most it adds where a finding
            stays inconclusive, its worker processes and executor (:func:`diagnose.prove_run`).

    Raises:
        DiagnoseError: ``run_dir`` holds no run record, or (proving) no way to rebuild the run.
    """
    path = Path(run_dir)
    if prove or also:
        prove_run(path, also=tuple(also), seeds=seeds, max_seeds=max_seeds, jobs=jobs, executor=executor)
    return Check(path, check_run(path), read_proof(path))

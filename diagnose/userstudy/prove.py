"""Proving a run's findings: each mechanical fix trained over seeds against the model as it was.

``prove_run(RUN)`` reads how the run was built (its config's ``rebuild``), checks it,
and turns every finding whose fix can be applied mechanically
(:mod:`diagnose.findings.fixes`) into one counterfactual: a study (in ``RUN/proof`` by
default) whose base is the run's model at seeds 0..n-1 and whose variants are that
model with one fix each, run by the ablation harness (resumable, any executor). Two
findings with the same fix share its runs. The verdict's effects then mark each
finding proven, refuted or inconclusive (:mod:`diagnose.findings.proof`); the proof
is written into the study's ``verdict.json`` and returned.

``prove(build, data, settings)`` does the same from Python without a run: it trains
the base first, reads the findings of its seed-0 run, and proves them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from diagnose import runrecord, studydir
from diagnose.errors import DiagnoseError
from diagnose.findings import RunView, check_view, spec_of
from diagnose.findings.fixes import FIXES, remedy_for
from diagnose.findings.proof import PROOF_MAX_SEEDS, format_proof, proof_of, proof_seeds
from diagnose import refs
from diagnose.findings.verdict_types import Verdict, read_verdict, write_verdict
from diagnose.rebuild import UserRunConfig, from_record, rebuild_entry
from diagnose.userstudy.spec import KerasSpec, build_keras_spec

__all__ = ["prove_run", "prove", "Proof", "proof_spec", "read_proof", "study_verdict", "DEFAULT_SEEDS", "BASE"]

# Three seeds: the fewest that give a paired t-interval (two degrees of freedom); a
# clear fix or a dead end shows already, and --seeds buys certainty for the rest.
DEFAULT_SEEDS = 3
BASE = "run"  # the unfixed model's variant in a proof study
COMBINED = "combined"  # the plan entry (and factor) of every root cause's fix applied together


@dataclass(frozen=True)
class Proof:
    """A proof's outcome: where its study is and, per finding, its status (see :mod:`diagnose.findings.proof`)."""

    dir: Path
    proof: dict

    @property
    def findings(self) -> list[dict]:
        return self.proof["findings"]

    def status(self, finding: str) -> str | None:
        """The status of ``finding`` ('proven', 'refuted', 'inconclusive', 'untested'), or None if not there."""
        return next((f["status"] for f in self.findings if f["id"] == finding), None)

    def __str__(self) -> str:
        return format_proof(self.proof)


def _plan(view: RunView, also=()) -> tuple[dict, list[dict]]:
    """The fix factors ({finding: {label: level}}) and the plan of each finding."""
    factors, planned, variants = {}, [], {}
    findings = [(f.id, f.kind, f.title) for f in check_view(view)]
    found = {fid for fid, _, _ in findings}
    for fid in also:
        if fid not in found:
            spec = spec_of(fid)
            if spec is None:
                raise DiagnoseError(f"no finding is called {fid!r}; ids with a mechanical fix: {', '.join(FIXES)}")
            findings.append((fid, spec.kind, "not found by the rules; tested on request"))
    causes = []  # (finding, remedy) of the root causes with a fix, for the fix of them all together
    for rank, (fid, kind, title) in enumerate(findings, start=1):
        entry = {"id": fid, "kind": kind, "title": title, "rank": rank}
        remedy = remedy_for(fid, view)
        if remedy is None:
            entry["untested"] = ("no mechanical fix is declared for it" if fid not in FIXES else
                                 f"its fix ({FIXES[fid].what}) does not apply to this model")
        else:
            key = repr(sorted(remedy.change.items()))
            if key not in variants:
                variants[key] = f"{BASE} | {fid}={remedy.label}"
                factors[fid] = {remedy.label: {"changes": [remedy.change]}}
                # Proven together: the root causes the rules found (not readings tested on request), one fix of
                # each kind (two settings of one learning rate are alternatives, not parts of one fix).
                if kind == "root-cause" and fid in found and all(
                        (r.change.get("op"), _output_of(r.change)) != (remedy.change.get("op"),
                                                                       _output_of(remedy.change))
                        for _, r in causes):
                    causes.append((fid, remedy))
            entry.update(variant=variants[key], fix=remedy.text, change=remedy.change)
            if FIXES[fid].judged_by != "loss":
                entry["judged_by"] = FIXES[fid].judged_by
            if _output_of(remedy.change) is not None:  # a fix of one output of several: judged on that output
                entry["output"] = _output_of(remedy.change)
        planned.append(entry)
    if len(causes) >= 2:  # findings that hold together are proven together too, beside each part
        label = "+".join(remedy.label for _, remedy in causes)
        factors[COMBINED] = {label: {"changes": [remedy.change for _, remedy in causes]}}
        judged = {FIXES[fid].judged_by for fid, _ in causes} - {"loss"}
        entry = {"id": COMBINED, "kind": "combined", "rank": len(planned) + 1,
                 "title": f"the fixes of {', '.join(fid for fid, _ in causes)} together",
                 "parts": [fid for fid, _ in causes], "variant": f"{BASE} | {COMBINED}={label}",
                 "fix": " and ".join(remedy.text for _, remedy in causes),
                 "change": {"op": "all", "changes": [remedy.change for _, remedy in causes]}}
        if judged:
            entry["judged_by"] = "task" if "task" in judged else judged.pop()
        planned.append(entry)
    return factors, planned


def _output_of(change: dict) -> str | None:
    """The output a change acts on (a model with several), or None."""
    if change.get("op") == "all":
        return next((o for c in change.get("changes") or [] if (o := _output_of(c)) is not None), None)
    return change.get("output")


def proof_spec(rebuild: UserRunConfig, view: RunView | None, seeds=DEFAULT_SEEDS, also=(), run: str | None = None,
               name: str = "proof", max_seeds: int | None = None) -> KerasSpec:
    """The proof study of a run (``view`` None: the base alone, before there is a run to read)."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    factors, planned = _plan(view, also) if view is not None else ({}, [])
    study = {"name": name, "builder": rebuild.builder, "data": rebuild.data, "seeds": seeds}
    if max_seeds is not None:
        study["max_seeds"] = max(max_seeds, len(seeds))
    raw = {"study": study,
           "bases": {BASE: {**rebuild.settings, **({"changes": list(rebuild.changes)} if rebuild.changes else {})}},
           "factors": factors, "fit": rebuild.fit, "monitor": rebuild.monitor}
    if view is not None:
        raw["proof"] = {"run": run, "base": BASE, "findings": planned}
    return build_keras_spec(raw)


def _executor(spec: KerasSpec, jobs: int | None, executor):
    from diagnose.ablation.executors import InlineExecutor, make_executor

    if executor is not None:
        return executor
    if spec.local or jobs == 1:
        return InlineExecutor()  # a builder only this process knows; or one job: no process to start
    return make_executor("local", jobs=jobs or os.cpu_count() or 1)


def _errors(manifest: dict) -> dict:
    errors = {}
    for e in manifest["runs"]:
        if e["status"] == "failed" and e.get("error"):
            errors.setdefault(e["variant"], e["error"])
    return errors


def prove_run(run_dir: str | os.PathLike, *, seeds: int | Sequence[int] = DEFAULT_SEEDS,
              max_seeds: int = PROOF_MAX_SEEDS, out: str | os.PathLike | None = None, jobs: int | None = None,
              executor: object | None = None, also: Sequence[str] = (),
              progress: Callable[[dict], None] | None = None) -> Proof:
    """Proves the findings of the run in ``run_dir`` (see the module docstring).

    Args:
        run_dir: a run record whose config.json has ``rebuild``.
        seeds: a count (seeds 0..n-1) or a list of seeds to start with.
        max_seeds: the most seeds a finding still inconclusive gets, added in rounds
            (:func:`~diagnose.findings.proof.proof_seeds`); ``seeds``' count: none added.
        out: the proof study's directory (default ``run_dir/proof``); a proof there is
            resumed, or replaced (keeping the runs both share) when the plan changed.
        jobs: concurrent runs (default: one per core; 1 trains them in this process).
        executor: an executor of :mod:`diagnose.ablation.executors` instead.
        also: finding ids to test although the rules did not report them.
        progress: called after each run, as by ``run_sweep``.

    Raises:
        DiagnoseError: no run record, an incomplete one, or one without ``rebuild``.
    """
    from diagnose.ablation.study import run_study

    run = Path(run_dir)
    runrecord.require_record(run)
    runrecord.readable_problems(run, "train it again first")
    rebuild = from_record(runrecord.read_config(run))
    if rebuild is None:
        raise DiagnoseError(f"{run} does not say how to build its model again, so its findings cannot be proven; "
                            "record it with diagnose.Monitor(run_dir, rebuild={'builder': build, 'data': data, "
                            "'settings': {...}}), or run it in a study of your model")
    spec = proof_spec(rebuild, RunView.load(run), seeds, also, run=str(run), max_seeds=max_seeds)
    out = Path(out) if out is not None else run / runrecord.PROOF
    plan = spec.about["proof"]

    def seeds_for(verdict: Verdict) -> dict:
        return proof_seeds(proof_of(verdict, plan, study=out), max_seeds)

    manifest, verdict = run_study(spec, out, _executor(spec, jobs, executor), progress=progress, force=True,
                                  seeds_for=seeds_for)
    proof = proof_of(verdict, plan, _errors(manifest), study=out)
    with studydir.StudyLock(out):
        write_verdict(out, dataclasses.replace(verdict, proof=proof))
    return Proof(out, proof)


def prove(builder: refs.Builder, data: refs.DataFn, settings: dict | None = None, *, fit: dict | None = None,
          seeds: int | Sequence[int] = DEFAULT_SEEDS, max_seeds: int = PROOF_MAX_SEEDS,
          out: str | os.PathLike | None = None, jobs: int | None = None, also: Sequence[str] = (),
          monitor: dict | None = None, progress: Callable[[dict], None] | None = None) -> Proof:
    """Trains ``builder(settings)`` on ``data``, reads its findings and proves them over seeds.

    Args:
        builder: a function (or ``"module:function"``) taking the settings and returning
            a compiled keras.Model.
        data: a function (or reference) returning ``(train, valid)`` or ``model.fit``
            arguments (:mod:`diagnose.userstudy.data`).
        settings: passed to both (a dict of JSON values).
        fit: ``model.fit`` arguments for every run (epochs, batch_size...).
        seeds, max_seeds, jobs, also, progress: as :func:`prove_run`.
        out: the proof study's directory (default ``proofs/<builder name>``); the run
            whose findings are proven is its base at seed 0.
        monitor: ``diagnose.Monitor`` arguments (log_every, probe_every).
    """
    from diagnose.ablation.sweep import run_sweep

    rebuild = UserRunConfig.from_dict(rebuild_entry({"builder": builder, "data": data, "settings": settings or {},
                                                     "fit": fit or {}, "monitor": {"tensorboard": False,
                                                                                   **(monitor or {})}}))
    base = proof_spec(rebuild, None, seeds)
    out = Path(out) if out is not None else Path("proofs") / base.builder.rsplit(":", 1)[-1].split(".")[-1]
    executor = _executor(base, jobs, None)
    run_sweep(base, out, executor, progress=progress, force=True)
    first = next(t for t in base.tasks() if t.seed == base.seeds[0])
    return prove_run(studydir.run_path(out, first.run_id), seeds=seeds, max_seeds=max_seeds, out=out,
                     executor=executor, also=also, progress=progress)


def read_proof(path: str | os.PathLike) -> dict | None:
    """The proof of a run's findings, or None: its own (``RUN/proof``), the proof study's it is the
    proved run of (``diagnose.prove`` keeps it there), or a proof study's when ``path`` is one."""
    path = Path(path)
    for study in (path, path / runrecord.PROOF, path.parent.parent):
        if not studydir.is_study_dir(study):
            continue
        verdict = read_verdict(study)
        proof = verdict.proof if verdict is not None else None
        if proof and (study != path.parent.parent or Path(str(proof.get("run"))).resolve() == path.resolve()):
            return proof
    return None


def study_verdict(study: str | os.PathLike) -> Verdict:
    """A study's verdict computed from its records, with the proof where the study is one."""
    from diagnose.findings.verdict import compute_verdict

    verdict = compute_verdict(study)
    plan = studydir.read_manifest(study).get("proof")
    if isinstance(plan, dict) and verdict.mode != "error":
        verdict = dataclasses.replace(verdict, proof=proof_of(verdict, plan, _errors(studydir.read_manifest(study)),
                                                              study=study))
    return verdict

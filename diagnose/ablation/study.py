"""A study end to end: the sweep, the verdict, and the follow-up runs the verdict asks for."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from diagnose import studydir
from diagnose.ablation.spec import Spec
from diagnose.ablation.sweep import run_sweep
from diagnose.findings.verdict import compute_verdict, plan_follow_ups

__all__ = ["run_study", "conclude"]


def run_study(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True,
              progress: Callable[[dict], None] | None = None, force: bool = False) -> tuple[dict, dict]:
    """Runs the sweep, then the verdict's follow-ups; writes the verdict. Returns (manifest, verdict).

    The study directory stays locked throughout (see :class:`~diagnose.studydir.StudyLock`);
    ``force`` replaces a study of another spec there (see :func:`run_sweep`).
    """
    with studydir.StudyLock(out_dir):
        manifest = run_sweep(spec, out_dir, executor, progress=progress, force=force)
        verdict, manifest = conclude(spec, out_dir, executor, follow_up=follow_up, progress=progress,
                                     manifest=manifest)
    return manifest, verdict


def conclude(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True, progress=None,
             manifest: dict | None = None) -> tuple[dict, dict]:
    """Computes the verdict; while no tested set of switches recovers the paper, runs the
    combinations it proposes (pairs, then larger, greedily) and recomputes. Writes the verdict."""
    out = Path(out_dir)
    with studydir.StudyLock(out):
        verdict = compute_verdict(out)
        rounds = 0
        while follow_up:
            tried = {r["variant"] for r in studydir.read_manifest(out)["runs"]}
            plan = plan_follow_ups(verdict, tried)
            if not plan:
                break
            rounds += 1
            # The follow-ups join the study's variants; the spec as given (and its digest) stays.
            spec = dataclasses.replace(spec, combos=spec.combos + tuple(plan))
            manifest = run_sweep(spec, out, executor, progress=progress)
            verdict = compute_verdict(out)
        verdict["follow_up_rounds"] = rounds
        studydir.write_verdict(out, verdict)
    return verdict, manifest or studydir.read_manifest(out)

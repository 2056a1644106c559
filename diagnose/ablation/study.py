"""A study end to end: the sweep, then rounds of what its verdict asks for, then the verdict.

Each round computes the verdict from the records on disk and asks it for
combinations of switches it has not run (:func:`~diagnose.findings.verdict_plan.plan_follow_ups`)
and for more seeds where an interval is inconclusive
(:func:`~diagnose.findings.verdict_plan.plan_seeds`, up to the spec's
``[study] max_seeds``); one sweep trains both, and the next round looks again.
Nothing here knows which model a study trains: a spec's variants, its seeds and
``tasks(...)`` are all it uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from diagnose import studydir
from diagnose.ablation.seeding import SeedPlan
from diagnose.ablation.spec import Spec
from diagnose.ablation.sweep import adaptive_state, run_sweep
from diagnose.findings.verdict import compute_verdict, plan_follow_ups, plan_seeds

__all__ = ["run_study", "conclude", "MAX_ROUNDS"]

# Rounds of follow-ups and added seeds after the first sweep. Seeds go from the
# spec's to the cap in one or two rounds (each asks for what its estimate says the
# interval needs) and combinations grow by one switch per round; 6 leaves room for
# both without letting a study that never settles run on.
MAX_ROUNDS = 6


def run_study(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True,
              progress: Callable[[dict], None] | None = None, force: bool = False) -> tuple[dict, dict]:
    """Runs the sweep, then the verdict's rounds; writes the verdict. Returns (manifest, verdict).

    A study resumed in the same directory starts from the seeds and combinations it
    had already added. The study directory stays locked throughout (see
    :class:`~diagnose.studydir.StudyLock`); ``force`` replaces a study of another spec
    there (see :func:`run_sweep`).
    """
    with studydir.StudyLock(out_dir):
        plan, follow_ups = adaptive_state(out_dir, spec)
        manifest = run_sweep(spec, out_dir, executor, progress=progress, force=force, plan=plan,
                             follow_ups=follow_ups)
        verdict, manifest = conclude(spec, out_dir, executor, follow_up=follow_up, progress=progress,
                                     manifest=manifest, plan=plan, follow_ups=follow_ups)
    return manifest, verdict


def conclude(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True, progress=None,
             manifest: dict | None = None, plan: SeedPlan | None = None,
             follow_ups: tuple = ()) -> tuple[dict, dict]:
    """Computes the verdict and, while it asks for combinations or seeds, runs them and looks again.

    Writes the verdict, with ``follow_up_rounds`` (how many rounds ran). Returns
    (verdict, manifest).
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    with studydir.StudyLock(out):
        if plan is None:
            plan, follow_ups = adaptive_state(out, spec)
        verdict = compute_verdict(out)
        rounds = 0
        while follow_up and rounds < MAX_ROUNDS:
            tried = {r["variant"] for r in studydir.read_manifest(out)["runs"]}
            combos = tuple(c for c in plan_follow_ups(verdict, tried) if c not in follow_ups)
            more = plan.with_counts(plan_seeds(verdict))
            if not combos and more == plan:
                break
            rounds += 1
            plan, follow_ups = more, follow_ups + combos
            manifest = run_sweep(spec, out, executor, progress=progress, plan=plan, follow_ups=follow_ups)
            verdict = compute_verdict(out)
        verdict["follow_up_rounds"] = rounds
        verdict["follow_up_s"] = time.perf_counter() - t0  # the rounds and verdicts after the first sweep
        studydir.write_verdict(out, verdict)
    return verdict, manifest or studydir.read_manifest(out)

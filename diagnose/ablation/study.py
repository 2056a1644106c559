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

import dataclasses
import time
from pathlib import Path
from typing import Callable

from diagnose import runrecord, studydir
from diagnose.ablation.seeding import SeedPlan
from diagnose.ablation.sweep import adaptive_state, run_sweep
from diagnose.findings.verdict import compute_verdict, plan_follow_ups, plan_seeds
from diagnose.findings.verdict_types import Sweep, Verdict, write_verdict

__all__ = ["run_study", "conclude", "study_notes", "MAX_ROUNDS"]

# Rounds of follow-ups and added seeds after the first sweep. Seeds go from the
# spec's to the cap in one or two rounds (each asks for what its estimate says the
# interval needs) and combinations grow by one switch per round; 6 leaves room for
# both without letting a study that never settles run on.
MAX_ROUNDS = 6


def run_study(spec, out_dir: str | Path, executor, *, follow_up: bool = True,
              progress: Callable[[dict], None] | None = None, force: bool = False,
              seeds_for: Callable[[Verdict], dict] | None = None) -> tuple[dict, Verdict]:
    """Runs the sweep, then the verdict's rounds; writes the verdict. Returns (manifest, verdict).

    A study resumed in the same directory starts from the seeds and combinations it
    had already added. The study directory stays locked throughout (see
    :class:`~diagnose.studydir.StudyLock`); ``force`` replaces a study of another spec
    there (see :func:`run_sweep`). ``seeds_for(verdict) -> {variant: seeds}`` decides
    the seeds of each round instead of the verdict's own
    :func:`~diagnose.findings.verdict_plan.plan_seeds` (a proof asks for its own).
    """
    with studydir.StudyLock(out_dir):
        plan, follow_ups = adaptive_state(out_dir, spec)
        manifest = run_sweep(spec, out_dir, executor, progress=progress, force=force, plan=plan,
                             follow_ups=follow_ups)
        verdict, manifest = conclude(spec, out_dir, executor, follow_up=follow_up, progress=progress,
                                     manifest=manifest, plan=plan, follow_ups=follow_ups,
                                     sweeps=[_sweep_timing(manifest)], seeds_for=seeds_for)
    return manifest, verdict


def _sweep_timing(manifest: dict) -> dict:
    """What one sweep trained and how long it took (from the manifest it wrote): the manifest keeps both, the
    verdict the runs only."""
    t = manifest.get("timings") or {}
    return {"runs": manifest["totals"]["runs"] - (t.get("resumed_runs") or 0), "wall_s": t.get("wall_time_s")}


def conclude(spec, out_dir: str | Path, executor, *, follow_up: bool = True, progress=None,
             manifest: dict | None = None, plan: SeedPlan | None = None,
             follow_ups: tuple = (), sweeps: list | None = None,
             seeds_for: Callable[[Verdict], dict] | None = None) -> tuple[Verdict, dict]:
    """Computes the verdict and, while it asks for combinations or seeds, runs them and looks again.

    Writes the verdict, with ``follow_up_rounds`` (how many rounds ran) and ``sweeps`` (the runs
    each sweep trained, ``sweeps`` given first), and the manifest's ``sweeps`` (each with its wall
    seconds) and ``follow_up_s`` (the rounds and verdicts after the first sweep): wall-clock times
    are the command's, not the verdict's, which is the same bytes for the same records.
    Returns (verdict, manifest).
    """
    sweeps = list(sweeps or [])
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
            more = plan.with_counts((seeds_for or plan_seeds)(verdict))
            if not combos and more == plan:
                break
            rounds += 1
            plan, follow_ups = more, follow_ups + combos
            manifest = run_sweep(spec, out, executor, progress=progress, plan=plan, follow_ups=follow_ups)
            sweeps.append(_sweep_timing(manifest))
            verdict = compute_verdict(out)
        verdict = dataclasses.replace(verdict, follow_up_rounds=rounds,
                                      sweeps=tuple(Sweep(s["runs"]) for s in sweeps))
        write_verdict(out, verdict)
        manifest = {**studydir.read_manifest(out), "sweeps": sweeps, "follow_up_s": time.perf_counter() - t0}
        studydir.write_manifest(out, manifest)
    return verdict, manifest


def study_notes(target: Path, verdict: Verdict) -> list[str]:
    """Lines for ``diagnose check`` on a study: runs without a whole, finished record, and the
    combinations and seeds the verdict wants that have not run (check only reads; run-ablation runs them)."""
    runs = studydir.read_manifest(target)["runs"]
    kinds: dict[str, int] = {}
    for e in runs:
        run = studydir.run_path(target, e["id"])
        problems = runrecord.record_problems(run) if run.is_dir() else ["missing"]
        status = runrecord.read_summary(run).get("status") if not problems else None
        kind = ("not run yet" if problems == ["missing"] else "never finished" if problems == [
            runrecord.NEVER_FINISHED] else "damaged" if problems else "failed" if status == "failed" else None)
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
    lines = []
    if kinds:
        what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        lines.append(f"{sum(kinds.values())} of {len(runs)} runs have no whole, finished record ({what}); "
                     f"run them with: diagnose run-ablation --out {target}")
    plan = plan_follow_ups(verdict, {e["variant"] for e in runs})
    if plan:
        names = "; ".join(" + ".join(f"{f}={lv}" for f, lv in switches) for _, switches in plan)
        lines.append(f"the verdict wants {len(plan)} follow-up combinations not yet run ({names}); "
                     f"run them with: diagnose run-ablation --out {target}")
    seeds = plan_seeds(verdict)
    if seeds:
        lines.append(f"the verdict wants more seeds for {len(seeds)} variants whose comparisons are still "
                     f"inconclusive (up to {max(seeds.values())} seeds); run them with: "
                     f"diagnose run-ablation --out {target}")
    return lines

"""A study end to end: the sweep, the verdict, and the follow-up runs the verdict asks for."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from diagnose import runrecord
from diagnose.ablation.spec import Spec
from diagnose.ablation.sweep import run_sweep
from diagnose.findings.verdict import compute_verdict, plan_follow_ups

__all__ = ["run_study", "conclude", "VERDICT"]

VERDICT = "verdict.json"


def run_study(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True,
              progress: Callable[[dict], None] | None = None) -> tuple[dict, dict]:
    """Runs the sweep, then the verdict's follow-ups; writes verdict.json. Returns (manifest, verdict)."""
    manifest = run_sweep(spec, out_dir, executor, progress=progress)
    verdict, manifest = conclude(spec, out_dir, executor, follow_up=follow_up, progress=progress,
                                 manifest=manifest)
    return manifest, verdict


def conclude(spec: Spec, out_dir: str | Path, executor, *, follow_up: bool = True, progress=None,
             manifest: dict | None = None) -> tuple[dict, dict]:
    """Computes the verdict; while no tested set of switches recovers the paper, runs the
    combinations it proposes (pairs, then larger, greedily) and recomputes. Writes verdict.json."""
    out = Path(out_dir)
    verdict = compute_verdict(out)
    rounds = 0
    while follow_up:
        tried = {r["variant"] for r in runrecord.read_json(out / "manifest.json")["runs"]}
        plan = plan_follow_ups(verdict, tried)
        if not plan:
            break
        rounds += 1
        raw = dict(spec.raw)
        raw["combos"] = dict(raw.get("combos", {}))
        for i, (base, switches) in enumerate(plan):
            raw["combos"][f"follow-up {rounds}.{i + 1}"] = {"base": base, **dict(switches)}
        spec = dataclasses.replace(spec, raw=raw, combos=spec.combos + tuple(plan))
        manifest = run_sweep(spec, out, executor, progress=progress)
        verdict = compute_verdict(out)
    verdict["follow_up_rounds"] = rounds
    runrecord.write_json(out / VERDICT, verdict)
    return verdict, manifest or runrecord.read_json(out / "manifest.json")

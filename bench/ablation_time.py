"""Runs per second of the sweep's workers, and the wall time of the default `diagnose run-ablation`.

1. In one window, alternating (A B B A), the same sample of the default study's runs
   (eight variants over three seeds: six kinds of compiled steps) through two
   executors of two worker processes each:

   * per-run: every run traces its own steps, as each run of a sweep did before
     (``"reuse": False``, no groups);
   * shared: runs of one kind go to a worker together and share one traced step,
     which the worker keeps (:mod:`diagnose.memn2n.jobs`).

   Each wall time includes starting the two workers (TensorFlow imported in each).
2. The default study as a user runs it (a fresh process, `--quiet`), into a temporary
   directory: wall time of the whole command including the report, the study's
   runs, rounds and seeds per comparison, and the verdict.

Prints both and writes bench/results/ablation.json. Absolute times on a shared
machine move with its load; the per-run / shared ratio is taken within one window.

    python bench/ablation_time.py [--skip-study] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from diagnose import studydir  # noqa: E402
from diagnose.findings.verdict_types import read_verdict  # noqa: E402

SAMPLE = ("as-posted", "as-posted | temporal=ones", "as-posted | output=softmax", "as-posted | loss_reduction=sum",
          "paper", "paper | temporal=uniform", "paper | output=relu", "paper | h_wiring=scores")


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process and its own children.

    On a machine other sessions load, wall time stretches with their load; the CPU
    time the command itself used does much less, and over the cores it is the wall
    time the command would take alone (where its work runs in parallel).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sample_payload(scratch: Path, reuse: bool) -> list[dict]:
    from diagnose.memn2n.spec import default_spec
    from diagnose.memn2n.data.load import load_corpus

    spec = default_spec()
    corpus = load_corpus(spec.data, memory_size=spec.sizes["memory_size"])
    return [{"run_id": t.run_id, "trainer": t.trainer, "config": t.config.to_dict(), "scratch": str(scratch),
             **({"group": t.group} if reuse else {"reuse": False})}
            for t in spec.tasks(corpus.vocab_size) if t.variant.name in SAMPLE]


def _time_sample(reuse: bool, jobs: int) -> dict:
    from diagnose.ablation.executors import LocalExecutor

    with tempfile.TemporaryDirectory() as tmp:
        payload = _sample_payload(Path(tmp), reuse)
        t0 = time.perf_counter()
        with LocalExecutor(jobs) as executor:
            results = list(executor.run(payload))
        wall = time.perf_counter() - t0
    bad = [r for r in results if r["status"] not in ("completed", "diverged")]
    if bad:
        sys.exit(f"a sample run failed: {bad[0]['error']}")
    return {"wall_s": wall, "runs": len(results), "runs_per_s": len(results) / wall,
            "run_time_sum_s": sum(r["wall_time_s"] for r in results)}


def _default_study(jobs: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        cmd = [sys.executable, "-m", "diagnose.cli", "run-ablation", "--out", str(study), "--quiet"]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        t0, cpu0 = time.perf_counter(), _children_cpu()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if proc.returncode != 0:
            sys.exit(f"run-ablation failed: {proc.stderr.strip()}")
        manifest = studydir.read_manifest(study)
        verdict = read_verdict(study)
        report_s = None
        index = study / studydir.REPORT / "index.html"
        if index.is_file():  # the report is written last: from the verdict file to the page
            report_s = index.stat().st_mtime - (study / studydir.VERDICT).stat().st_mtime
    runs = [r["wall_time_s"] for r in manifest["runs"] if r["wall_time_s"] is not None]
    text = proc.stdout.split("\nverdict: ", 1)[-1]
    wanted = [c for c in verdict.comparisons if c.kind != "residual"]
    fix = verdict.smallest_fix
    return {
        "wall_time_s": wall, "cpu_s": cpu, "report_s": report_s, "runs": len(runs), "totals": manifest["totals"],
        "rounds": verdict.follow_up_rounds, "run_time_sum_s": sum(runs),
        "sweeps": manifest.get("sweeps"),  # each sweep's runs and wall seconds (the manifest keeps the timings)
        "sweeps_wall_s": sum(s.get("wall_s") or 0 for s in manifest.get("sweeps") or ()),
        "seeds_per_variant": {"min": verdict.seeds.min, "max": verdict.seeds.max},
        "comparisons": [{"kind": c.kind, "variant": c.variant, "against": c.against, "n": c.n, "status": c.status,
                         "effect": c.effect.mean, "ci": [c.effect.lo, c.effect.hi]} for c in wanted],
        "root_causes": [rc.factor for rc in verdict.root_causes],
        "smallest_fix": fix and {"switches": list(fix.switches), "share_closed": fix.share_closed, "n": fix.effect.n,
                                 "confident": fix.confident, "stable": fix.stable, "reaches": fix.reaches,
                                 "residual": fix.residual.to_json()},
        "verdict": ("verdict: " + text).split("\nreport: ")[0].splitlines(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    ap.add_argument("--rounds", type=int, default=2, help="A B B A rounds of the sample (each times both)")
    ap.add_argument("--skip-study", action="store_true", help="time the sample only")
    ap.add_argument("--skip-sample", action="store_true", help="time the default study only")
    args = ap.parse_args()
    jobs = args.jobs or os.cpu_count() or 1
    result: dict = {"jobs": jobs}
    previous = common.RESULTS / "ablation.json"
    if previous.is_file():  # a part skipped now keeps its last figures
        import json

        kept = json.loads(previous.read_text(encoding="utf-8"))
        result.update({k: kept[k] for k in ("sample", "study") if k in kept})
    if not args.skip_sample:
        times: dict[str, list] = {"per_run": [], "shared": []}
        for r in range(args.rounds):
            for name in (("per_run", "shared") if r % 2 == 0 else ("shared", "per_run")):
                times[name].append(_time_sample(name == "shared", jobs))
                print(f"{name:>8}: {times[name][-1]['runs']} runs in {times[name][-1]['wall_s']:.1f} s", flush=True)
        rate = {k: statistics.median(t["runs_per_s"] for t in v) for k, v in times.items()}
        result["sample"] = {"variants": list(SAMPLE), "seeds": 3, "rounds": times,
                            "runs_per_s": rate, "shared_over_per_run": rate["shared"] / rate["per_run"]}
        print(f"runs per second: per-run {rate['per_run']:.2f}, shared {rate['shared']:.2f} "
              f"({rate['shared'] / rate['per_run']:.2f}x)")
    if not args.skip_study:
        study = result["study"] = _default_study(args.jobs)
        settled = sum(c["status"] != "inconclusive" for c in study["comparisons"])
        print(f"default study: {study['wall_time_s']:.1f} s wall, {study['cpu_s']:.1f} CPU s "
              f"({study['sweeps_wall_s']:.1f} s of the wall the sweeps, {study['report_s'] or 0:.1f} s the report), "
              f"{study['runs']} runs in {study['rounds']} added rounds, {study['seeds_per_variant']['min']}-"
              f"{study['seeds_per_variant']['max']} seeds a variant, {settled} of {len(study['comparisons'])} "
              "comparisons settled")
        print("\n".join(study["verdict"]))
    print(f"-> {common.write_result('ablation', result)}")


if __name__ == "__main__":
    main()

"""Wall time of the default `diagnose run-ablation`, and how it splits.

Runs the command as a user would (a fresh process, the embedded corpus, default
jobs) into a temporary directory, then reads the manifest for the per-run times.
Prints a table and writes bench/results/ablation.json.

    python bench/ablation_time.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (the checkout first on the import path, for the command too)
from diagnose import studydir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None, help="concurrent runs (default: the command's default)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ablation.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        cmd = [sys.executable, "-m", "diagnose.cli", "run-ablation", "--out", str(study), "--quiet"]
        if args.jobs:
            cmd += ["--jobs", str(args.jobs)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"run-ablation failed: {proc.stderr.strip()}")
        manifest = studydir.read_manifest(study)
        runs = [r["wall_time_s"] for r in manifest["runs"] if r["wall_time_s"] is not None]
        jobs = args.jobs or os.cpu_count() or 1
        # The verdict's lines, without the report's path (a temporary directory).
        verdict = [line for line in proc.stdout.split("verdict", 1)[-1].strip().splitlines()
                   if not line.startswith("report:")]
    result = {
        "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "jobs": jobs,
        "wall_time_s": wall, "runs": len(runs), "totals": manifest["totals"],
        "run_time_mean_s": statistics.fmean(runs), "run_time_median_s": statistics.median(runs),
        "run_time_sum_s": sum(runs),
        # What the workers did not spend inside runs: process start-up, TF import,
        # the driver's writes and the verdict.
        "outside_runs_s": wall - sum(runs) / jobs,
        "verdict": verdict[:6],
    }
    print(f"{'wall s':>8}{'runs':>6}{'mean run s':>12}{'sum runs s':>12}{'outside runs s':>16}")
    print(f"{wall:>8.1f}{len(runs):>6}{result['run_time_mean_s']:>12.2f}{result['run_time_sum_s']:>12.1f}"
          f"{result['outside_runs_s']:>16.1f}")
    from diagnose.runrecord import write_json

    write_json(args.out, result)


if __name__ == "__main__":
    main()

"""One entry point for the benchmarks.

    python bench/run.py            # the quick ones (< 10 minutes on 2 cores): throughput,
                                   # instrument overhead, memory, default-study wall time
    python bench/run.py --ptb 2    # ... and then the PTB reproduction for 2 epochs (long;
                                   # resumes from its checkpoints when run again)
    python bench/run.py --only throughput memory
    python bench/run.py --only step_parts     # where a paper-preset step goes (~1 minute; not in the quick set)
    python bench/run.py --only replica_step   # stacked replicas against shared steps (not in the quick set)
    python bench/run.py --only ptb_gap        # the whole gap on PTB (long; not in the quick set)

Each benchmark runs as its own process (so one cannot warm or load the next),
prints its table and writes bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "throughput": ["throughput.py"],
    "overhead": ["overhead.py"],
    "memory": ["memory.py"],
    "ablation": ["ablation_time.py"],
}
# Run on request only (--only NAME).
EXTRA = {
    "step_parts": ["step_parts.py"],
    "replica_step": ["replica_step.py"],  # stacked replicas against shared steps (~5 minutes)
    "ptb_gap": ["ptb_gap.py"],  # the default study on PTB, 2,000 words (long; resumable)
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(QUICK) + list(EXTRA), default=list(QUICK),
                    help="benchmarks to run (default: the quick ones)")
    ap.add_argument("--ptb", type=float, default=None, metavar="EPOCHS",
                    help="also run the PTB reproduction for this many epochs")
    ap.add_argument("--corpus", default=None, help="PTB directory (default: ../shared/data/ptb)")
    args = ap.parse_args()
    jobs = [(name, {**QUICK, **EXTRA}[name]) for name in args.only]
    if args.ptb is not None:
        jobs.append(("ptb", ["ptb.py", "--epochs", str(args.ptb)]))
    failed, times = [], {}
    for name, cmd in jobs:
        extra = ["--corpus", args.corpus] if args.corpus and name in ("throughput", "overhead", "memory", "ptb",
                                                                        "ptb_gap") else []
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, *cmd, *extra], cwd=HERE)
        times[name] = time.perf_counter() - t0
        if code:
            failed.append(name)
    print("== wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
          + f"; total {sum(times.values()) / 60:.1f} min")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

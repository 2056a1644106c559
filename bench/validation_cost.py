"""What validating every 50 steps costs the default study, against every 325 as before.

In one process, alternating (A B B A), the same sample of the default study's runs
trained twice: with the default spec's ``eval_every`` (50: 13 validation passes on
650 steps, enough points for a curve) and with the old 325 (3 passes). Runs of one
kind share their traced steps (as the sweep's workers do), and each kind is trained
once before timing, so the difference is the validation passes alone. The cost per
run, times the default study's runs over its two workers, is what the study's wall
time pays for readable validation curves.

    python bench/validation_cost.py [--rounds 2] [--seeds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import common
from diagnose.memn2n.factors import DEFAULT_SPEC  # noqa: E402

SAMPLE = ("as-posted", "paper", "as-posted | loss_reduction=sum", "paper | output=relu")
OLD_EVAL_EVERY = 325


def _configs(eval_every: int, seeds: int) -> list:
    """The sample's run configs at ``eval_every``, seeds 0..seeds-1."""
    from diagnose.memn2n.spec import default_spec
    from diagnose.memn2n.data.load import load_corpus

    spec = default_spec()
    corpus = load_corpus(spec.data, memory_size=spec.sizes["memory_size"])
    return [dataclasses.replace(t.config, train=dataclasses.replace(t.config.train, eval_every=eval_every))
            for t in spec.tasks(corpus.vocab_size) if t.variant.name in SAMPLE and t.seed < seeds]


def _time(eval_every: int, seeds: int) -> dict:
    """Trains the sample (steps shared as a sweep's worker shares them); each run's wall seconds."""
    from diagnose.memn2n.jobs import train_task

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, config in enumerate(_configs(eval_every, seeds)):
            t0 = time.perf_counter()
            train_task(config.to_dict(), Path(tmp) / f"run{k}")
            walls.append(time.perf_counter() - t0)
    return {"runs": len(walls), "mean_run_s": statistics.fmean(walls), "walls": walls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="A B B A rounds (each times both)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds of each sampled variant")
    args = ap.parse_args()
    now = DEFAULT_SPEC["train"]["eval_every"]
    steps = DEFAULT_SPEC["budget"]["steps"]
    _time(now, 1), _time(OLD_EVAL_EVERY, 1)  # trace every kind of step once, outside the timing
    times: dict[int, list] = {now: [], OLD_EVAL_EVERY: []}
    for r in range(args.rounds):
        for every in ((now, OLD_EVAL_EVERY) if r % 2 == 0 else (OLD_EVAL_EVERY, now)):
            times[every].append(_time(every, args.seeds))
            print(f"eval_every {every:>3}: {times[every][-1]['mean_run_s']:.3f} s a run", flush=True)
    mean = {k: statistics.median(t["mean_run_s"] for t in v) for k, v in times.items()}
    extra = mean[now] - mean[OLD_EVAL_EVERY]
    study = json.loads((common.RESULTS / "ablation.json").read_text())["study"]
    jobs = 2
    result = {
        "sample": list(SAMPLE), "seeds": args.seeds, "rounds": {str(k): v for k, v in times.items()},
        "eval_every": now, "old_eval_every": OLD_EVAL_EVERY,
        "validation_points": {"now": steps // now + 1, "old": steps // OLD_EVAL_EVERY + 1},
        "mean_run_s": {str(k): v for k, v in mean.items()}, "extra_per_run_s": extra,
        "default_study_runs": study["runs"],
        "extra_study_wall_s": extra * study["runs"] / jobs,  # the study's runs over its two workers
    }
    print(f"every {now} steps ({result['validation_points']['now']} points) against every {OLD_EVAL_EVERY} "
          f"({result['validation_points']['old']}): {mean[now]:.3f} against {mean[OLD_EVAL_EVERY]:.3f} s a run, "
          f"{extra:+.3f} s ({extra / mean[OLD_EVAL_EVERY]:+.0%}); over the default study's {study['runs']} runs on "
          f"{jobs} workers, {result['extra_study_wall_s']:+.1f} s of wall time")
    print(f"-> {common.write_result('validation_cost', result)}")


if __name__ == "__main__":
    main()

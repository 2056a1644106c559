"""Helpers shared by the benchmark scripts: where PTB is, the machine, FLOPs, results.

Benchmarks are scripts, not tests: they print a table and write JSON under
bench/results/. Importing this module puts the checkout first on the import path.
PTB is looked for beside the checkout (``../shared/data/ptb``) unless ``--corpus``
says otherwise.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_PTB = ROOT.parent / "shared" / "data" / "ptb"

# Measure the checkout these scripts sit in, not an installed copy of the package: a
# `pip install .` made earlier would otherwise shadow it, here and in the processes
# a benchmark starts (the ablation's workers, bench/run.py's scripts).
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT),
                                           *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def ptb_path(arg: str | None) -> Path:
    """The PTB directory to use; exits with one line when it is missing."""
    path = Path(arg) if arg else DEFAULT_PTB
    if not path.is_dir():
        sys.exit(f"error: no PTB corpus at {path}; pass --corpus DIR (a directory with ptb.train.txt, "
                 "ptb.valid.txt, ptb.test.txt)")
    return path


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def train_flops_per_sample(model) -> float:
    """Matmul FLOPs of one training example of a MemN2N (forward + backward = 3x forward).

    Per hop: match scores u.m_i and the read-out sum_i p_i c_i (M x D each) and the
    map H (D x D, on the state; M x D as posted); then the output map W (D x V).
    Embedding lookups, softmaxes and element-wise work are not counted.
    """
    m, d, v, k = model.memory_size, model.embed_dim, model.vocab_size, model.hops
    h = d * d if model.h_wiring == "state" else m * d
    forward_macs = k * (2 * m * d + h) + d * v
    return 3 * 2 * forward_macs


def write_result(name: str, data: dict) -> Path:
    """Writes bench/results/NAME.json atomically and returns its path."""
    from diagnose.runrecord import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, {"machine": machine(), **data})
    return path


def alternate(runners: dict, rounds: int) -> dict:
    """Times contenders in turn: ``runners`` maps a name to a call returning seconds.

    Each is called once to compile and warm up, then once per round, the order
    rotating every round (ABC, BCA, ...) so that none always runs first or after the
    same neighbour. Returns name -> list of seconds, one per round.
    """
    for run in runners.values():
        run()
    names = list(runners)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(runners[name]())
    return times


def matmul_peak(reps: int = 15) -> dict:
    """Best float32 matmul rate (GFLOP/s) on square and on the output layer's shapes."""
    import tensorflow as tf  # imported by the caller already (bench scripts import it quietly)

    out = {}
    for m, k, n in ((2048, 2048, 2048), (1024, 1024, 1024), (128, 150, 10001)):
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
        f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
        f(a, b).numpy()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(a, b).numpy()
            times.append(time.perf_counter() - t0)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / statistics.median(times) / 1e9
    return out

"""Instrument overhead: step time with every instrument on vs off, alternating in one process.

Two trainers of the same model (same seed, same batches) run chunks of steps in
turn, AB BA AB...; the overhead is the median over rounds of the two chunk times'
ratio (a round's two chunks run back to back, so drifts in the machine's speed
cancel). Prints a table and
writes bench/results/overhead.json.

    python bench/overhead.py                 # tiny (synthetic corpus) and paper (PTB) presets
    python bench/overhead.py --sizes tiny --rounds 5

The paper preset runs on PTB (V = 10,001) when it is beside the checkout (or given
with --corpus), else on the synthetic topic-copy corpus (V = 195); the tiny preset
always runs on topic-copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from diagnose._tf import import_tensorflow_quietly

SIZES = {
    # The paper preset at its own sizes (V from the corpus).
    "paper": {},
    # A tiny MemN2N where fixed per-step costs weigh most.
    "tiny": {"memory_size": 20, "embed_dim": 32, "hops": 3, "batch_size": 32},
}


def measure(size: str, corpus_name: str, chunk: int, rounds: int, corpus_path: str | None) -> dict:
    tf = import_tensorflow_quietly()
    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
    from diagnose.memn2n.data.load import load_corpus
    from diagnose.memn2n.steps import MemN2NSteps

    data = DataConfig(corpus=corpus_path, synthetic=corpus_name)
    base = make_run_config("paper", SIZES[size], data=data, train=TrainConfig())
    corpus = load_corpus(base.data, base.model.memory_size)
    model = dataclasses.replace(base.model, vocab_size=corpus.vocab_size)
    trainers = {}
    for mode in ("off", "full"):
        cfg = dataclasses.replace(base, model=model, train=dataclasses.replace(base.train, instruments=mode))
        trainers[mode] = MemN2NSteps(cfg, corpus)
    rng = np.random.default_rng(0)
    n = corpus.num_windows("train")
    # The training path's own call: `chunk` steps looped in-graph per call, as
    # between two logged rows (log_every), the accumulators read after each call.
    positions = tf.constant(rng.integers(0, n, (chunk, model.batch_size)).astype(np.int32))
    for t in trainers.values():  # compile and warm up
        t.train_chunk(positions)
        t.read_and_reset()
    times = {"off": [], "full": []}
    for r in range(rounds):
        for mode in (("off", "full") if r % 2 == 0 else ("full", "off")):
            t = trainers[mode]
            start = time.perf_counter()
            t.train_chunk(positions)
            t.read_and_reset()  # the host read a logged row costs
            times[mode].append((time.perf_counter() - start) / chunk)
    off, full = statistics.median(times["off"]), statistics.median(times["full"])
    # Each round times both modes back to back, so a round's ratio is immune to the
    # machine's speed drifting between rounds (other tenants): its median is the figure.
    paired = sorted(f / o for f, o in zip(times["full"], times["off"]))
    q1, q3 = paired[len(paired) // 4], paired[(3 * len(paired)) // 4]
    return {"size": size, "corpus": corpus_path and "ptb" or f"synthetic:{corpus_name}", "vocab": model.vocab_size,
            "batch": model.batch_size, "step_ms_off": off * 1e3, "step_ms_full": full * 1e3,
            "ratio": statistics.median(paired), "ratio_iqr": [q1, q3], "ratio_of_medians": full / off,
            "rounds": rounds, "chunk": chunk}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=list(SIZES))
    ap.add_argument("--corpus", default=None, help="PTB directory for the paper preset (default: ../shared/data/ptb)")
    ap.add_argument("--chunk", type=int, default=20, help="steps per timed call (the default log_every)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="calls per mode, alternating (default: 400 tiny, 40 paper)")
    args = ap.parse_args()
    from common import DEFAULT_PTB

    ptb = args.corpus or (str(DEFAULT_PTB) if DEFAULT_PTB.is_dir() else None)
    default_rounds = {"tiny": 400, "paper": 40}
    results = [measure(s, "topic-copy", args.chunk, args.rounds or default_rounds[s], ptb if s == "paper" else None)
               for s in args.sizes]
    print(f"{'size':<8}{'V':>7}{'batch':>7}{'off ms':>10}{'full ms':>10}{'ratio':>8}{'IQR':>15}")
    for r in results:
        iqr = f"{r['ratio_iqr'][0]:.3f}-{r['ratio_iqr'][1]:.3f}"
        print(f"{r['size']:<8}{r['vocab']:>7}{r['batch']:>7}{r['step_ms_off']:>10.2f}{r['step_ms_full']:>10.2f}"
              f"{r['ratio']:>8.3f}{iqr:>15}")
    print("ratio: median over rounds of (full / off) timed back to back; IQR: its interquartile range")
    from common import write_result

    print(f"-> {write_result('overhead', {'results': results})}")


if __name__ == "__main__":
    main()

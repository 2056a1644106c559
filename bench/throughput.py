"""Training throughput of the paper preset on PTB: this project's step vs plain Keras fit.

Contenders, timed in turn in one process (ABC, BCA, ...; medians):
  * ``diagnose``: the project's training path, every instrument on: the compiled
    step looped in-graph ``--chunk`` steps per call, windows gathered in-graph,
    the accumulators read once per call (what a logged row costs);
  * ``diagnose (instruments off)``: the same step with loss and accuracy only;
  * ``diagnose (hop by hop)``: every instrument on, the hops run one after another
    over the whole batch instead of the fused kernel (models/fused_hops.py);
  * ``keras fit``: the same model (models.MemN2N, same config) compiled the plain
    Keras way (SGD, sparse softmax cross-entropy) and trained with ``model.fit``
    on pre-cut windows, without XLA, and
  * ``keras fit + XLA``: the same with ``jit_compile=True``.
A fit step is the time between two consecutive batch ends (its steady state; the
per-call set-up of fit is not charged). FLOP utilisation is the model's matmul
FLOPs (bench/common.train_flops_per_sample) per second over the best float32 matmul
rate measured in the same process.

    python bench/throughput.py                 # PTB beside the checkout
    python bench/throughput.py --rounds 3      # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from common import alternate, matmul_peak, ptb_path, train_flops_per_sample, write_result

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()


class _BatchClock:
    """A Keras callback that records the time of every batch end."""

    def __init__(self):
        import keras

        clock = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                clock.ends.append(time.perf_counter())

        self.ends: list[float] = []
        self.callback = Callback()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None, help="PTB directory (default: ../shared/data/ptb)")
    ap.add_argument("--chunk", type=int, default=20, help="steps per timed call")
    ap.add_argument("--rounds", type=int, default=6, help="timed calls per contender, alternating")
    args = ap.parse_args()

    import keras

    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
    from diagnose.memn2n.data.load import load_corpus
    from diagnose.memn2n.steps import MemN2NSteps
    from diagnose.models import build_memn2n

    base = make_run_config("paper", data=DataConfig(corpus=str(ptb_path(args.corpus))), train=TrainConfig())
    corpus = load_corpus(base.data, base.model.memory_size)
    model_cfg = dataclasses.replace(base.model, vocab_size=corpus.vocab_size)
    batch, chunk = model_cfg.batch_size, args.chunk
    rng = np.random.default_rng(0)
    positions = rng.integers(0, corpus.num_windows("train"), (chunk, batch)).astype(np.int32)

    runners = {}
    for name, mode, hop_kernel in (("diagnose", "full", "auto"), ("diagnose (instruments off)", "off", "auto"),
                                   ("diagnose (hop by hop)", "full", "layered")):
        cfg = dataclasses.replace(base, model=model_cfg, train=dataclasses.replace(base.train, instruments=mode))
        trainer = MemN2NSteps(cfg, corpus)
        trainer.model.hop_kernel = hop_kernel  # before the step is first traced
        pos = tf.constant(positions)

        def run(trainer=trainer, pos=pos):
            t0 = time.perf_counter()
            trainer.train_chunk(pos)
            trainer.read_and_reset()
            return (time.perf_counter() - t0) / chunk

        runners[name] = run
    windows, targets = (t.numpy() for t in trainer._windows("train", tf.constant(positions.reshape(-1))))

    # Plain Keras: no op determinism (Keras turns XLA off under it), its own defaults.
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()
    for jit, name in ((False, "keras fit"), (True, "keras fit + XLA")):
        model = build_memn2n(model_cfg)
        model.hop_kernel = "layered"
        model.compile(optimizer=keras.optimizers.SGD(model_cfg.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        clock = _BatchClock()

        def run(model=model, clock=clock):
            clock.ends.clear()
            model.fit(windows, targets, batch_size=batch, epochs=1, shuffle=False, verbose=0,
                      callbacks=[clock.callback])
            return statistics.median(np.diff(clock.ends))

        runners[name] = run

    times = alternate(runners, args.rounds)
    names = list(runners)
    peak = matmul_peak()
    peak_best = max(peak.values())
    flops = train_flops_per_sample(model_cfg)
    fit_ms = statistics.median(times["keras fit"]) * 1e3
    results = []
    for name in names:
        ms = statistics.median(times[name]) * 1e3
        rate = batch / (ms / 1e3)
        results.append({"contender": name, "step_ms": ms, "samples_per_s": rate, "vs_keras_fit": fit_ms / ms,
                        "gflops": rate * flops / 1e9, "utilisation": rate * flops / 1e9 / peak_best})
    print(f"paper preset on PTB: V={model_cfg.vocab_size}, D={model_cfg.embed_dim}, memory {model_cfg.memory_size}, "
          f"{model_cfg.hops} hops, batch {batch}; {flops / 1e6:.1f} MFLOP per example (matmuls, fwd+bwd)")
    print(f"{'contender':<30}{'ms/step':>9}{'samples/s':>11}{'x fit':>8}{'GFLOP/s':>9}{'of peak':>9}")
    for r in results:
        print(f"{r['contender']:<30}{r['step_ms']:>9.1f}{r['samples_per_s']:>11.0f}{r['vs_keras_fit']:>8.2f}"
              f"{r['gflops']:>9.1f}{r['utilisation']:>9.1%}")
    print("float32 matmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    path = write_result("throughput", {
        "model": {"vocab_size": model_cfg.vocab_size, "embed_dim": model_cfg.embed_dim,
                  "memory_size": model_cfg.memory_size, "hops": model_cfg.hops, "batch_size": batch},
        "flops_per_sample": flops, "matmul_peak_gflops": peak, "rounds": args.rounds, "chunk": chunk,
        "results": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

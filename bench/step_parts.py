"""Where a paper-preset training step goes: its parts timed alone, alternating in one process.

The step of the paper's MemN2N (V = 10,001, D = 150, memory 100, 6 hops, batch 128)
is split into what can be timed on its own, each as an XLA-compiled loop of
``--steps`` steps on random windows whose word frequencies follow Zipf's law like
running text (no PTB needed):

  * ``step``: forward, backward and the SGD update of the whole model;
  * ``step, hop by hop``: the same with the hops run one after another over the
    whole batch instead of the fused kernel (models/fused_hops.py);
  * ``step, op by op``: the same without XLA (TensorFlow's own kernels);
  * ``output layer``: logits = u W, softmax cross-entropy, gradients of W and u;
  * ``memories``: the hops alone (embedding lookups, 6 hops of attention over the
    (B, M, D) memories, their gradients and the updates of A, C, T_A, T_C, H) with
    the fused kernel, and ``memories, hop by hop`` without it;
    The output layer's GFLOP/s (its three (128 x 150 x 10,001) matmuls: logits,
    the gradient of u and that of W) is given beside the best float32 matmul rate
    measured in the same process: how close that part runs to what this machine's
    matmuls can do;
  * ``cores``: the process's CPU time over wall time while a part ran: about how
    many cores it kept busy (an upper bound: a thread-pool thread spinning while
    it waits for work counts as busy);
  * ``matvec (XLA)`` / ``matvec (TF)``: one batched matrix-vector product
    ``einsum("bd,bmd->bm")`` over (128, 100, 150), the kind of which a step makes 24
    (6 hops x keys and values x forward and backward), compiled and op by op,
    with the bytes of its (B, M, D) operand read per second.

    python bench/step_parts.py
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from common import alternate, matmul_peak, write_result

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()


def _loop(step, steps: int, jit: bool):
    """A compiled function running ``step(i)`` for i < steps in a graph loop."""

    def run():
        tf.while_loop(lambda i: i < steps, lambda i: (step(i) or i + 1,), (tf.constant(0),))

    return tf.function(run, jit_compile=jit, autograph=False)


def _sgd(variables, grads, lr=1e-4):
    for v, g in zip(variables, grads):
        if isinstance(g, tf.IndexedSlices):
            g = tf.math.unsorted_segment_sum(g.values, g.indices, v.shape[0])
        v.assign_sub(lr * g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="steps per timed call")
    ap.add_argument("--rounds", type=int, default=7, help="timed calls per part, alternating")
    args = ap.parse_args()

    from diagnose.models import build_memn2n, preset

    cfg = dataclasses.replace(preset("paper"), vocab_size=10_001)
    b, m, d, v, s = cfg.batch_size, cfg.memory_size, cfg.embed_dim, cfg.vocab_size, args.steps
    rng = np.random.default_rng(0)
    # Word ids drawn with Zipf frequencies (p ~ 1/rank), as in running text such as PTB:
    # which rows of the tables a batch touches decides how much of them stays in cache.
    zipf = 1.0 / np.arange(1, v)
    windows = tf.constant(rng.choice(np.arange(1, v), size=(s, b, m), p=zipf / zipf.sum()).astype(np.int32))
    targets = tf.constant(rng.integers(1, v, (s, b)).astype(np.int32))
    states = tf.constant(rng.normal(size=(s, b, d)).astype(np.float32))
    direction = tf.constant(rng.normal(size=(b, d)).astype(np.float32))
    model = build_memn2n(cfg)
    layered = build_memn2n(cfg)
    layered.hop_kernel = "layered"
    w_out = model.out.kernel

    def step(i, model=model):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                targets[i], model(windows[i], training=True)))
        _sgd(variables, tape.gradient(loss, variables))

    def output_layer(i):
        u = states[i]
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets[i], tf.matmul(u, w_out)))
        g_w, g_u = tape.gradient(loss, [w_out, u])
        _sgd([w_out], [g_w + 0.0 * tf.reduce_sum(g_u)])

    def memories(i, model=model):
        memory_vars = [x for x in model.trainable_variables if x is not model.out.kernel]
        with tf.GradientTape() as tape:
            _, internals = model(windows[i], training=True, return_internals=True)
            loss = tf.reduce_sum(internals["state"][-1] * direction)
        _sgd(memory_vars, tape.gradient(loss, memory_vars))

    memory = tf.constant(rng.normal(size=(b, m, d)).astype(np.float32))
    query = tf.constant(rng.normal(size=(b, d)).astype(np.float32))

    def matvec_loop(jit: bool):
        # The query carries each product into the next, so none can be skipped or hoisted.
        def body(i, u):
            scores = tf.einsum("bd,bmd->bm", u, memory)  # (B, M)
            return i + 1, u + 1e-9 * tf.reduce_sum(scores, axis=1, keepdims=True)

        return tf.function(lambda: tf.while_loop(lambda i, u: i < s, body, (tf.constant(0), query))[1],
                           jit_compile=jit, autograph=False)

    parts = {"step": (step, True), "step, hop by hop": (lambda i: step(i, layered), True),
             "step, op by op": (step, False), "output layer": (output_layer, True),
             "memories": (memories, True), "memories, hop by hop": (lambda i: memories(i, layered), True)}
    fns = {name: _loop(fn, s, jit) for name, (fn, jit) in parts.items()}
    fns["matvec (XLA)"], fns["matvec (TF)"] = matvec_loop(True), matvec_loop(False)

    busy = {name: [] for name in fns}  # CPU seconds per wall second: how many cores a part keeps busy

    def timed(name, fn):
        def run():
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn()
            if out is not None:
                out.numpy()
            wall = time.perf_counter() - t0
            busy[name].append((time.process_time() - c0) / wall)
            return wall / s

        return run

    times = alternate({name: timed(name, fn) for name, fn in fns.items()}, args.rounds)
    names = list(fns)
    step_ms = statistics.median(times["step"]) * 1e3
    peak = matmul_peak()
    peak_best = max(peak.values())
    results = []
    operand_gb = b * m * d * 4 / 1e9
    output_gflop = 3 * 2 * b * d * v / 1e9  # logits, dL/du and dL/dW
    for name in names:
        ms = statistics.median(times[name]) * 1e3
        row = {"part": name, "ms": ms, "share_of_step": ms / step_ms, "cores_busy": statistics.median(busy[name])}
        if name.startswith("matvec"):
            row["gb_per_s"] = operand_gb / (ms / 1e3)
        if name == "output layer":
            row["gflops"] = output_gflop / (ms / 1e3)
            row["of_matmul_peak"] = row["gflops"] / peak_best
        results.append(row)
    print(f"paper preset sizes: V={v}, D={d}, memory {m}, {cfg.hops} hops, batch {b}; {s} steps per call")
    print(f"{'part':<22}{'ms':>9}{'of step':>9}{'cores':>7}{'GB/s':>7}{'GFLOP/s':>9}{'of peak':>9}")
    for r in results:
        gbs = f"{r['gb_per_s']:.1f}" if "gb_per_s" in r else ""
        rate = f"{r['gflops']:>9.1f}{r['of_matmul_peak']:>9.0%}" if "gflops" in r else ""
        print(f"{r['part']:<22}{r['ms']:>9.2f}{r['share_of_step']:>9.0%}{r['cores_busy']:>7.2f}{gbs:>7}{rate}")
    print("float32 matmul peak (GFLOP/s): " + ", ".join(f"{k} {x:.0f}" for k, x in peak.items()))
    path = write_result("step_parts", {"model": {"vocab_size": v, "embed_dim": d, "memory_size": m,
                                                 "hops": cfg.hops, "batch_size": b},
                                       "steps_per_call": s, "rounds": args.rounds, "matmul_peak_gflops": peak,
                                       "results": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

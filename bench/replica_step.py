"""Several seeds of one small model: one traced step restarted per run, or stacked replicas in one step?

Two ways to train R seeds of a default-study variant faster than R separate runs:

* shared: one :class:`~diagnose.memn2n.steps.MemN2NSteps` traced once and restarted
  for each seed (what the harness does);
* stacked: the R replicas' weights stacked on a leading axis and the whole
  instrumented step (forward, gradients, clipping, every instrument, the SGD update)
  vectorised over it with ``tf.vectorized_map`` over Keras' ``stateless_call``.

Times the trace (first call), then R runs' steps (650 each, in calls of 50, with the
shared steps' restarts), alternating, on one core as a worker of the sweep runs. Prints a
table and writes bench/results/replica_step.json.

    python bench/replica_step.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

STEPS = 50  # steps per call (the default study logs every 50)
CALLS = 13  # calls per run: the default study's 650 steps


def _stacked(config, corpus, replicas: int):
    """A tf.function training ``replicas`` stacked copies of the variant for a (R, S, B) block of positions."""
    import keras

    from diagnose._tf import import_tensorflow_quietly
    from diagnose.instruments.gradients import clip_scales, dedupe_slices, guard, scale
    from diagnose.instruments import measures, registry
    from diagnose.memn2n import instruments as memn2n_instruments
    from diagnose.instruments.accumulate import nonfinite_flags
    from diagnose.instruments.family import Step
    from diagnose.instruments.update_ratios import sgd_delta_norms
    from diagnose.memn2n.steps import set_determinism
    from diagnose.models import build_memn2n, token_loss

    tf = import_tensorflow_quietly()
    mcfg = config.model
    models = []
    for r in range(replicas):
        set_determinism(r)
        models.append(build_memn2n(mcfg))
    template = models[0]
    trainable = [tf.Variable(tf.stack([m.trainable_variables[j].value for m in models]))
                 for j in range(len(template.trainable_variables))]
    state = [tf.Variable(tf.stack([m.non_trainable_variables[j].value for m in models]))
             for j in range(len(template.non_trainable_variables))]
    sums = tf.Variable(tf.zeros((replicas, 2048)))
    tokens = tf.constant(corpus.train.tokens, tf.int32)
    names = measures.variable_names([v.path for v in template.trainable_variables])
    embeddings = {enc.name: next(j for j, v in enumerate(template.trainable_variables) if v is enc.embedding.embeddings)
                  for enc in template.encoders}
    m = mcfg.memory_size

    def one(args):
        weights, nontrainable, positions, lr = args
        slots = positions[:, None] + tf.range(-(m - 1), 1)[None, :]
        windows = tf.where(slots >= 0, tf.gather(tokens, tf.maximum(slots, 0)), 0)
        targets = tf.gather(tokens, positions + 1)
        with tf.GradientTape() as tape:
            tape.watch(weights)
            (outputs, internals), nontrainable = template.stateless_call(weights, nontrainable, windows,
                                                                         training=True, return_internals=True)
            if mcfg.output == "softmax":
                per_example, parts = measures.softmax_cross_entropy(targets, outputs)
            else:
                per_example, parts = token_loss(mcfg, targets, outputs), None
            loss = tf.reduce_sum(per_example) if mcfg.loss_reduction == "sum" else tf.reduce_mean(per_example)
        lookups = mcfg.batch_size * m
        grads = [dedupe_slices(g, w.shape[0] if w.shape[0] <= lookups else None)
                 for g, w in zip(tape.gradient(loss, weights), weights)]
        norms = measures.gradient_norms(grads)
        bad = nonfinite_flags(loss, grads, norms, measures.values)
        finite = tf.logical_not(tf.reduce_any(bad))
        scales = clip_scales(norms, mcfg.clip, mcfg.clip_norm)
        clipped = [guard(scale(g, s), finite) for g, s in zip(grads, scales)]
        row_sq = {name: measures.row_sq_norms(weights[j]) for name, j in embeddings.items()}
        row = {"loss": tf.reduce_mean(per_example),
               "accuracy": tf.reduce_mean(measures.top1_correct(outputs, targets, parts and parts["top"]))}
        attention, branches = memn2n_instruments.sites(internals, mcfg, windows, row_sq)
        step = Step(names=names, norms=norms, loss=row["loss"], clip_mode=mcfg.clip, clip_norm=mcfg.clip_norm,
                    weight_norms=[measures.l2_norm(w) for w in weights],
                    update_norms=sgd_delta_norms(lr, norms, scales, finite), outputs=outputs, labels=targets,
                    output_kind="logits" if mcfg.output == "softmax" else "unnormalized", parts=parts,
                    attention=attention, branches=branches)
        measured, _ = registry.measure(step)
        row.update(measured)
        vec = tf.concat([tf.reshape(tf.cast(v, tf.float32), (-1,)) for v in row.values()], 0)
        return [w - lr * g for w, g in zip(weights, clipped)], nontrainable, tf.pad(vec, [[0, 2048 - vec.shape[0]]])

    def chunk(positions, lr):
        def body(i):
            new, nontrainable, vec = tf.vectorized_map(
                one, ([v.read_value() for v in trainable], [v.read_value() for v in state], positions[:, i], lr))
            for v, x in zip(trainable, new):
                v.assign(x)
            for v, x in zip(state, nontrainable):
                v.assign(x)
            sums.assign_add(vec)
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(positions)[1], body, (tf.constant(0),))

    return tf.function(chunk, autograph=False), keras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--variants", nargs="+", default=["as-posted", "paper"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from diagnose._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    from diagnose.ablation.executors import threads_per_job
    from diagnose.memn2n.steps import set_determinism

    set_determinism(0, threads=threads_per_job(os.cpu_count() or 1))  # as one worker of the sweep
    import dataclasses

    from diagnose.memn2n.spec import default_spec
    from diagnose.memn2n.data.load import load_corpus
    from diagnose.memn2n.steps import MemN2NSteps

    spec = default_spec()
    corpus = load_corpus(spec.data, memory_size=spec.sizes["memory_size"])
    tasks = {t.variant.name: t for t in spec.tasks(corpus.vocab_size) if t.seed == 0}
    n = corpus.num_windows("train")
    rows = []
    for variant in args.variants:
        config = tasks[variant].config
        for replicas in args.replicas:
            rng = np.random.default_rng(0)
            block = np.stack([rng.permutation(n)[:STEPS * config.model.batch_size].reshape(STEPS, -1)
                              for _ in range(replicas)]).astype(np.int32)
            t0 = time.perf_counter()
            shared = MemN2NSteps(config, corpus)
            shared.train_chunk(tf.constant(block[0]))
            shared.read_and_reset()
            shared_trace = time.perf_counter() - t0
            t0 = time.perf_counter()
            stacked, _ = _stacked(config, corpus, replicas)
            lr = tf.constant([config.model.learning_rate] * replicas)
            stacked(tf.constant(block), lr)
            stacked_trace = time.perf_counter() - t0

            def run_shared(shared=shared, config=config, block=block, replicas=replicas):
                # R runs one after another: a restart, then a run's steps
                t = time.perf_counter()
                for r in range(replicas):
                    shared.restart(dataclasses.replace(config, train=dataclasses.replace(config.train, seed=r)))
                    for _ in range(CALLS):
                        shared.train_chunk(tf.constant(block[r]))
                        shared.read_and_reset()
                return time.perf_counter() - t

            def run_stacked(stacked=stacked, block=block, lr=lr):  # R runs at once: a run's steps
                t = time.perf_counter()
                for _ in range(CALLS):
                    stacked(tf.constant(block), lr)
                    float(tf.reduce_sum(lr))  # the call has returned
                return time.perf_counter() - t

            times = common.alternate({"shared": run_shared, "stacked": run_stacked}, args.rounds)
            per_run_step = {k: statistics.median(v) / (replicas * STEPS * CALLS) * 1e3 for k, v in times.items()}
            rows.append({"variant": variant, "replicas": replicas, "shared_trace_s": shared_trace,
                         "stacked_trace_s": stacked_trace, "shared_ms_per_run_step": per_run_step["shared"],
                         "stacked_ms_per_run_step": per_run_step["stacked"],
                         "stacked_over_shared": per_run_step["stacked"] / per_run_step["shared"]})
            r = rows[-1]
            print(f"{variant:<10} R={replicas:<3} trace shared {shared_trace:5.2f} s, stacked {stacked_trace:5.2f} s; "
                  f"ms per run-step shared {r['shared_ms_per_run_step']:.2f}, "
                  f"stacked {r['stacked_ms_per_run_step']:.2f}"
                  f" (stacked/shared {r['stacked_over_shared']:.2f})", flush=True)
    path = common.write_result("replica_step", {"steps_per_call": STEPS, "calls_per_run": CALLS, "rows": rows,
                                                "note": "one core each (a sweep worker's share of two)"})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

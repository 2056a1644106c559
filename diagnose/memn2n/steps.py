"""The built-in MemN2N's compiled steps: model, optimizer, train/eval/probe steps, accumulators.

The host loop that drives them (budget, validation, logged rows, the record) is
:mod:`diagnose.memn2n.train`. Batches are cut from the token stream inside the compiled
step (positions in, windows gathered in-graph), several steps run per call in a
graph loop, and figures accumulate in variables read back once per logged row.
The instruments are the registry's (:mod:`diagnose.instruments.registry`), fed
from the model's internals by :mod:`diagnose.memn2n.instruments`.
"""

from __future__ import annotations

import math

import numpy as np

from diagnose.memn2n.config import RunConfig, graph_key
from diagnose.memn2n.data.corpus import Corpus
from diagnose.instruments.gradients import clip_scales_at, dedupe_slices, guard, scale
from diagnose.instruments import measures, registry
from diagnose.memn2n import instruments as memn2n_instruments
from diagnose.instruments.accumulate import Accumulator, nonfinite_flags
from diagnose.instruments.family import Step
from diagnose.instruments.probes import variants
from diagnose.instruments.update_ratios import sgd_delta_norms

__all__ = ["MemN2NSteps", "set_determinism", "perplexity", "graph_key"]

# Room for the instrument columns of the largest MemN2N (untied, many hops).
_MAX_COLUMNS = 2048
def _tf():
    from diagnose._tf import import_tensorflow_quietly  # deferred: keeps `diagnose --help` fast

    return import_tensorflow_quietly()


def set_determinism(seed: int, threads: int | None = None) -> None:
    """Seeds Python, NumPy and TF and turns on TF op determinism.

    ``threads``: TF's intra-op threads (one inter-op), where TF's runtime has not
    started yet in this process; else it keeps what it started with.
    """
    from diagnose._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly(threads)
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _seed_keras(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` except TensorFlow's global seed.

    Setting that seed clears TensorFlow's kernel caches, so the next call of a traced
    step instantiates it again (its graph optimised anew: a third of what tracing
    costs). Nothing in a run draws from it: Keras draws initial weights and dropout
    masks from its own seed generators, seeded here (a restarted run's record equals
    a fresh one's, tested).
    """
    import random

    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils
    except ImportError:  # another Keras layout: the public call, right but slower
        import keras

        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


class MemN2NSteps:
    """Holds the model, optimizer and compiled steps of one MemN2N run."""

    def __init__(self, config: RunConfig, corpus: Corpus):
        tf = _tf()
        import keras

        from diagnose.models import build_memn2n

        self.config, self.corpus = config, corpus
        self.key = graph_key(config)
        mcfg = config.model
        set_determinism(config.train.seed, config.train.threads)
        self.model = build_memn2n(mcfg)
        self.variables = list(self.model.trainable_variables)
        self.optimizer = keras.optimizers.SGD(learning_rate=mcfg.learning_rate)
        self.optimizer.build(self.variables)
        # The recipe's numbers, read by the step when it runs (see _VALUE_FIELDS).
        self._loss_scale = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._clip_mode = tf.Variable(0, trainable=False, dtype=tf.int32)
        self._clip_norm = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._set_recipe(config)
        self._splits = {}
        for name in ("train", "valid", "test"):
            split = getattr(corpus, name)
            if split is not None:
                self._splits[name] = (tf.constant(split.tokens, tf.int32), tf.constant(split.line_start, tf.int32))
        self.names = measures.variable_names([v.path for v in self.variables])
        self.acc = Accumulator(self.names, capacity=_MAX_COLUMNS, hist_shape=(mcfg.hops, mcfg.memory_size))
        self._step = self.acc.step
        jit = config.train.jit_compile
        # XLA's CPU random-number path makes dropout masks ~70x slower than TF's own
        # kernel (844 ms vs 11.7 ms for one (128, 100, 150) mask, measured here), so a
        # train step with dropout is compiled as a plain graph; evaluation has no
        # dropout and stays on XLA.
        train_jit = jit and config.model.dropout == "none"
        self.train_step = tf.function(self._train_step, jit_compile=train_jit, autograph=False,
                                      input_signature=[tf.TensorSpec([None], tf.int32)])
        # Several steps per call, looped in-graph: the Python dispatch of a call
        # costs more than a whole step of a small model.
        # No AutoGraph: the step has no data-dependent Python control flow, and
        # converting it costs a third of a small run's time.
        self.train_chunk = tf.function(self._train_chunk, jit_compile=train_jit, autograph=False,
                                       input_signature=[tf.TensorSpec([None, None], tf.int32)])

        self.eval_step = tf.function(self._eval_step, jit_compile=jit, reduce_retracing=True, autograph=False)
        self.probe_step = tf.function(self._probe_step, jit_compile=jit, reduce_retracing=True, autograph=False)

    def restart(self, config: RunConfig) -> "MemN2NSteps":
        """Starts another run on these compiled steps: fresh weights, optimizer and accumulators.

        The weights are those a new :class:`MemN2NSteps` builds for ``config`` (its seed
        and initialisers, dropout's seed states included), so the run's figures are the
        ones it would give alone; what it saves is tracing the steps again, most of a
        small run's start-up.

        Raises:
            ValueError: ``config`` needs other steps (:func:`graph_key` differs).
        """
        from diagnose.models import build_memn2n

        if graph_key(config) != self.key:
            raise ValueError("restart() needs a config whose steps are these (same graph_key)")
        _seed_keras(config.train.seed)
        fresh = build_memn2n(config.model)
        for mine, new in zip(self.model.variables, fresh.variables, strict=True):
            mine.assign(new.value)
        self.optimizer.iterations.assign(0)
        self.optimizer.learning_rate.assign(config.model.learning_rate)
        self._set_recipe(config)
        self.acc.reset()
        self.config = config
        return self

    def _set_recipe(self, config: RunConfig) -> None:
        """The loss reduction and clipping of ``config`` into the variables the step reads.

        The mean over a batch is its sum scaled by 1 / batch (exact where the batch is a
        power of two, as in every built-in config; else within an ulp of a mean).
        """
        from diagnose.instruments.gradients import CLIP_MODES

        mcfg = config.model
        batch = min(mcfg.batch_size, self.corpus.num_windows("train"))
        self._loss_scale.assign(1.0 if mcfg.loss_reduction == "sum" else 1.0 / batch)
        self._clip_mode.assign(CLIP_MODES.index(mcfg.clip))
        self._clip_norm.assign(mcfg.clip_norm)

    # -- in-graph pieces -------------------------------------------------------
    def _windows(self, split: str, positions):
        """Windows (B, M) and targets (B,) for stream positions, gathered in-graph."""
        tf = _tf()
        tokens, line_start = self._splits[split]
        m = self.config.model.memory_size
        slots = positions[:, None] + tf.range(-(m - 1), 1)[None, :]  # (B, M)
        valid = slots >= 0
        if self.config.data.context == "line":
            valid &= slots >= tf.gather(line_start, positions)[:, None]
        windows = tf.where(valid, tf.gather(tokens, tf.maximum(slots, 0)), 0)
        return windows, tf.gather(tokens, positions + 1)

    def _train_step(self, positions, slow=None):
        """One optimizer step on the windows at ``positions``.

        ``slow``: the figures read from whole weight tables (||w|| per variable for
        the update ratios, squared row norms of the embedding tables for the word
        RMS), from :meth:`slow_measures`; the chunk loop passes those at its start (one
        pass over the weights per chunk, not per step), a single step takes them itself.
        """
        tf = _tf()
        from diagnose.models import token_loss

        mcfg = self.config.model
        windows, targets = self._windows("train", positions)
        full = self.config.train.instruments == "full"
        with tf.GradientTape() as tape:
            if full:
                outputs, internals = self.model(windows, training=True, return_internals=True)
            else:
                outputs, internals = self.model(windows, training=True), None
            if mcfg.output == "softmax":  # token_loss's number, sharing its max and log Z with the measures
                per_example, parts = measures.softmax_cross_entropy(targets, outputs)  # (B,)
            else:
                per_example, parts = token_loss(mcfg, targets, outputs), None
            loss = tf.reduce_sum(per_example) * self._loss_scale
        # Embedding gradients: dense where the table has no more rows than a batch looks up.
        lookups = mcfg.batch_size * mcfg.memory_size
        grads = [dedupe_slices(g, v.shape[0] if v.shape[0] <= lookups else None)
                 for g, v in zip(tape.gradient(loss, self.variables), self.variables)]
        norms = measures.gradient_norms(grads)
        # A gradient is bad when one of its entries is NaN/Inf.
        bad = nonfinite_flags(loss, grads, norms, measures.values)  # (1 + n_vars,)
        finite = tf.logical_not(tf.reduce_any(bad))
        scales = clip_scales_at(norms, self._clip_mode, self._clip_norm)
        clipped = [guard(scale(g, sc), finite) for g, sc in zip(grads, scales)]
        if full and slow is None:
            slow = self.slow_measures()

        row = {"loss": tf.reduce_mean(per_example),
               "accuracy": tf.reduce_mean(measures.top1_correct(outputs, targets, parts and parts["top"]))}
        hist = None
        if full:
            attention, branches = memn2n_instruments.sites(internals, mcfg, windows, slow["row_sq"])
            step = Step(names=self.names, norms=norms, loss=row["loss"], clip_mode=self._clip_mode,
                        clip_norm=self._clip_norm,
                        weight_norms=slow["weight_norms"],
                        update_norms=sgd_delta_norms(self.optimizer.learning_rate, norms, scales, finite),
                        outputs=outputs, labels=targets, output_kind="logits" if mcfg.output == "softmax"
                        else "unnormalized", parts=parts, attention=attention, branches=branches)
            measured, hist = registry.measure(step)
            row.update(measured)
        if hist is None:
            hist = tf.zeros((mcfg.hops, mcfg.memory_size))

        self.optimizer.apply(clipped, self.variables)
        self.acc.add(row, hist, bad)

    def _train_chunk(self, positions):
        """Runs one train step per row of ``positions`` (S, B), in a graph loop."""
        tf = _tf()

        # Whole-table figures once per chunk: SGD moves weights by ~1e-3 of their
        # norm per step, so a norm at most log_every steps old changes a ratio by
        # about a percent, and each is a full pass over a (V, D) table.
        slow = self.slow_measures() if self.config.train.instruments == "full" else None

        def body(i):
            self._train_step(positions[i], slow)
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(positions)[0], body, (tf.constant(0),))

    def weight_norms(self) -> list:
        """||w|| of every trainable variable."""
        return [measures.l2_norm(v) for v in self.variables]

    def slow_measures(self) -> dict:
        """Figures that read whole weight tables: ``weight_norms`` (list, per variable)
        and ``row_sq`` (encoder name -> squared row norms of its embedding table)."""
        return {"weight_norms": self.weight_norms(),
                "row_sq": {enc.name: measures.row_sq_norms(enc.embedding.embeddings) for enc in self.model.encoders}}

    def _probe_step(self, positions):
        """Loss on a fixed batch with real, batch-shuffled and zeroed inputs."""
        tf = _tf()
        from diagnose.models import token_loss

        windows, targets = self._windows("train", positions)
        losses = [tf.reduce_mean(token_loss(self.config.model, targets, self.model(w, training=False)))
                  for w in variants(windows)]
        return tf.stack(losses)

    def _eval_step(self, positions, weights, split):
        tf = _tf()
        from diagnose.models import token_loss

        windows, targets = self._windows(split, positions)
        outputs = self.model(windows, training=False)
        per_example = tf.cast(token_loss(self.config.model, targets, outputs), tf.float64)
        correct = tf.cast(measures.top1_correct(outputs, targets), tf.float64)
        return tf.reduce_sum(per_example * weights), tf.reduce_sum(correct * weights)

    # -- host side -------------------------------------------------------------
    def read_and_reset(self) -> dict:
        """Interval means of every column since the last read (one host round trip)."""
        return self.acc.read_and_reset()

    def evaluate(self, split: str = "valid") -> dict:
        """Mean loss and accuracy over a split, in fixed-size batches."""
        tf = _tf()
        tcfg = self.config.train
        total = self.corpus.num_windows(split)
        if tcfg.eval_max_windows:
            total = min(total, tcfg.eval_max_windows)
        bs = min(tcfg.eval_batch_size, total)
        loss_sum = correct = 0.0
        sums = []
        for start in range(0, total, bs):
            pos = np.arange(start, start + bs, dtype=np.int32)
            w = (pos < total).astype(np.float64)
            pos = np.minimum(pos, total - 1)  # pad the last batch: same shape, zero weight
            sums.append(self.eval_step(tf.constant(pos), tf.constant(w), split))
        if sums:
            stacked = tf.reduce_sum(tf.stack([tf.stack(s) for s in sums]), axis=0).numpy()
            loss_sum, correct = float(stacked[0]), float(stacked[1])
        loss = loss_sum / total
        return {"loss": loss, "accuracy": correct / total, "perplexity": perplexity(loss)}


def perplexity(loss: float) -> float:
    """exp(loss), inf where that overflows a float (or the loss is NaN: NaN)."""
    return math.exp(loss) if loss < 700 else (math.inf if loss == loss else math.nan)

"""The one training path: config -> corpus -> model -> compiled training -> run record.

The CLI, the ablation harness, the benchmarks and the tests all call :func:`train`.
Batches are cut from the token stream inside the compiled step (positions in,
windows gathered in-graph), figures are accumulated in variables and read back
once per logged row, and validation runs in fixed-size batches, so a full PTB
validation pass never holds more than ``eval_batch_size x V`` logits.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from diagnose import runrecord
from diagnose.config import RunConfig
from diagnose.data.corpus import Corpus
from diagnose.data.load import load_corpus
from diagnose.instruments import measures
from diagnose.instruments.accumulate import Accumulator, nonfinite_flags

__all__ = ["train", "Trainer", "TrainResult"]

# Paper (and its Torch/TF code): anneal when the new validation loss is not at
# least this factor below the previous one.
_ANNEAL_TOLERANCE = 0.9999
# Room for the instrument columns of the largest MemN2N (untied, many hops).
_MAX_COLUMNS = 2048
# Rewrite metrics.csv at least this often (seconds) so long runs can be watched.
_FLUSH_SECONDS = 30.0


@dataclass
class TrainResult:
    """What :func:`train` returns: the summary written and where."""

    run_dir: Path
    summary: dict


def _tf():
    from diagnose._tf import import_tensorflow_quietly  # deferred: keeps `diagnose --help` fast

    return import_tensorflow_quietly()


def set_determinism(seed: int, threads: int | None = None) -> None:
    """Seeds Python, NumPy and TF and turns on TF op determinism."""
    tf = _tf()
    import keras

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process; keep what it has
            pass
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class Trainer:
    """Holds the model, optimizer and compiled steps for one run."""

    def __init__(self, config: RunConfig, corpus: Corpus):
        tf = _tf()
        import keras

        from models import build_memn2n

        self.config, self.corpus = config, corpus
        mcfg = config.model
        set_determinism(config.train.seed, config.train.threads)
        self.model = build_memn2n(mcfg)
        self.variables = list(self.model.trainable_variables)
        self.optimizer = keras.optimizers.SGD(learning_rate=mcfg.learning_rate)
        self.optimizer.build(self.variables)
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

    def _train_step(self, positions):
        tf = _tf()
        from models import token_loss

        mcfg = self.config.model
        windows, targets = self._windows("train", positions)
        full = self.config.train.instruments == "full"
        with tf.GradientTape() as tape:
            if full:
                outputs, internals = self.model(windows, training=True, return_internals=True)
            else:
                outputs, internals = self.model(windows, training=True), None
            per_example = token_loss(mcfg, targets, outputs)  # (B,)
            loss = tf.reduce_sum(per_example) if mcfg.loss_reduction == "sum" else tf.reduce_mean(per_example)
        grads = [dedupe_slices(g) for g in tape.gradient(loss, self.variables)]
        norms = measures.gradient_norms(grads)
        # A gradient is bad when one of its entries is NaN/Inf.
        bad = nonfinite_flags(loss, grads, norms, _values)  # (1 + n_vars,)
        finite = tf.logical_not(tf.reduce_any(bad))
        scales = clip_scales(norms, mcfg.clip, mcfg.clip_norm)
        clipped = [_scale(g, sc) for g, sc in zip(grads, scales)]
        # A non-finite step applies no update: the weights stay at the last finite
        # state, and the host ends the run as diverged at its next read.
        clipped = [_scale(g, tf.cast(finite, tf.float32)) for g in clipped]
        clipped = [_zero_nonfinite(g) for g in clipped]
        weight_norms = [tf.norm(v) for v in self.variables] if full else None
        lr = tf.cast(self.optimizer.learning_rate, tf.float32)

        # Every measure is taken before the update, in program order, so each reads
        # the weights the step's gradients were computed at.
        row = {"loss": tf.reduce_mean(per_example),
               "accuracy": tf.reduce_mean(tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), targets),
                                                  tf.float32))}
        if full:
            # The applied gradient's norm is the norm times its clip scale: no second pass.
            applied = [n * sc * tf.cast(finite, tf.float32) for n, sc in zip(norms, scales)]
            row.update(measures.gradient_measures(self.names, norms, applied, weight_norms, lr, mcfg.clip,
                                                  mcfg.clip_norm))
            row.update(_memn2n_measures(internals, mcfg, self.model, windows))
            row.update(measures.output_measures(outputs, targets, mcfg.output))
            hist = tf.stack([measures.argmax_histogram(a) for a in internals["attention"]])  # (K, M)
        else:
            hist = tf.zeros((mcfg.hops, mcfg.memory_size))

        self.optimizer.apply(clipped, self.variables)
        self.acc.add(row, hist, bad)

    def _train_chunk(self, positions):
        """Runs one train step per row of ``positions`` (S, B), in a graph loop."""
        tf = _tf()

        def body(i):
            self._train_step(positions[i])
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(positions)[0], body, (tf.constant(0),))

    def _probe_step(self, positions):
        """Loss on a fixed batch with real, batch-shuffled and zeroed inputs."""
        tf = _tf()
        from models import token_loss

        windows, targets = self._windows("train", positions)
        shuffled = tf.roll(windows, shift=1, axis=0)  # every example gets another's input
        zeroed = tf.zeros_like(windows)
        losses = [tf.reduce_mean(token_loss(self.config.model, targets, self.model(w, training=False)))
                  for w in (windows, shuffled, zeroed)]
        return tf.stack(losses)

    def _eval_step(self, positions, weights, split):
        tf = _tf()
        from models import token_loss

        windows, targets = self._windows(split, positions)
        outputs = self.model(windows, training=False)
        per_example = tf.cast(token_loss(self.config.model, targets, outputs), tf.float64)
        correct = tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), targets), tf.float64)
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
        return {"loss": loss, "accuracy": correct / total, "perplexity": _perplexity(loss)}


def _perplexity(loss: float) -> float:
    """exp(loss), inf where that overflows a float (or the loss is NaN: NaN)."""
    return math.exp(loss) if loss < 700 else (math.inf if loss == loss else math.nan)


def dedupe_slices(grad):
    """Sums duplicate rows of an IndexedSlices gradient; dense gradients pass through.

    Embedding gradients arrive with one row per looked-up token, repeats included.
    Their norm (for clipping and instruments) must be that of the dense gradient,
    so repeated rows are summed first. Sort-based with static shapes, so it
    compiles under XLA; unused output rows are zero and point at row 0.
    """
    tf = _tf()
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    idx = grad.indices
    order = tf.argsort(idx)
    sorted_idx = tf.gather(idx, order)
    values = tf.gather(grad.values, order)
    new_row = tf.concat([[True], sorted_idx[1:] != sorted_idx[:-1]], axis=0)
    segment = tf.cumsum(tf.cast(new_row, tf.int32)) - 1
    n = tf.shape(idx)[0]
    summed = tf.math.unsorted_segment_sum(values, segment, n)
    rows = tf.maximum(tf.math.unsorted_segment_max(sorted_idx, segment, n), 0)
    return tf.IndexedSlices(summed, rows, grad.dense_shape)


def _values(g):
    tf = _tf()
    return g.values if isinstance(g, tf.IndexedSlices) else g


def clip_scales(norms, mode: str, clip_norm: float) -> list:
    """The factor each gradient is multiplied by: global-norm, per-tensor (Keras clipnorm) or 1."""
    tf = _tf()
    if mode == "none":
        return [tf.constant(1.0)] * len(norms)
    if mode == "global":
        global_norm = tf.sqrt(tf.add_n([n * n for n in norms]))
        return [tf.minimum(1.0, clip_norm / tf.maximum(global_norm, 1e-12))] * len(norms)
    return [tf.minimum(1.0, clip_norm / tf.maximum(n, 1e-12)) for n in norms]


def clip_gradients(grads, mode: str, clip_norm: float, norms=None):
    """Rescales gradients: by their global norm, per tensor (Keras clipnorm), or not."""
    if mode == "none":
        return grads
    if norms is None:
        norms = measures.gradient_norms(grads)
    return [_scale(g, s) for g, s in zip(grads, clip_scales(norms, mode, clip_norm))]


def _scale(g, s):
    tf = _tf()
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * s, g.indices, g.dense_shape)
    return g * s


def _zero_nonfinite(g):
    """Replaces NaN/Inf entries by 0 so a skipped update cannot poison the weights."""
    tf = _tf()
    v = _values(g)
    v = tf.where(tf.math.is_finite(v), v, tf.zeros_like(v))
    return tf.IndexedSlices(v, g.indices, g.dense_shape) if isinstance(g, tf.IndexedSlices) else v


def _memn2n_measures(internals: dict, mcfg, model, windows) -> dict:
    """Attention per hop and branch balance (word embedding vs temporal encoding, H term vs read-out)."""
    out = {}
    pad = internals["pad_mask"]
    tables = {enc.name: enc.embedding.embeddings for enc in model.encoders}
    for k, attention in enumerate(internals["attention"], start=1):
        out.update(measures.attention_measures(attention, pad, k))
    for enc in internals["encoders"]:
        for side in ("a", "c"):
            name = enc[f"{side}_name"]
            if f"rms/{name}_word" in out:
                continue
            # The RMS of the looked-up word vectors, from the table's row norms: the
            # same number as the RMS of the (B, M, D) lookup, without another pass over it.
            out[f"rms/{name}_word"] = measures.lookup_rms(tables[name], windows)
            if enc[f"{side}_temporal"] is not None:
                out[f"rms/{name}_temporal"] = measures.rms(enc[f"{side}_temporal"])
    for k, (h, o) in enumerate(zip(internals["h_term"], internals["readout"]), start=1):
        out[f"rms/hop{k}_h_term"] = measures.rms(h)
        out[f"rms/hop{k}_readout"] = measures.rms(o)
    return out


def _versions() -> dict:
    import keras
    import tensorflow as tf

    from diagnose import __version__

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "diagnose": __version__}


def train(config: RunConfig, out_dir: str | Path, *, corpus: Corpus | None = None,
          progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Trains one run and writes its run record to ``out_dir``.

    Args:
        config: the run configuration; ``model.vocab_size`` is taken from the corpus.
        out_dir: the run directory (created; an existing record there is replaced).
        corpus: an already loaded corpus (the harness shares one across runs);
            loaded from ``config.data`` when None.
        progress: called after each logged row with ``{"step", "total_steps",
            "loss", "valid_loss"}``.

    Returns:
        TrainResult with the summary as written. Errors in the user's input raise
        :class:`~diagnose.errors.DiagnoseError` before anything is written; a
        failure during training is recorded as status ``failed`` and re-raised.
    """
    import dataclasses

    t_start = time.perf_counter()
    out = Path(out_dir)
    if corpus is None:
        corpus = load_corpus(config.data, memory_size=config.model.memory_size)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=corpus.vocab_size))
    config.model.validate()
    out.mkdir(parents=True, exist_ok=True)
    runrecord.write_config(out, **config.to_dict())
    runrecord.write_summary(out, {"status": "running"})
    baselines = {"ln_vocab": math.log(corpus.vocab_size), "unigram_entropy": corpus.stats.get("unigram_entropy"),
                 "bayes_floor": corpus.stats.get("bayes_floor")}
    rows: list[dict] = []
    state = {"step": 0, "epoch": 0.0, "train_time": 0.0, "last_train": math.nan, "error": None,
             "status": "running", "best": (math.inf, 0), "last_valid": None}
    try:
        trainer = Trainer(config, corpus)
        _fit(trainer, config, rows, state, out, progress)
    except Exception as exc:  # recorded, then re-raised for the caller
        state["status"] = "failed"
        state["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        runrecord.write_metrics(out, rows)
        runrecord.write_summary(out, _summary(state, baselines, t_start, config))
        raise
    summary = _summary(state, baselines, t_start, config)
    runrecord.write_summary(out, summary)
    return TrainResult(run_dir=out, summary=runrecord.read_summary(out))


def _fit(trainer: Trainer, config: RunConfig, rows: list, state: dict, out: Path, progress) -> None:
    tf = _tf()
    tcfg, mcfg = config.train, config.model
    n_windows = trainer.corpus.num_windows("train")
    batch = min(mcfg.batch_size, n_windows)
    steps_per_epoch = max(1, n_windows // batch)
    total = tcfg.steps if tcfg.steps is not None else max(1, int(round(tcfg.epochs * steps_per_epoch)))
    eval_every = tcfg.eval_every or steps_per_epoch
    rng = np.random.default_rng(tcfg.seed)
    # The probe batch is fixed for the whole run: evenly spaced training windows.
    probe_positions = tf.constant(np.linspace(0, n_windows - 1, batch).astype(np.int32))
    tb = tf.summary.create_file_writer(str(out / runrecord.TENSORBOARD)) if tcfg.tensorboard else None
    lr = mcfg.learning_rate
    prev_valid = None
    hist_rows: list[dict] = []

    def log_row(step: int, valid: dict | None):
        acc = trainer.read_and_reset()
        row = {"step": step, "epoch": step / steps_per_epoch, "learning_rate": lr, **acc["row"]}
        if valid is not None:
            row.update(valid_loss=valid["loss"], valid_accuracy=valid["accuracy"],
                       valid_perplexity=valid["perplexity"])
        if tcfg.probe_every and (step >= state["next_probe"] or step == total):
            state["next_probe"] = (step // tcfg.probe_every + 1) * tcfg.probe_every
            real, shuffled, zeroed = (float(x) for x in trainer.probe_step(probe_positions).numpy())
            row.update(probe_loss_real=real, probe_loss_shuffled=shuffled, probe_loss_zeroed=zeroed)
        rows.append(row)
        for hop, counts in enumerate(acc["histogram"], start=1):
            hist_rows.append({"step": step, "hop": hop, **{f"pos{i}": int(c) for i, c in enumerate(counts)}})
        if tb is not None:
            with tb.as_default():
                for key, value in row.items():
                    if key not in ("step",) and isinstance(value, float) and math.isfinite(value):
                        tf.summary.scalar(key, value, step=step)
        if acc["diverged"] and state["status"] == "running":
            state["status"] = "diverged"
            state["diverged_at"] = acc["diverged"]
            state["error"] = (f"non-finite {'loss' if acc['diverged']['variable'] == 'loss' else 'gradient'} "
                              f"at step {acc['diverged']['step']} (variable {acc['diverged']['variable']})")
        if progress is not None:
            progress({"step": step, "total_steps": total, "loss": row["loss"], "valid_loss": row.get("valid_loss")})

    def flush():
        runrecord.write_metrics(out, rows)
        runrecord.write_attention(out, hist_rows)
        if tb is not None:
            tb.flush()
        state["flushed"] = time.perf_counter()

    if tcfg.eval_at_start:
        valid = trainer.evaluate("valid")
        rows.append({"step": 0, "epoch": 0.0, "loss": math.nan, "accuracy": math.nan, "learning_rate": lr,
                     "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                     "valid_perplexity": valid["perplexity"]})
        state["loss_at_step0"] = valid["loss"]
    order = np.empty(0, dtype=np.int32)
    cursor = step = 0
    state["next_probe"] = tcfg.probe_every
    t_train = 0.0
    state["flushed"] = time.perf_counter()
    try:
        while step < total and state["status"] == "running":
            if cursor + batch > len(order):  # a new epoch: reshuffle every window
                order = rng.permutation(n_windows).astype(np.int32)
                cursor = 0
            # Steps up to the next row, validation, epoch end or the budget's end, in one call.
            n = min(tcfg.log_every - step % tcfg.log_every, eval_every - step % eval_every, total - step,
                    (len(order) - cursor) // batch)
            t0 = time.perf_counter()
            trainer.train_chunk(tf.constant(order[cursor:cursor + n * batch].reshape(n, batch)))
            cursor += n * batch
            step += n
            at_eval = step % eval_every == 0 or step == total
            if step % tcfg.log_every == 0 or at_eval:
                valid = None
                if at_eval:
                    t_train += time.perf_counter() - t0
                    valid = trainer.evaluate("valid")
                    t0 = time.perf_counter()
                    if prev_valid is not None and valid["loss"] > prev_valid * _ANNEAL_TOLERANCE \
                            and mcfg.lr_anneal > 1:
                        lr /= mcfg.lr_anneal
                        trainer.optimizer.learning_rate.assign(lr)
                    prev_valid = valid["loss"]
                    if valid["loss"] < state["best"][0]:
                        state["best"] = (valid["loss"], step)
                    state["last_valid"] = valid
                log_row(step, valid)
                if at_eval or time.perf_counter() - state["flushed"] > _FLUSH_SECONDS:
                    flush()  # a readable, growing record for long runs
            t_train += time.perf_counter() - t0
    finally:
        state["step"] = step
        state["epoch"] = step / steps_per_epoch
        state["train_time"] = t_train
        state["samples"] = step * batch
        flush()
        if tb is not None:
            tb.close()
    state["last_train"] = next((r["loss"] for r in reversed(rows) if not math.isnan(r["loss"])), math.nan)
    if state["status"] == "running":
        state["status"] = "completed"


def _summary(state: dict, baselines: dict, t_start: float, config: RunConfig) -> dict:
    valid = state.get("last_valid") or {}
    best_loss, best_step = state["best"]
    train_time = state.get("train_time", 0.0)
    return {
        "status": state["status"] if state["status"] != "running" else "failed",
        "error": state["error"],
        "steps": state["step"],
        "epochs": state["epoch"],
        "seed": config.train.seed,
        "final": {"train_loss": state["last_train"], "valid_loss": valid.get("loss"),
                  "valid_perplexity": valid.get("perplexity"), "valid_accuracy": valid.get("accuracy")},
        "best": {"valid_loss": best_loss if math.isfinite(best_loss) else None,
                 "valid_perplexity": _perplexity(best_loss) if math.isfinite(best_loss) else None,
                 "step": best_step},
        "baselines": {**baselines, "loss_at_step0": state.get("loss_at_step0")},
        "diverged_at": state.get("diverged_at"),
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": train_time,
        "samples_per_s": state.get("samples", 0) / train_time if train_time else None,
        "versions": _versions(),
    }

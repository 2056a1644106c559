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

__all__ = ["train", "Trainer", "TrainResult"]

# Paper (and its Torch/TF code): anneal when the new validation loss is not at
# least this factor below the previous one.
_ANNEAL_TOLERANCE = 0.9999


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
        # Sums over the steps since the last read: loss, correct, examples,
        # first non-finite step (0 = none).
        self._acc = tf.Variable(tf.zeros(4, tf.float64), trainable=False, dtype=tf.float64)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        jit = config.train.jit_compile
        self.train_step = tf.function(self._train_step, jit_compile=jit, reduce_retracing=True)
        self.eval_step = tf.function(self._eval_step, jit_compile=jit, reduce_retracing=True)

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
        with tf.GradientTape() as tape:
            outputs = self.model(windows, training=True)
            per_example = token_loss(mcfg, targets, outputs)  # (B,)
            loss = tf.reduce_sum(per_example) if mcfg.loss_reduction == "sum" else tf.reduce_mean(per_example)
        grads = tape.gradient(loss, self.variables)
        grads = [dedupe_slices(g) for g in grads]
        grads = clip_gradients(grads, mcfg.clip, mcfg.clip_norm)
        self.optimizer.apply(grads, self.variables)
        step = self._step.assign_add(1)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), targets), tf.float64))
        finite = tf.math.is_finite(loss)
        for g in grads:
            finite &= tf.reduce_all(tf.math.is_finite(_values(g)))
        first_bad = tf.where(finite | (self._acc[3] > 0), self._acc[3], tf.cast(step, tf.float64))
        n = tf.cast(tf.shape(targets)[0], tf.float64)
        self._acc.assign(tf.stack([self._acc[0] + tf.reduce_sum(tf.cast(per_example, tf.float64)),
                                   self._acc[1] + correct, self._acc[2] + n, first_bad]))

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
        """Means since the last read (one host round trip)."""
        tf = _tf()
        loss_sum, correct, n, first_bad = self._acc.numpy()
        self._acc.assign(np.array([0.0, 0.0, 0.0, first_bad]))
        return {"loss": loss_sum / n if n else math.nan, "accuracy": correct / n if n else math.nan,
                "first_nonfinite_step": int(first_bad)}

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
        return {"loss": loss, "accuracy": correct / total,
                "perplexity": math.exp(loss) if loss < 700 else math.inf}


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


def gradient_norms(grads):
    """L2 norm of each gradient (IndexedSlices must be deduplicated first)."""
    tf = _tf()
    return [tf.norm(_values(g)) for g in grads]


def clip_gradients(grads, mode: str, clip_norm: float):
    """Rescales gradients: by their global norm, per tensor (Keras clipnorm), or not."""
    tf = _tf()
    if mode == "none":
        return grads
    norms = gradient_norms(grads)
    if mode == "global":
        global_norm = tf.sqrt(tf.add_n([n * n for n in norms]))
        scales = [tf.minimum(1.0, clip_norm / tf.maximum(global_norm, 1e-12))] * len(grads)
    else:
        scales = [tf.minimum(1.0, clip_norm / tf.maximum(n, 1e-12)) for n in norms]
    return [_scale(g, s) for g, s in zip(grads, scales)]


def _scale(g, s):
    tf = _tf()
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * s, g.indices, g.dense_shape)
    return g * s


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
    runrecord.write_metrics(out, rows)
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
    lr = mcfg.learning_rate
    prev_valid = None

    def log_row(step: int, valid: dict | None):
        nonlocal prev_valid, lr
        acc = trainer.read_and_reset()
        row = {"step": step, "epoch": step / steps_per_epoch, "loss": acc["loss"], "accuracy": acc["accuracy"],
               "learning_rate": lr}
        if valid is not None:
            row.update(valid_loss=valid["loss"], valid_accuracy=valid["accuracy"],
                       valid_perplexity=valid["perplexity"])
        rows.append(row)
        if acc["first_nonfinite_step"]:
            state["status"] = "diverged"
            state["error"] = f"non-finite loss or gradient at step {acc['first_nonfinite_step']}"
        if progress is not None:
            progress({"step": step, "total_steps": total, "loss": row["loss"],
                      "valid_loss": row.get("valid_loss")})

    if tcfg.eval_at_start:
        valid = trainer.evaluate("valid")
        rows.append({"step": 0, "epoch": 0.0, "loss": math.nan, "accuracy": math.nan, "learning_rate": lr,
                     "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                     "valid_perplexity": valid["perplexity"]})
        state["initial_valid_loss"] = valid["loss"]
    order = np.empty(0, dtype=np.int32)
    cursor = 0
    step = 0
    t_train = 0.0
    while step < total and state["status"] == "running":
        if cursor + batch > len(order):  # a new epoch: reshuffle every window
            order = rng.permutation(n_windows).astype(np.int32)
            cursor = 0
        t0 = time.perf_counter()
        trainer.train_step(tf.constant(order[cursor:cursor + batch]))
        cursor += batch
        step += 1
        at_eval = step % eval_every == 0 or step == total
        if step % tcfg.log_every == 0 or at_eval:
            valid = None
            if at_eval:
                trainer._acc.read_value()  # sync before stopping the clock
                t_train += time.perf_counter() - t0
                valid = trainer.evaluate("valid")
                t0 = time.perf_counter()
                if prev_valid is not None and valid["loss"] > prev_valid * _ANNEAL_TOLERANCE and mcfg.lr_anneal > 1:
                    lr /= mcfg.lr_anneal
                    trainer.optimizer.learning_rate.assign(lr)
                prev_valid = valid["loss"]
                if valid["loss"] < state["best"][0]:
                    state["best"] = (valid["loss"], step)
                state["last_valid"] = valid
            log_row(step, valid)
            if at_eval:
                runrecord.write_metrics(out, rows)  # a readable record at every validation
        t_train += time.perf_counter() - t0
    state["step"] = step
    state["epoch"] = step / steps_per_epoch
    state["train_time"] = t_train
    state["samples"] = step * batch
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
                 "valid_perplexity": math.exp(best_loss) if math.isfinite(best_loss) else None,
                 "step": best_step},
        "baselines": {**baselines, "initial_valid_loss": state.get("initial_valid_loss")},
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": train_time,
        "samples_per_s": state.get("samples", 0) / train_time if train_time else None,
        "versions": _versions(),
    }

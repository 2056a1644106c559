"""The one training path: config -> corpus -> model -> compiled training -> run record.

The CLI, the ablation harness, the benchmarks and the tests all call :func:`train`.
This module is the host loop (budget, validation and annealing, logged rows, the
summary); :mod:`diagnose.trainer` holds the compiled steps.
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
from diagnose.gradients import clip_gradients, dedupe_slices  # noqa: F401  (re-exported)
from diagnose.instruments.rowlog import RowLog
from diagnose.trainer import Trainer, _tf, perplexity, set_determinism  # noqa: F401  (re-exported)

__all__ = ["train", "Trainer", "TrainResult"]

# Paper (and its Torch/TF code): anneal when the new validation loss is not at
# least this factor below the previous one.
_ANNEAL_TOLERANCE = 0.9999
# Rewrite metrics.csv at least this often (seconds) so long runs can be watched.
_FLUSH_SECONDS = 30.0


@dataclass
class TrainResult:
    """What :func:`train` returns: the summary written and where."""

    run_dir: Path
    summary: dict


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
    log = RowLog(out, tensorboard=config.train.tensorboard)
    state = {"step": 0, "epoch": 0.0, "train_time": 0.0, "last_train": math.nan, "error": None,
             "status": "running", "best": (math.inf, 0), "last_valid": None}
    try:
        trainer = Trainer(config, corpus)
        _fit(trainer, config, log, state, progress)
    except Exception as exc:  # recorded, then re-raised for the caller
        state["status"] = "failed"
        state["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.close()
        runrecord.write_summary(out, _summary(state, baselines, t_start, config))
        raise
    summary = _summary(state, baselines, t_start, config)
    runrecord.write_summary(out, summary)
    return TrainResult(run_dir=out, summary=runrecord.read_summary(out))


def _fit(trainer: Trainer, config: RunConfig, log: RowLog, state: dict, progress) -> None:
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
    lr = mcfg.learning_rate
    prev_valid = None

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
        log.append(row, acc["histogram"])
        if acc["diverged"] and state["status"] == "running":
            state["status"] = "diverged"
            state["diverged_at"] = acc["diverged"]
            state["error"] = (f"non-finite {'loss' if acc['diverged']['variable'] == 'loss' else 'gradient'} "
                              f"at step {acc['diverged']['step']} (variable {acc['diverged']['variable']})")
        if progress is not None:
            progress({"step": step, "total_steps": total, "loss": row["loss"], "valid_loss": row.get("valid_loss")})

    def flush():
        log.flush()
        state["flushed"] = time.perf_counter()

    if tcfg.eval_at_start:
        valid = trainer.evaluate("valid")
        log.append({"step": 0, "epoch": 0.0, "loss": math.nan, "accuracy": math.nan, "learning_rate": lr,
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
        log.close()
    state["last_train"] = next((r["loss"] for r in reversed(log.rows) if not math.isnan(r["loss"])), math.nan)
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
                 "valid_perplexity": perplexity(best_loss) if math.isfinite(best_loss) else None,
                 "step": best_step},
        "baselines": {**baselines, "loss_at_step0": state.get("loss_at_step0")},
        "diverged_at": state.get("diverged_at"),
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": train_time,
        "samples_per_s": state.get("samples", 0) / train_time if train_time else None,
        "versions": _versions(),
    }

"""The built-in MemN2N's training path: config -> corpus -> model -> compiled training -> run record.

``diagnose train``, the ablation harness's MemN2N studies, the benchmarks and the tests call
:func:`train`; a user's own Keras model trains with its own ``fit``, recorded by ``diagnose.Monitor``.
This module is the host loop (budget, validation and annealing, logged rows, the
summary); :mod:`diagnose.memn2n.steps` holds the compiled steps it drives.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from diagnose import runrecord, studydir
from diagnose.memn2n.config import RunConfig, resolve
from diagnose.memn2n.data.corpus import Corpus
from diagnose.memn2n.checkpoint import read_checkpoint, write_checkpoint
from diagnose.memn2n.data.load import load_corpus
from diagnose.divergence import divergence
from diagnose.errors import ConfigError
from diagnose.files import refuse_links
from diagnose.instruments.gradients import clip_gradients, dedupe_slices  # noqa: F401  (re-exported)
from diagnose.instruments.rowlog import RowLog
from diagnose.instruments.describe import initial_weights, variable_layers, variables
from diagnose.instruments.probes import next_probe
from diagnose.limits import check_run
from diagnose.memn2n.steps import MemN2NSteps, _tf, perplexity, set_determinism  # noqa: F401  (re-exported)

__all__ = ["train", "MemN2NSteps", "TrainResult"]

# Paper (and its Torch/TF code): anneal when the new validation loss is not at
# least this factor below the previous one.
_ANNEAL_TOLERANCE = 0.9999


@dataclass
class TrainResult:
    """What :func:`train` returns: the summary written and where."""

    run_dir: Path
    summary: dict




def train(config: RunConfig, out_dir: str | Path, *, corpus: Corpus | None = None,
          progress: Callable[[dict], None] | None = None, resume: bool = False,
          trainer: MemN2NSteps | None = None) -> TrainResult:
    """Trains one run and writes its run record to ``out_dir``.

    Args:
        config: the run configuration; ``model.vocab_size`` is taken from the corpus.
        out_dir: the run directory (created; an existing record there is replaced,
            unless resuming).
        corpus: an already loaded corpus (the harness shares one across runs);
            loaded from ``config.data`` when None.
        progress: called after each logged row with ``{"step", "total_steps",
            "loss", "val_loss"}``.
        resume: continue from ``out_dir/checkpoint`` (written with
            ``train.checkpoint``) up to this config's budget, which may be larger
            than the first run's. Everything else in the config must match the run
            record's. The continued run's rows are those an uninterrupted run writes.
        trainer: compiled steps of an earlier run on the same corpus whose
            :func:`~diagnose.memn2n.config.graph_key` is this config's (other seed or
            initialisers): restarted for this run instead of traced again. The
            record is the one a fresh trainer writes.

    Returns:
        TrainResult with the summary as written. Errors in the user's input raise
        :class:`~diagnose.errors.DiagnoseError` before anything is written; a
        failure during training is recorded as status ``failed`` and re-raised.
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    config.train.validate()
    config.data.validate()
    if studydir.is_study_dir(out) or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{out} is {'an ablation directory' if out.is_dir() else 'a file'}, not a run directory; "
                          "train into a directory of its own")
    if trainer is not None and corpus is not None and corpus is not trainer.corpus:
        raise ValueError("a reused trainer trains on its own corpus: pass corpus=None or the trainer's")
    if corpus is None:
        corpus = trainer.corpus if trainer is not None else load_corpus(config.data,
                                                                         memory_size=config.model.memory_size)
    n_windows = corpus.num_windows("train")
    config, _ = resolve(config, corpus.vocab_size, n_windows)  # the corpus's vocabulary, a batch it can fill
    try:
        config.model.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_run(config, n_windows)  # a budget or tensors past what the machine can do: refused before writing
    refuse_links(out, _WRITTEN)  # a link planted where the record goes would take the writes outside
    if resume:
        checkpoint = _checkpoint_to_resume(config, out)
        runrecord.write_config(out, **config.to_dict())
        runrecord.write_summary(out, {"status": "running"})
    else:  # a record already in `out` stays whole until this one replaces it (by rename)
        checkpoint = None
        runrecord.begin_record(out, **config.to_dict())
    baselines = {"ln_vocab": math.log(corpus.vocab_size), "unigram_entropy": corpus.stats.get("unigram_entropy"),
                 "bayes_floor": corpus.stats.get("bayes_floor")}
    log = RowLog(out, tensorboard=config.train.tensorboard)
    state = {"step": 0, "epoch": 0.0, "train_time": 0.0, "last_train": math.nan, "error": None,
             "status": "running", "best": (math.inf, 0), "last_valid": None}
    try:
        trainer = trainer.restart(config) if trainer is not None else MemN2NSteps(config, corpus)
        state["variables"] = {"variables": variables(trainer.model), "variable_layers": variable_layers(trainer.model),
                              **initial_weights(trainer.model)}
        _fit(trainer, config, log, state, progress, checkpoint)
    except Exception as exc:  # recorded, then re-raised for the caller
        state["status"] = "failed"
        state["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.close()
        runrecord.write_summary(out, _summary(state, baselines, t_start, config))
        raise
    summary = _summary(state, baselines, t_start, config)
    runrecord.write_summary(out, summary)
    return TrainResult(run_dir=out, summary=runrecord.read_summary(out))


# The places in a run directory that training writes (a resumed run appends to the first two).
_WRITTEN = (runrecord.METRICS, runrecord.ATTENTION, runrecord.TENSORBOARD, runrecord.CHECKPOINT, runrecord.CONFIG,
            runrecord.SUMMARY)

# Settings a resumed run may change: only the budget.
_BUDGET_KEYS = ("epochs", "steps")


def _checkpoint_to_resume(config: RunConfig, out: Path):
    """The checkpoint in ``out`` if it was written for ``config`` (budget aside); else DiagnoseError."""
    found = read_checkpoint(out) if runrecord.is_run_dir(out) else None
    if found is None:
        raise ConfigError(f"{out} has no checkpoint to resume from; train with checkpoints on "
                          "(--checkpoint) first, or drop --resume")
    old = runrecord.read_config(out)
    new = config.to_dict()
    differs = [f"{part}.{k}" for part in ("model", "data", "train") for k in new[part]
               if not (part == "train" and k in _BUDGET_KEYS) and old.get(part, {}).get(k) != new[part][k]]
    if differs:
        raise ConfigError(f"the checkpoint in {out} was written for a different config (differs in: "
                          f"{', '.join(differs)}); resume with the same settings or train into a new --out")
    return found


@dataclass
class _Loop:
    """Where the host loop is: what a checkpoint saves besides the weights and the rows."""

    lr: float
    order: np.ndarray  # this epoch's shuffled window order
    cursor: int = 0  # next position in ``order``
    step: int = 0  # the step of the last checkpoint (the loop's own counter is local)
    prev_valid: float | None = None  # the validation loss annealing compares against
    t_train: float = 0.0  # seconds spent in training steps, over every piece of the run
    resumed_at: int = 0
    t_train_before: float = 0.0  # t_train when this piece started


@dataclass(frozen=True)
class _Budget:
    """The run's sizes in steps, from its config and corpus."""

    batch: int
    steps_per_epoch: int
    total: int
    eval_every: int

    @classmethod
    def of(cls, config: RunConfig, n_windows: int) -> "_Budget":
        tcfg = config.train
        batch = min(config.model.batch_size, n_windows)
        steps_per_epoch = max(1, n_windows // batch)
        total = tcfg.steps if tcfg.steps is not None else max(1, int(round(tcfg.epochs * steps_per_epoch)))
        return cls(batch, steps_per_epoch, total, tcfg.eval_every or steps_per_epoch)


def _fit(trainer: MemN2NSteps, config: RunConfig, log: RowLog, state: dict, progress, checkpoint=None) -> None:
    """The host loop: compiled chunks of steps up to each logged row, validation, annealing, checkpoints."""
    tf = _tf()
    tcfg = config.train
    n_windows = trainer.corpus.num_windows("train")
    budget = _Budget.of(config, n_windows)
    batch, total = budget.batch, budget.total
    rng = np.random.default_rng(tcfg.seed)
    # The probe batch is fixed for the whole run: evenly spaced training windows.
    probe_positions = tf.constant(np.linspace(0, n_windows - 1, batch).astype(np.int32))
    loop = _Loop(lr=config.model.learning_rate, order=np.empty(0, dtype=np.int32))
    state["next_probe"] = tcfg.probe_every
    if checkpoint is not None:
        _restore(checkpoint, trainer, log, state, loop, rng, total)
    elif tcfg.eval_at_start:
        valid = trainer.evaluate("valid")
        log.append({"step": 0, "epoch": 0.0, "loss": math.nan, "accuracy": math.nan, "learning_rate": loop.lr,
                    "val_loss": valid["loss"], "val_accuracy": valid["accuracy"],
                    "val_perplexity": valid["perplexity"]})
        state["loss_at_step0"] = valid["loss"]
    step = loop.step
    try:
        while step < total and state["status"] == "running":
            if loop.cursor + batch > len(loop.order):  # a new epoch: reshuffle every window
                loop.order, loop.cursor = rng.permutation(n_windows).astype(np.int32), 0
            # Steps up to the next row, validation, epoch end or the budget's end, in one call.
            n = min(tcfg.log_every - step % tcfg.log_every, budget.eval_every - step % budget.eval_every,
                    total - step, (len(loop.order) - loop.cursor) // batch)
            t0 = time.perf_counter()
            trainer.train_chunk(tf.constant(loop.order[loop.cursor:loop.cursor + n * batch].reshape(n, batch)))
            loop.cursor += n * batch
            step += n
            at_eval = step % budget.eval_every == 0 or step == total
            if step % tcfg.log_every != 0 and not at_eval:
                loop.t_train += time.perf_counter() - t0
                continue
            loop.t_train += time.perf_counter() - t0
            valid, test = _validate(trainer, config, loop, state, step, total) if at_eval else (None, None)
            row = _log_row(trainer, config, budget, log, state, loop, step, valid, test, probe_positions)
            if progress is not None:
                progress({"step": step, "total_steps": total, "loss": row["loss"], "val_loss": row.get("val_loss")})
            # A readable, growing record for long runs (RowLog.flush_due); a checkpoint always
            # comes with a rewrite, so the record matches what it resumes.
            if log.flush_due(boundary=at_eval) or (at_eval and tcfg.checkpoint):
                log.flush()
            if at_eval and tcfg.checkpoint and state["status"] == "running":
                loop.step = step
                _save(trainer, log, state, loop, rng)
    finally:
        state["step"] = step
        state["epoch"] = step / budget.steps_per_epoch
        state["train_time"] = loop.t_train
        state["samples"] = (step - loop.resumed_at) * batch
        state["train_time_this_call"] = loop.t_train - loop.t_train_before
        log.close()
    state["last_train"] = next((r["loss"] for r in reversed(log.rows) if not math.isnan(r["loss"])), math.nan)
    if state["status"] == "running":
        state["status"] = "completed"


def _validate(trainer: MemN2NSteps, config: RunConfig, loop: _Loop, state: dict, step: int,
              total: int) -> tuple[dict, dict | None]:
    """Validation (and test) losses at ``step``; anneals the rate as the paper does and keeps the best."""
    tcfg, mcfg = config.train, config.model
    valid = trainer.evaluate("valid")
    test = trainer.evaluate("test") if tcfg.eval_test and "test" in trainer._splits else None
    # The paper anneals once per epoch; validating more often than the rate is meant
    # to be checked (curves to read) must not anneal more often.
    if tcfg.anneal_every is None or step % tcfg.anneal_every == 0 or step == total:
        if loop.prev_valid is not None and valid["loss"] > loop.prev_valid * _ANNEAL_TOLERANCE \
                and mcfg.lr_anneal > 1:
            loop.lr /= mcfg.lr_anneal
            trainer.optimizer.learning_rate.assign(loop.lr)
        loop.prev_valid = valid["loss"]
    if valid["loss"] < state["best"][0]:
        state["best"] = (valid["loss"], step)
    state["last_valid"], state["last_test"] = valid, test
    return valid, test


def _log_row(trainer: MemN2NSteps, config: RunConfig, budget: _Budget, log: RowLog, state: dict, loop: _Loop,
             step: int, valid: dict | None, test: dict | None, probe_positions) -> dict:
    """Appends the row of ``step`` (the interval's instruments, validation, probes) and marks a divergence."""
    tcfg = config.train
    acc = trainer.read_and_reset()
    row = {"step": step, "epoch": step / budget.steps_per_epoch, "learning_rate": loop.lr, **acc["row"]}
    if valid is not None:
        row.update(val_loss=valid["loss"], val_accuracy=valid["accuracy"], val_perplexity=valid["perplexity"])
    if test is not None:
        row.update(test_loss=test["loss"], test_accuracy=test["accuracy"], test_perplexity=test["perplexity"])
    if tcfg.probe_every and (step >= state["next_probe"] or step == budget.total):
        if step < state["next_probe"]:  # probed only because this call's budget ends here
            state["end_probe"] = step
        state["next_probe"] = next_probe(step, tcfg.probe_every)
        real, shuffled, zeroed = (float(x) for x in trainer.probe_step(probe_positions).numpy())
        row.update(probe_loss_real=real, probe_loss_shuffled=shuffled, probe_loss_zeroed=zeroed)
    log.append(row, acc["histogram"])
    if state["status"] != "running":
        return row
    if acc["diverged"]:
        what = "loss" if acc["diverged"]["variable"] == "loss" else "gradient"
        state.update(status="diverged", diverged_at=acc["diverged"],
                     error=f"non-finite {what} at step {acc['diverged']['step']} "
                           f"(variable {acc['diverged']['variable']})")
    elif blown := divergence(row, config.model.vocab_size):
        state.update(status="diverged", diverged_at={"step": step, "variable": blown["variable"]},
                     error=blown["error"])
    return row


def _save(trainer: MemN2NSteps, log: RowLog, state: dict, loop: _Loop, rng) -> None:
    """Writes the checkpoint: everything the loop needs to go on as if never stopped."""
    arrays = {f"model_{i}": v.numpy() for i, v in enumerate(trainer.model.variables)}
    arrays.update({f"optimizer_{i}": v.numpy() for i, v in enumerate(trainer.optimizer.variables)})
    arrays["order"] = loop.order
    best_loss, best_step = state["best"]
    write_checkpoint(log.run_dir, {
        "step": loop.step, "cursor": loop.cursor, "learning_rate": loop.lr,
        "prev_valid": loop.prev_valid, "train_time_s": loop.t_train,
        "best": {"val_loss": best_loss if math.isfinite(best_loss) else None, "step": best_step},
        "last_valid": state["last_valid"], "last_test": state.get("last_test"),
        "loss_at_step0": state.get("loss_at_step0"), "next_probe": state["next_probe"],
        "end_probe": state.get("end_probe"),
        "rng": rng.bit_generator.state,
    }, arrays)


def _restore(checkpoint, trainer: MemN2NSteps, log: RowLog, state: dict, loop: _Loop, rng, total: int) -> None:
    saved, arrays = checkpoint
    for i, v in enumerate(trainer.model.variables):
        v.assign(arrays[f"model_{i}"])
    for i, v in enumerate(trainer.optimizer.variables):
        v.assign(arrays[f"optimizer_{i}"])
    trainer.optimizer.learning_rate.assign(saved["learning_rate"])
    trainer.acc.step.assign(saved["step"])  # steps, and a divergence's step, count from the run's start
    rng.bit_generator.state = saved["rng"]
    loop.order, loop.cursor, loop.step = arrays["order"].astype(np.int32), saved["cursor"], saved["step"]
    loop.lr, loop.prev_valid = saved["learning_rate"], saved["prev_valid"]
    loop.t_train = loop.t_train_before = saved["train_time_s"]
    loop.resumed_at = saved["step"]
    best = saved["best"]
    best_loss = best.get("val_loss", best.get("valid_loss"))  # a checkpoint written before Keras' names
    state["best"] = (best_loss if best_loss is not None else math.inf, best["step"])
    state["last_valid"], state["last_test"] = saved["last_valid"], saved["last_test"]
    state["loss_at_step0"] = saved["loss_at_step0"]
    state["next_probe"] = saved["next_probe"]
    state["resumed_from"] = saved["step"]
    # Rows up to the checkpoint; rows written after it (a run cut off later) are dropped.
    rows, attention = runrecord.read_rows(log.run_dir)
    log.rows = [r for r in rows if r["step"] <= saved["step"]]
    if saved.get("end_probe") == saved["step"] and total > saved["step"] and log.rows:
        # The first piece probed at its last row only because its budget ended there;
        # an uninterrupted run has no probe at that step, so neither does the resumed one.
        log.rows[-1] = {k: v for k, v in log.rows[-1].items() if not k.startswith("probe_loss_")}
    log.attention = [r for r in attention if r["step"] <= saved["step"]]


def _summary(state: dict, baselines: dict, t_start: float, config: RunConfig) -> dict:
    valid = state.get("last_valid") or {}
    test = state.get("last_test") or {}
    best_loss, best_step = state["best"]
    train_time = state.get("train_time", 0.0)
    return {
        "status": state["status"] if state["status"] != "running" else "failed",
        "error": state["error"],
        "steps": state["step"],
        "epochs": state["epoch"],
        "seed": config.train.seed,
        "final": {"train_loss": state["last_train"], "val_loss": valid.get("loss"),
                  "val_perplexity": valid.get("perplexity"), "val_accuracy": valid.get("accuracy"),
                  **({"test_loss": test.get("loss"), "test_perplexity": test.get("perplexity"),
                      "test_accuracy": test.get("accuracy")} if test else {})},
        "best": {"val_loss": best_loss if math.isfinite(best_loss) else None,
                 "val_perplexity": perplexity(best_loss) if math.isfinite(best_loss) else None,
                 "step": best_step},
        "baselines": {**baselines, "loss_at_step0": state.get("loss_at_step0")},
        "diverged_at": state.get("diverged_at"),
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": train_time,
        "samples_per_s": (state.get("samples", 0) / state["train_time_this_call"]
                          if state.get("train_time_this_call") else None),
        "resumed_from_step": state.get("resumed_from"),
        **(state.get("variables") or {}),
        "versions": runrecord.versions(),
    }

"""The run record: the on-disk contract between training, the harness, findings and reports.

This module is the one place the schema is defined; everything that reads or writes a
run directory goes through it. A run directory holds:

``config.json``
    The fully resolved configuration, enough to repeat the run::

        {"schema": 1,
         "model":  {...every MemN2NConfig field, or a user model's description...},
         "data":   {...DataConfig: corpus source, context, vocabulary options...},
         "train":  {...TrainConfig: seed, budget, logging and evaluation cadence...}}

``metrics.csv``
    One row per logged step (every ``log_every`` steps, and at each validation).
    Training figures in a row are means over the steps since the previous row.
    Columns always present:

    ========================  ==============================================================
    ``step``                  optimizer steps done (int, 1-based)
    ``epoch``                 fractional epochs done (float)
    ``loss``                  mean training loss per token over the interval (nats)
    ``accuracy``              mean training next-token accuracy over the interval
    ``learning_rate``         the rate in force at the end of the interval
    ``valid_loss``            validation loss per token (nats), empty when not computed
    ``valid_accuracy``        validation accuracy, empty when not computed
    ``valid_perplexity``      exp(valid_loss), empty when not computed
    ========================  ==============================================================

    Instrument columns follow: means over the healthy steps of the interval, one
    family at a time (gradients, updates, attention, branch balance, output health,
    probes). Each family declares its columns and their meaning once, in
    :mod:`diagnose.instruments.registry`; ``registry.family_of(column)`` says which
    family wrote a column and what it means. A variable ``NAME`` is its path without
    the model prefix and generic leaf (``A/embedding``, ``H_0``, ``W/bias``).

    With ``train.eval_test`` on, rows with a validation pass also carry
    ``test_loss``, ``test_accuracy`` and ``test_perplexity`` (the test split).

    Readers must ignore columns they do not know; writers never rename or reorder
    the base columns.

``attention.csv``
    Per logged row and hop, how often each memory slot won the attention
    (argmax) during the interval: ``step, hop, pos0 .. pos{M-1}`` (slot M-1 holds
    the current word).

``tb/``
    The rows of ``metrics.csv`` as TensorBoard scalars (``tensorboard --logdir RUN_DIR``).

``summary.json``
    Written when the run ends (and marked ``running`` while it trains)::

        {"schema": 1, "status": "running" | "completed" | "diverged" | "failed",
         "error": null | "one line",          # for failed / diverged runs
         "steps": int, "epochs": float,
         "final": {"train_loss", "valid_loss", "valid_perplexity", "valid_accuracy"},
         "best":  {"valid_loss", "valid_perplexity", "step"},
         "baselines": {"ln_vocab", "unigram_entropy", "bayes_floor" | null,
                       "loss_at_step0"},          # validation loss before training
         "diverged_at": null | {"step", "variable"},   # first non-finite loss/gradient
         "wall_time_s": float, "train_time_s": float,   # train time over all pieces of a resumed run
         "samples_per_s": float,                       # this call's training throughput
         "resumed_from_step": null | int,              # the checkpoint this call continued from
         "variables": {NAME: shape},                   # every trainable variable
         "variable_layers": {NAME: layer class},       # the layer that owns it (Dense, Embedding...)
         "initial_weight_norms": {NAME: ||w||},        # before the first step (of this call, if resumed)
         "versions": {"python", "tensorflow", "keras", "numpy", "diagnose"}}

    A Keras model's run (``diagnose.Monitor``) writes the same keys where they apply;
    its baselines are derived from the targets it trained on: ``ln_vocab`` (ln of the
    number of classes) and ``unigram_entropy`` (of the labels) for a classifier,
    ``target_variance`` for a regression, and ``loss_at_step0`` (the probe batch's loss
    before training).

``checkpoint/`` (only with ``train.checkpoint``)
    The state after the latest validation pass, from which ``train(..., resume=True)``
    (``diagnose train --resume``) continues the run: ``state.json`` (step, learning
    rate, batch-order position and generator state, best/last validation, counters)
    and ``arrays.npz`` (every model and optimizer variable, in build order, and the
    epoch's batch order). The directory is replaced as a whole, by rename.

``summary.json`` ``final`` also holds ``test_loss``, ``test_perplexity`` and
``test_accuracy`` when the test split was evaluated.

Every file is written atomically: to a temporary file in the same directory, then
renamed over the target, so a reader never sees a half-written file and a crash
never destroys the previous version.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
CONFIG, METRICS, SUMMARY = "config.json", "metrics.csv", "summary.json"
ATTENTION, TENSORBOARD, CHECKPOINT = "attention.csv", "tb", "checkpoint"
BASE_COLUMNS = ("step", "epoch", "loss", "accuracy", "learning_rate",
                "valid_loss", "valid_accuracy", "valid_perplexity")
STATUSES = ("running", "completed", "diverged", "failed")

__all__ = ["SCHEMA_VERSION", "BASE_COLUMNS", "STATUSES", "atomic_write", "write_json", "read_json",
           "write_config", "write_metrics", "write_summary", "read_config", "read_summary",
           "read_metrics", "is_run_dir", "write_attention", "load_run", "write_checkpoint",
           "read_checkpoint", "read_rows", "not_a_record"]


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _clean(value: Any) -> Any:
    """JSON has no NaN or Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    atomic_write(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_config(run_dir: str | os.PathLike, model: dict, data: dict, train: dict) -> None:
    """Writes ``config.json``."""
    write_json(Path(run_dir) / CONFIG, {"schema": SCHEMA_VERSION, "model": model, "data": data, "train": train})


def write_metrics(run_dir: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Writes ``metrics.csv``: the base columns first, then others in first-seen order."""
    rows = list(rows)
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write(Path(run_dir) / METRICS, buf.getvalue())


def write_attention(run_dir: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Writes ``attention.csv`` (winning-slot counts per logged row and hop)."""
    rows = list(rows)
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(run_dir) / ATTENTION, buf.getvalue())


def load_run(run_dir: str | os.PathLike, tidy: bool = True):
    """One run as a pandas DataFrame.

    Args:
        run_dir: a run directory.
        tidy: True gives long form, one row per (step, metric): columns ``run``,
            ``step``, ``epoch``, ``metric``, ``value`` (NaN cells dropped); False
            gives ``metrics.csv`` as it is, one row per logged step.

    The frame's ``attrs`` carry ``config`` and ``summary`` (dicts).
    """
    run_dir = Path(run_dir)
    wide = read_metrics(run_dir)
    if tidy:
        frame = wide.melt(id_vars=["step", "epoch"], var_name="metric", value_name="value").dropna(subset=["value"])
        frame.insert(0, "run", run_dir.name)
        frame = frame.reset_index(drop=True)
    else:
        frame = wide
    frame.attrs["config"] = read_config(run_dir)
    frame.attrs["summary"] = read_summary(run_dir) if (run_dir / SUMMARY).is_file() else None
    return frame


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(float(v))  # shortest repr that round-trips exactly (numpy floats too)
    return v


def write_summary(run_dir: str | os.PathLike, summary: dict) -> None:
    """Writes ``summary.json``; ``status`` must be one of :data:`STATUSES`."""
    if summary.get("status") not in STATUSES:
        raise ValueError(f"summary status must be one of {STATUSES}, got {summary.get('status')!r}")
    write_json(Path(run_dir) / SUMMARY, {"schema": SCHEMA_VERSION, **summary})


def read_config(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / CONFIG)


def read_summary(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / SUMMARY)


def read_metrics(run_dir: str | os.PathLike):
    """``metrics.csv`` as a pandas DataFrame (empty cells are NaN)."""
    import pandas as pd

    return pd.read_csv(Path(run_dir) / METRICS)


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a run record (its config.json at least)."""
    return (Path(path) / CONFIG).is_file()


def not_a_record(path: str | os.PathLike) -> str:
    """The one-line error for a directory that holds neither a run record nor a study."""
    return (f"{path} is neither a run directory ({CONFIG}) nor an ablation directory (manifest.json); pass the "
            "--out of 'diagnose train' or 'diagnose run-ablation', or a diagnose.Monitor's run_dir")


def write_checkpoint(run_dir: str | os.PathLike, state: dict, arrays: dict) -> None:
    """Writes ``checkpoint/`` (state.json and arrays.npz) and swaps it in by rename."""
    import shutil

    import numpy as np

    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{CHECKPOINT}.", suffix=".tmp"))
    try:
        with open(tmp / "arrays.npz", "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        write_json(tmp / "state.json", state)
        old = None
        if final.exists():
            old = run_dir / f".{CHECKPOINT}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checkpoint(run_dir: str | os.PathLike) -> tuple[dict, dict] | None:
    """``(state, arrays)`` from ``checkpoint/``, or None when the run has none."""
    import numpy as np

    folder = Path(run_dir) / CHECKPOINT
    if not (folder / "state.json").is_file():
        old = Path(run_dir) / f".{CHECKPOINT}.old"  # a swap cut off between its two renames
        if not (old / "state.json").is_file():
            return None
        folder = old
    with np.load(folder / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return read_json(folder / "state.json"), arrays


def read_rows(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``metrics.csv`` and ``attention.csv`` as lists of row dicts (empty cells left out)."""
    def rows(name):
        path = Path(run_dir) / name
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", newline="") as fh:
            return [{k: _parse_cell(k, v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    return rows(METRICS), rows(ATTENTION)


def _parse_cell(key: str, value: str):
    if key in ("step", "hop") or key.startswith("pos"):
        return int(value)
    return float(value)

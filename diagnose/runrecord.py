"""The run record: the on-disk contract between training, the harness, findings and reports.

This module is the one place the schema is defined; everything that reads or writes a
run directory goes through it. A run directory holds:

``config.json``
    The fully resolved configuration, enough to repeat the run::

        {"schema": 1,
         "model":  {...every MemN2NConfig field, or a user model's description...},
         "data":   {...DataConfig: corpus source, context, vocabulary options...},
         "train":  {...TrainConfig: seed, budget, logging and evaluation cadence...},
         "rebuild": {...}}   # a Keras run that can be trained again: builder, data, settings...

    (``rebuild``: :class:`diagnose.userstudy.spec.UserRunConfig`, read by ``check --prove``.)

``metrics.csv``
    One row per logged step (every ``log_every`` steps, and at each validation).
    Training figures in a row are means over the steps since the previous row.
    Columns always present:

    ========================  ==============================================================
    ``step``                  optimizer steps done (int, 1-based)
    ``epoch``                 fractional epochs done (float)
    ``loss``                  mean training loss over the interval, in the loss's own units
                              (nats per token for the built-in MemN2N's cross-entropy)
    ``accuracy``              mean training accuracy over the interval (next-token for MemN2N)
    ``learning_rate``         the rate in force at the end of the interval
    ``val_loss``              validation loss, in the same units, empty when not computed
    ``val_accuracy``          validation accuracy, empty when not computed
    ========================  ==============================================================

    Validation columns carry Keras' names (``History``'s keys): ``val_loss``, ``val_accuracy``,
    and any other metric the model compiled under the name Keras logs it (``val_mae``,
    ``val_auc``). The built-in MemN2N also writes ``val_perplexity``, exp(val_loss). A record
    written before these names (``valid_loss``, ``valid_accuracy``, ``valid_perplexity``,
    ``valid_loss/NAME``) reads as if written with them (:func:`keras_name`).

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
         "final": {"train_loss", "val_loss", "val_perplexity", "val_accuracy"},
         "best":  {"val_loss", "val_perplexity", "step"},
         "baselines": {"ln_vocab", "unigram_entropy", "bayes_floor" | null,
                       "loss_at_step0"},          # validation loss before training
         "diverged_at": null | {"step", "variable"},   # first non-finite loss/gradient
         "wall_time_s": float, "train_time_s": float,   # train time over all pieces of a resumed run
         "samples_per_s": float,                       # this call's training throughput
         "resumed_from_step": null | int,              # the checkpoint this call continued from
         "variables": {NAME: shape},                   # every trainable variable
         "variable_layers": {NAME: layer class},       # the layer that owns it (Dense, Embedding...)
         "initial_weight_norms": {NAME: ||w||},        # before the first step (of this call, if resumed)
         "initial_weight_digests": {NAME: hex | null}, # a 64-bit hash of those values; null where every
                                                       # entry is equal (zeros, ones)
         "at_start": {COLUMN: value},                  # instrumented Keras runs: metrics.csv's columns over
                                                       # the first step(s) alone (fit's first call), as built
         "versions": {"python", "tensorflow", "keras", "keras_backend", "numpy", "diagnose",
                      "jax" | "torch": where Keras ran on that backend}}

    A Keras model's run (``diagnose.Monitor``) writes the same keys where they apply;
    its baselines are derived from the targets it trained on: ``ln_vocab`` (ln of the
    number of classes) and ``unigram_entropy`` (of the labels) for a classifier,
    ``target_variance`` for a regression, ``constant_loss`` (the best constant
    prediction under the compiled loss, whatever it is), and ``loss_at_step0`` (the
    probe batch's loss before training). Its losses are in the compiled loss's units,
    per example (a loss summed over the batch is divided by its rows; ``val_loss`` by
    the validation batch size). It also writes ``contract``, the model-task contract
    read before the first step (:func:`diagnose.instruments.contract.task_contract`)::

        "contract": {"loss": {"name", "kind", "from_logits", "ignore_class"},
                     "output": {"activation", "units", "shape", "range": [low | null, high | null],
                                "at_start": {"min", "max", "outside_unit_share", "row_sum_min", "row_sum_max"}},
                     "targets": {"structure", "rows", "min", "max", "mean", "std", "rms", "non_integer_share",
                                 "multi_hot_share", "classes_seen", "majority_share", "ignored_share", ...},
                     "constant_loss", "constant_loss_valid", "constant_prediction": [one per unit],
                     "probe_constant_task_error", "range_floor", "range_floor_share",
                     "preprocessing": [{"name", "class", "oov_share" | "output_rms"}],
                     "embeddings": [{"name", "zero_share", "mask_zero"}],
                     "first_weights": [{"name", "input_rms"}], "affine": {"deviation"} | null,
                     "batch_size", "epochs", "steps_per_epoch", "weighted", "seconds"}

    and, at each probe, ``probe_task_error`` in metrics.csv: the task's error on the
    probe batch whatever the loss (:func:`diagnose.instruments.task_error.task_error`).

    A model with several outputs records ``loss`` as Keras' loss_weights-weighted sum
    of its outputs' losses, and each output's own columns as ``COLUMN/NAME`` (NAME the
    output's name, as Keras names it in ``History``): ``loss/NAME``, ``accuracy/NAME``
    (a classifier output), ``val_loss/NAME``, ``val_accuracy/NAME`` and
    ``probe_task_error/NAME``, and a classifier output's health (``max_prob/NAME``,
    ``target_prob/NAME``, ``target_at_floor/NAME``, ``out_zero_frac/NAME``,
    ``out_dead_rows/NAME``). Its contract has the whole model's facts (batch size,
    preprocessing...) with ``loss.kind`` "several", ``constant_loss`` the weighted sum
    of the outputs', and one entry per output, in the model's output order::

        "outputs": [{"name", "weight", "loss", "output", "targets", "constant_loss", ...}]

``proof/`` (after ``diagnose check RUN --prove``)
    A study directory whose verdict marks each finding proven, refuted or inconclusive.

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
import math
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from diagnose._version import __version__
from diagnose.errors import DiagnoseError, RecordError
from diagnose.studydir import MANIFEST, RUNS, is_study_dir
from diagnose.files import (atomic_write, atomic_write_all, clean_json, json_text, make_temp_dir, read_json,
                            refuse_links, replace_dir, write_json)

if TYPE_CHECKING:
    import pandas

SCHEMA_VERSION = 1
CONFIG, METRICS, SUMMARY = "config.json", "metrics.csv", "summary.json"
ATTENTION, TENSORBOARD, CHECKPOINT = "attention.csv", "tb", "checkpoint"
BASE_COLUMNS = ("step", "epoch", "loss", "accuracy", "learning_rate", "val_loss", "val_accuracy")
# The prefix the record's validation columns had before they took Keras' names (val_loss: val_loss).
_OLD_VALIDATION = "valid_"

STATUSES = ("running", "completed", "diverged", "failed")
PROOF = "proof"
_RECORD_NAMES = (CONFIG, METRICS, SUMMARY, ATTENTION, TENSORBOARD, CHECKPOINT, PROOF, "report")

__all__ = ["SCHEMA_VERSION", "PROOF", "BASE_COLUMNS", "STATUSES", "NEVER_FINISHED", "crash_note", "atomic_write",
           "write_json",
           "read_json", "write_config", "write_metrics", "write_summary", "read_config", "read_summary",
           "read_metrics", "is_run_dir", "readable_problems", "write_attention", "load_run", "require_record",
           "not_a_record",
           "read_rows", "keras_name", "begin_record", "start_record", "PendingWrite", "write_end", "record_problems"]

# What check and report say of a record whose summary still reads "running".
NEVER_FINISHED = "this run never finished (status running: interrupted or still training)"


def versions() -> dict:
    """The libraries a run trained with, and the Keras backend it ran on (summary.json's ``versions``)."""
    import platform

    import keras
    import numpy as np

    from diagnose._tf import import_tensorflow_quietly

    backend = keras.backend.backend()
    found = {"python": platform.python_version(), "tensorflow": import_tensorflow_quietly().__version__,
             "keras": keras.__version__, "keras_backend": backend, "numpy": np.__version__, "diagnose": __version__}
    if backend in ("jax", "torch"):
        found[backend] = __import__(backend).__version__
    return found


def write_config(run_dir: str | os.PathLike, model: dict, data: dict, train: dict,
                 rebuild: dict | None = None) -> None:
    """Writes ``config.json`` (with ``rebuild`` when the run can be trained again)."""
    config = {"schema": SCHEMA_VERSION, "model": model, "data": data, "train": train}
    if rebuild is not None:
        config["rebuild"] = rebuild
    write_json(Path(run_dir) / CONFIG, config)


def write_metrics(run_dir: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Writes ``metrics.csv``: the base columns first, then others in first-seen order."""
    atomic_write(Path(run_dir) / METRICS, _metrics_text(rows))


def _metrics_text(rows: Iterable[dict]) -> str:
    rows = list(rows)
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buf.getvalue()


def write_attention(run_dir: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Writes ``attention.csv`` (winning-slot counts per logged row and hop)."""
    text = _attention_text(rows)
    if text is not None:
        atomic_write(Path(run_dir) / ATTENTION, text)


def _attention_text(rows: Iterable[dict]) -> str | None:
    rows = list(rows)
    if not rows:
        return None
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_end(run_dir: str | os.PathLike, rows: Iterable[dict], attention: Iterable[dict], summary: dict) -> None:
    """Writes a run's last ``metrics.csv`` (and ``attention.csv``) and its ``summary.json``, as
    :func:`write_metrics`, :func:`write_attention` and :func:`write_summary` would one after the other:
    synced to disk side by side, then renamed in that order, so a summary is never seen before the rows
    it counts."""
    run_dir = Path(run_dir)
    files = [(run_dir / METRICS, _metrics_text(rows))]
    if (text := _attention_text(attention)) is not None:
        files.append((run_dir / ATTENTION, text))
    atomic_write_all([*files, (run_dir / SUMMARY, _summary_text(summary))])


def not_a_record(path: str | os.PathLike) -> str:
    """The one-line error for a directory that holds neither a run record nor a study."""
    return (f"{path} is neither a run directory ({CONFIG}) nor an ablation directory ({MANIFEST}); "
            "pass the --out of 'diagnose train' or 'diagnose run-ablation', or a diagnose.Monitor's run_dir")


def require_record(path: str | os.PathLike) -> None:
    """Raises DiagnoseError, in one line, unless ``path`` is a directory holding a run record."""
    path = Path(path)
    hint = "pass the --out of 'diagnose train' or a diagnose.Monitor's run_dir"
    if not path.exists():
        raise DiagnoseError(f"{path} does not exist; {hint}")
    if not path.is_dir():
        raise DiagnoseError(f"{path} is a file, not a run directory; {hint}")
    if is_study_dir(path):
        raise DiagnoseError(f"{path} is an ablation directory, not a run; pass one of its runs "
                            f"({path}/{RUNS}/<id>) or use 'diagnose check {path}'")
    if not is_run_dir(path):
        raise DiagnoseError(f"{path} holds no run record (no {CONFIG}); {hint}")


def load_run(run_dir: str | os.PathLike, tidy: bool = True) -> pandas.DataFrame:
    """One run as a pandas DataFrame.

    Args:
        run_dir: a run directory.
        tidy: True gives long form, one row per (step, metric): columns ``run``,
            ``step``, ``epoch``, ``metric``, ``value`` (NaN cells dropped); False
            gives ``metrics.csv``'s columns, one row per logged step.

    ``epoch`` is the epoch a row's step belongs to, counted from 0 as Keras' ``History.epoch``:
    steps are 1-based, so step s of epochs of E steps is in epoch (s - 1) // E (the last step
    of the first epoch is in epoch 0). The frame's ``attrs`` carry ``config`` and ``summary`` (dicts).

    Raises:
        DiagnoseError: ``run_dir`` is missing, a file, an ablation directory, holds no
            record or a damaged one (one line naming the file and what to pass).
    """
    run_dir = Path(run_dir)
    require_record(run_dir)
    wide = read_metrics(run_dir)
    summary = read_summary(run_dir) if (run_dir / SUMMARY).is_file() else None
    if "epoch" in wide and "step" in wide:
        wide["epoch"] = _epoch_of_step(wide["step"], wide["epoch"], summary)
    if tidy:
        frame = wide.melt(id_vars=["step", "epoch"], var_name="metric", value_name="value").dropna(subset=["value"])
        frame.insert(0, "run", run_dir.name)
        frame = frame.reset_index(drop=True)
    else:
        frame = wide
    frame.attrs["config"] = read_config(run_dir)
    frame.attrs["summary"] = summary
    return frame


def _epoch_of_step(steps, epochs, summary: dict | None):
    """The epoch (from 0) each step belongs to: (step - 1) // E, with E the steps per epoch as the Keras
    run's contract read it, else as the rows' fractional epochs done (step / E) give it."""
    import numpy as np

    steps = steps.to_numpy(dtype=float)
    per_epoch = ((summary or {}).get("contract") or {}).get("steps_per_epoch")
    if not (isinstance(per_epoch, (int, float)) and per_epoch > 0):
        done = epochs.to_numpy(dtype=float)
        known = (steps > 0) & (done > 0) & np.isfinite(done)
        if not known.any():
            return epochs
        per_epoch = float(np.median(steps[known] / done[known]))
    return np.maximum((steps - 1) // round(per_epoch), 0).astype(int)


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(float(v))  # shortest repr that round-trips exactly (numpy floats too)
    return v


def write_summary(run_dir: str | os.PathLike, summary: dict) -> None:
    """Writes ``summary.json``; ``status`` must be one of :data:`STATUSES`."""
    atomic_write(Path(run_dir) / SUMMARY, _summary_text(summary))


def _summary_text(summary: dict) -> str:
    if summary.get("status") not in STATUSES:
        raise ValueError(f"summary status must be one of {STATUSES}, got {summary.get('status')!r}")
    return json_text({"schema": SCHEMA_VERSION, **summary})


def read_config(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / CONFIG)


def keras_name(column: str) -> str:
    """A column's name as the record writes it now: a validation column written under its old name
    (``val_loss``, ``val_accuracy/NAME``) as Keras names it (``val_loss``, ``val_accuracy/NAME``)."""
    return "val_" + column[len(_OLD_VALIDATION):] if column.startswith(_OLD_VALIDATION) else column


def read_summary(run_dir: str | os.PathLike) -> dict:
    """``summary.json``, its ``final`` and ``best`` figures under the columns' names (:func:`keras_name`)."""
    summary = read_json(Path(run_dir) / SUMMARY)
    for key in ("final", "best"):
        if isinstance(summary.get(key), dict):
            summary[key] = {keras_name(k): v for k, v in summary[key].items()}
    return summary


def read_metrics(run_dir: str | os.PathLike):
    """``metrics.csv`` as a pandas DataFrame (empty cells are NaN), its columns as :func:`keras_name` names them.

    Raises:
        RecordError: the file is missing, empty or not a CSV table, naming it.
    """
    import pandas as pd

    path = Path(run_dir) / METRICS
    try:
        return pd.read_csv(path).rename(columns=keras_name)
    except FileNotFoundError:
        raise RecordError(f"{path} is missing") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is damaged ({str(exc).splitlines()[0]})") from None


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a run record (its config.json at least)."""
    return (Path(path) / CONFIG).is_file()


def read_rows(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``metrics.csv`` and ``attention.csv`` as lists of row dicts (empty cells left out; columns as
    :func:`keras_name` names them)."""
    def rows(name):
        path = Path(run_dir) / name
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", newline="") as fh:
            return [{keras_name(k): _parse_cell(k, v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    return rows(METRICS), rows(ATTENTION)


def _parse_cell(key: str, value: str):
    if key in ("step", "hop") or key.startswith("pos"):
        return int(value)
    return float(value)


def begin_record(run_dir: str | os.PathLike, model: dict, data: dict, train: dict,
                 rebuild: dict | None = None, summary: dict | None = None) -> Path:
    """Starts a run record: ``config.json`` and a summary that says ``running`` (with ``summary``'s entries).

    A record already in ``run_dir`` is replaced as a whole: the new one is built in a
    sibling directory and swapped in by rename, so ``run_dir`` always names one whole
    record (the old, or the new saying ``running``), never a new config beside old metrics.

    Raises:
        DiagnoseError: ``run_dir`` holds a record and other files (or the working directory), or a
            symbolic link where the record goes.
    """
    _record_writes(run_dir, model, data, train, rebuild, summary)()
    return Path(run_dir)


def start_record(run_dir: str | os.PathLike, model: dict, data: dict, train: dict,
                 rebuild: dict | None = None, summary: dict | None = None) -> PendingWrite:
    """:func:`begin_record` with its checks made now and its writes on a thread of their own.

    The writes (two files written aside, each synced to disk, then renamed into place; a
    record already there swapped out and removed) cost a few milliseconds on a quiet disk
    and tens while other processes write (a sync waits for their data too): run beside
    the first training steps, they cost the caller nothing. The entries are copied now,
    so the record holds them as they are at this call. Wait for the returned
    :class:`PendingWrite` before writing anything else into ``run_dir``.

    Raises:
        DiagnoseError: as :func:`begin_record`, at this call.
    """
    return PendingWrite(_record_writes(run_dir, model, data, train, rebuild, summary))


def _record_writes(run_dir, model, data, train, rebuild, summary):
    """begin_record's checks, made now, and the call that writes the record (of a copy of its entries)."""
    run_dir = Path(run_dir)
    refuse_links(run_dir, _RECORD_NAMES)  # a link where the record goes would take its writes outside
    config = clean_json({"model": model, "data": data, "train": train, "rebuild": rebuild})  # copies (JSON's)
    summary = clean_json({"status": "running", **(summary or {})})

    def write_to(where: Path) -> None:
        write_config(where, config["model"], config["data"], config["train"], config["rebuild"])
        write_summary(where, summary)

    if not any((run_dir / name).exists() for name in (CONFIG, SUMMARY, METRICS)):
        def write() -> None:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_to(run_dir)
        return write
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in _RECORD_NAMES and not p.name.startswith("."))
    if others or Path.cwd().resolve().is_relative_to(run_dir.resolve()):
        raise DiagnoseError(f"{run_dir} holds a run record and {', '.join(others) or 'the working directory'}; "
                            "replacing the record would replace them too: move them, or choose another directory")

    def replace() -> None:
        new = make_temp_dir(run_dir.parent, prefix=f".{run_dir.name}.", suffix=".new")
        try:
            write_to(new)
            replace_dir(new, run_dir)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
    return replace


class PendingWrite:
    """Writes running on a thread of their own (:func:`start_record`).

    The thread is not a daemon: a program that ends while it runs waits for it, so the
    writes are never cut off by the interpreter's exit.
    """

    def __init__(self, write):
        self._error: BaseException | None = None

        def run() -> None:
            try:
                write()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                self._error = exc

        self._thread = threading.Thread(target=run, name="diagnose-record-start")
        self._thread.start()

    def done(self) -> bool:
        """Whether the writes have ended (done or failed)."""
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Returns once the writes are on disk; raises what they raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def crash_note(run_dir: str | os.PathLike) -> str | None:
    """"this run crashed: <error>" for a run whose training raised (status failed), else None."""
    try:
        summary = read_summary(run_dir)
    except RecordError:
        return None
    if summary.get("status") != "failed":
        return None
    return f"this run crashed before it finished: {summary.get('error') or 'no error was recorded'}"


def record_problems(run_dir: str | os.PathLike) -> list[str]:
    """What makes a run record incomplete or damaged, in words; empty when it is whole.

    Whole: config.json and summary.json parse and, for a run that ended (completed
    or diverged), metrics.csv is cut off nowhere and reaches the summary's last step,
    with a finite training loss if completed. ``running`` gives :data:`NEVER_FINISHED`;
    a failed run promises only its summary. The sweep redoes runs with problems;
    check and report name them.
    """
    run_dir = Path(run_dir)
    missing = [f"{name} is missing" for name in (CONFIG, SUMMARY) if not (run_dir / name).is_file()]
    if missing:
        return missing
    try:
        read_config(run_dir)
        summary = read_summary(run_dir)
    except RecordError as exc:
        return [str(exc).replace(f"{run_dir}{os.sep}", "")]
    status = summary.get("status")
    if status not in STATUSES:
        return [f"{SUMMARY} has no valid status ({status!r})"]
    if status == "running":
        return [NEVER_FINISHED]
    if status == "failed":
        return []
    return _metrics_problems(run_dir, summary)


def readable_problems(run_dir: str | os.PathLike, fix: str) -> list[str]:
    """The problems of a record that can still be read (only: it never finished); empty when whole.

    Raises:
        DiagnoseError: the record is incomplete or damaged, naming what and ``fix``.
    """
    problems = record_problems(run_dir)
    if problems and problems != [NEVER_FINISHED]:
        raise DiagnoseError(f"the run record in {run_dir} is incomplete: {'; '.join(problems)}; {fix}")
    return problems


def _metrics_problems(run_dir: Path, summary: dict) -> list[str]:
    for name in (METRICS, ATTENTION):
        path = run_dir / name
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            return [f"{name} is cut off (its last line is incomplete)"]
    path = run_dir / METRICS
    if not path.is_file():
        return [f"{METRICS} is missing"]
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            table = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        return [f"{METRICS} is damaged ({exc})"]
    if not table or "step" not in table[0]:
        return [f"{METRICS} has no header"]
    header, rows = table[0], table[1:]
    if not rows:
        return [f"{METRICS} has no rows"]
    short = next((i for i, r in enumerate(rows, start=2) if len(r) != len(header)), None)
    if short is not None:
        return [f"{METRICS} is damaged (line {short} has {len(table[short - 1])} of {len(header)} fields)"]
    column = {name: i for i, name in enumerate(header)}
    try:
        last = int(float(rows[-1][column["step"]]))
        losses = [float(r[column["loss"]] or "nan") for r in rows] if "loss" in column else [0.0]
    except ValueError as exc:
        return [f"{METRICS} is damaged ({exc})"]
    steps = summary.get("steps")
    if isinstance(steps, int) and last < steps:
        return [f"{METRICS} ends at step {last} but {SUMMARY} says {steps} steps"]
    if summary.get("status") == "completed" and not any(math.isfinite(x) for x in losses):
        return [f"{METRICS} has no finite training loss"]
    return []

"""The growing part of a run record: metrics rows, attention rows and TensorBoard scalars.

Both the MemN2N training path and ``diagnose.Monitor`` append rows here, so the two
write the same files the same way (see :mod:`diagnose.runrecord`).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
from pathlib import Path

import numpy as np

from diagnose import runrecord

__all__ = ["RowLog", "FLUSH_SECONDS", "FLUSH_SPACING"]

# Rewrite the record's growing files at least this often (seconds), so long runs can be watched.
FLUSH_SECONDS = 30.0
# ... and at a boundary (an epoch's end, a validation) once this many times the last
# rewrite's duration has passed since it: a rewrite (metrics.csv and attention.csv,
# fsynced, from the first row) costs ~20 ms on a small run and grows with the rows, and
# at every epoch's end it was a twentieth of a 3-second fit; so spaced, rewrites take
# about 1% of a run's time, and a slow disk or a long record is rewritten less often.
FLUSH_SPACING = 100
# What the spacing assumes before the first rewrite has been timed (seconds).
_FIRST_FLUSH_COST = 0.02


class RowLog:
    """Rows of metrics.csv and attention.csv in memory, TensorBoard scalars as they come.

    Nothing is written before the first :meth:`flush` (the TensorBoard file is made
    then), so the record may still be being started (:func:`~diagnose.runrecord.start_record`)
    while rows come in.

    Args:
        run_dir: the run directory.
        tensorboard: also write each row's finite numbers as scalars under run_dir/tb.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.rows: list[dict] = []
        self.attention: list[dict] = []
        self._tensorboard, self._tb = tensorboard, None  # the event file, made at the first flush
        self._tb_pending: list[dict] = []  # rows not yet written to TensorBoard (written at flush)
        self._flushed, self._flush_cost = time.perf_counter(), _FIRST_FLUSH_COST

    def flush_due(self, boundary: bool = False) -> bool:
        """Whether to rewrite now: FLUSH_SECONDS since the last rewrite, or at a boundary, its cost spaced."""
        since = time.perf_counter() - self._flushed
        return since > FLUSH_SECONDS or (boundary and since > FLUSH_SPACING * self._flush_cost)

    def append(self, row: dict, histogram=None) -> dict:
        """Adds a row (``step`` required) and, per hop, its winning-slot counts."""
        self.rows.append(row)
        step = row["step"]
        if histogram is not None:
            for hop, counts in enumerate(np.atleast_2d(histogram), start=1):
                if counts.size > 1:
                    self.attention.append({"step": step, "hop": hop,
                                           **{f"pos{i}": int(c) for i, c in enumerate(counts)}})
        if self._tensorboard:
            self._tb_pending.append(row)
        return row

    def _write_tensorboard(self) -> None:
        """The rows appended since the last flush (with what was added to them since) as TensorBoard scalars."""
        for row in self._tb_pending:
            self._tb.scalars(int(row["step"]), [(key, v) for key, v in row.items()
                                                 if key != "step" and isinstance(v, float) and math.isfinite(v)])
        self._tb_pending = []

    def flush(self) -> None:
        """Rewrites metrics.csv and attention.csv (atomically) and writes and flushes TensorBoard."""
        start = time.perf_counter()
        runrecord.write_metrics(self.run_dir, self.rows)
        runrecord.write_attention(self.run_dir, self.attention)
        self._flush_tensorboard()
        self._flushed = time.perf_counter()
        self._flush_cost = self._flushed - start

    def _flush_tensorboard(self) -> None:
        if self._tensorboard:
            if self._tb is None:
                self._tb = _EventFile(self.run_dir / runrecord.TENSORBOARD)
            self._write_tensorboard()
            self._tb.flush()

    def close(self, summary: dict | None = None) -> None:
        """The last rewrite. With ``summary`` (summary.json's entries), that file is written with the rows,
        synced to disk beside them and renamed after them (:func:`~diagnose.runrecord.write_end`)."""
        if summary is None:
            self.flush()
        else:
            self._flush_tensorboard()
            runrecord.write_end(self.run_dir, self.rows, self.attention, summary)
        if self._tb is not None:
            self._tb.close()
        self._tensorboard, self._tb = False, None


_event_files = itertools.count()  # numbers event files made in this process, as TensorBoard's writer does


class _EventFile:
    """A TensorBoard event file: a TFRecord file of ``Event`` protos, as TensorBoard's ``EventFileWriter`` writes it.

    Byte for byte what that writer writes, with no TensorFlow op (a scalar written
    through ``tf.summary`` costs ~1.5 ms of op dispatch, which at tens of columns a
    row was a fifth of a small model's fit) and without its checksums computed in
    Python (~80 ns a byte: an event of 90 scalars is 4 KB, so 20 rows took ~7 ms of
    a background thread that holds the interpreter's lock): TensorFlow's own record
    writer frames and checksums each record in C++.
    """

    def __init__(self, logdir: Path):
        from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2

        from diagnose._tf import import_tensorflow_quietly

        tf = import_tensorflow_quietly()
        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_event_files)}"
        self._event, self._dtype = event_pb2.Event, types_pb2.DT_FLOAT
        # What tf.summary.scalar writes: a float32 scalar tensor under the scalars plugin.
        self._metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="scalars"), data_class=summary_pb2.DATA_CLASS_SCALAR)
        self._writer = tf.io.TFRecordWriter(str(logdir / name))
        self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2",
                                           source_metadata=event_pb2.SourceMetadata(
                                               writer="tensorboard.summary.writer.event_file_writer"))
                           .SerializeToString())
        self._writer.flush()

    def scalars(self, step: int, values: list[tuple[str, float]]) -> None:
        """One event holding ``values`` (tag, value) as scalars at ``step``; nothing when there are none."""
        if not values:
            return
        event = self._event(wall_time=time.time(), step=step)
        summary = event.summary.value
        for tag, v in values:  # filled in place: twice as fast as building each message from its parts
            value = summary.add(tag=tag)
            value.metadata.CopyFrom(self._metadata)
            value.tensor.dtype = self._dtype
            value.tensor.float_val.append(v)
        self._writer.write(event.SerializeToString())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

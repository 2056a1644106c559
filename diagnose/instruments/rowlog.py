"""The growing part of a run record: metrics rows, attention rows and TensorBoard scalars.

Both the MemN2N training path and ``diagnose.Monitor`` append rows here, so the two
write the same files the same way (see :mod:`diagnose.runrecord`).
"""

from __future__ import annotations

import math
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

    Args:
        run_dir: the run directory.
        tensorboard: also write each row's finite numbers as scalars under run_dir/tb.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.rows: list[dict] = []
        self.attention: list[dict] = []
        self._tb = None
        if tensorboard:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._tb = EventFileWriter(str(self.run_dir / runrecord.TENSORBOARD))
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
        if self._tb is not None:
            self._tb_pending.append(row)
        return row

    def _write_tensorboard(self) -> None:
        """The rows appended since the last flush (with what was added to them since) as TensorBoard scalars.

        Written as event protos by TensorBoard's own writer, with no TensorFlow op: a
        scalar written through ``tf.summary`` costs ~1.5 ms of op dispatch, which at
        tens of columns a row was a fifth of a small model's fit.
        """
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

        # What tf.summary.scalar writes: a float32 scalar tensor under the scalars plugin.
        metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="scalars"), data_class=summary_pb2.DATA_CLASS_SCALAR)
        for row in self._tb_pending:
            values = [summary_pb2.Summary.Value(tag=key, metadata=metadata, tensor=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, float_val=[v])) for key, v in row.items()
                if key != "step" and isinstance(v, float) and math.isfinite(v)]
            if values:
                self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(row["step"]),
                                                   summary=summary_pb2.Summary(value=values)))
        self._tb_pending = []

    def flush(self) -> None:
        """Rewrites metrics.csv and attention.csv (atomically) and writes and flushes TensorBoard."""
        start = time.perf_counter()
        runrecord.write_metrics(self.run_dir, self.rows)
        runrecord.write_attention(self.run_dir, self.attention)
        if self._tb is not None:
            self._write_tensorboard()
            self._tb.flush()
        self._flushed = time.perf_counter()
        self._flush_cost = self._flushed - start

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


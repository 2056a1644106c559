"""The growing part of a run record: metrics rows, attention rows and TensorBoard scalars.

Both the MemN2N training path and ``diagnose.Monitor`` append rows here, so the two
write the same files the same way (see :mod:`diagnose.runrecord`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()


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
        self._tb = (tf.summary.create_file_writer(str(self.run_dir / runrecord.TENSORBOARD))
                    if tensorboard else None)

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
            with self._tb.as_default():
                for key, value in row.items():
                    if key != "step" and isinstance(value, float) and math.isfinite(value):
                        tf.summary.scalar(key, value, step=step)
        return row

    def flush(self) -> None:
        """Rewrites metrics.csv and attention.csv (atomically) and flushes TensorBoard."""
        runrecord.write_metrics(self.run_dir, self.rows)
        runrecord.write_attention(self.run_dir, self.attention)
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

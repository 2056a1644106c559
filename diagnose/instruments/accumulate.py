"""Interval accumulators: per-step measures summed in variables, read once per logged row.

A train step calls :meth:`Accumulator.add` with its measures (a dict of scalars), an
optional histogram, whether the step was finite and which entry was not. Nothing
leaves the graph until the host calls :meth:`Accumulator.read_and_reset`, once per
logged row.
"""

from __future__ import annotations

import math

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.measures import column_names

tf = import_tensorflow_quietly()


class Accumulator:
    """Sums of each column over the healthy steps since the last read.

    With a ``capacity``, the variables are created with the accumulator, before any
    trace, and the columns fill their front: a step that creates no variable is traced
    once (one that does is traced twice by TensorFlow). Without one, or where the
    columns outgrow it, they are created on the first :meth:`add` (inside the first
    trace, lifted out with ``init_scope``), when the column names are known.

    Args:
        names: names of the entries of ``bad`` after the first (the loss); the
            variable reported when a step first turns non-finite.
        capacity: columns the variables made now hold (None: made at the first add).
        hist_shape: the histogram's shape, with a capacity.
        growable: with a capacity, more columns than it holds make new variables
            instead of raising.
    """

    def __init__(self, names: list[str], capacity: int | None = None, hist_shape: tuple | None = None,
                 growable: bool = False):
        self.names = list(names)
        self._growable = growable  # columns beyond the capacity: new variables (a second trace), not an error
        self.columns: list[str] | None = None
        self._sums = self._count = self._hist = None
        self._capacity = capacity
        with tf.init_scope():
            if capacity is not None:
                # Created now, so that a step first traced inside a graph loop (where
                # no variable may be created) can use them; columns fill the front.
                self._sums = tf.Variable(tf.zeros(capacity, tf.float64), trainable=False)
                self._count = tf.Variable(0.0, dtype=tf.float64, trainable=False)
                self._hist = tf.Variable(tf.zeros(hist_shape or (1,), tf.float64), trainable=False)
            self._diverged = tf.Variable([0, 0], dtype=tf.int64, trainable=False)
            self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._drains: dict = {}  # read_and_reset's compiled functions, by the accumulators they read

    @property
    def step(self):
        return self._step

    def add(self, row: dict, hist, bad) -> None:
        """Records one step (in-graph).

        Args:
            row: column name -> scalar tensor, or a tuple of names -> one (n,)
                tensor (a :func:`~diagnose.instruments.measures.block`).
            hist: a float tensor of fixed shape summed over steps (or None).
            bad: bool (1 + len(names),): is the loss / each gradient non-finite.
        """
        step = self._step.assign_add(1)
        names = column_names(row)
        if self.columns is not None and names != self.columns:
            raise RuntimeError("a retrace of the train step produced different instrument columns")
        if self.columns is None and self._capacity is not None and len(names) > self._capacity \
                and not self._growable:
            raise RuntimeError(f"{len(names)} instrument columns exceed the accumulator's {self._capacity}")
        if self.columns is None and self._capacity is not None and len(names) <= self._capacity \
                and (hist is None or tuple(hist.shape) == tuple(self._hist.shape)):
            self.columns = names
        elif self.columns is None:
            self._capacity = None  # outgrown: variables of the columns' own size
            self.columns = names
            with tf.init_scope():
                self._sums = tf.Variable(tf.zeros(len(self.columns), tf.float64), trainable=False)
                self._count = tf.Variable(0.0, dtype=tf.float64, trainable=False)
                self._hist = tf.Variable(tf.zeros((1,) if hist is None else hist.shape, tf.float64), trainable=False)
        finite = tf.logical_not(tf.reduce_any(bad))
        alive = finite & tf.equal(self._diverged[0], 0)
        # Stacked in float32 and widened once: a cast per column would be a kernel
        # per column under XLA, most of what the instruments cost on a small model.
        vec = tf.cast(tf.concat([tf.reshape(tf.cast(v, tf.float32), (-1,)) for v in row.values()], 0), tf.float64)
        if self._capacity is not None:
            vec = tf.pad(vec, [[0, self._capacity - len(self.columns)]])
        self._sums.assign_add(tf.where(alive, vec, tf.zeros_like(vec)))
        self._count.assign_add(tf.cast(alive, tf.float64))
        if hist is not None:
            self._hist.assign_add(tf.cast(hist, tf.float64) * tf.cast(alive, tf.float64))
        first_bad = tf.argmax(tf.cast(bad, tf.int64), output_type=tf.int64) - 1
        newly = tf.logical_not(finite) & tf.equal(self._diverged[0], 0)
        self._diverged.assign(tf.where(newly, tf.stack([step, first_bad]), self._diverged))

    def reset(self) -> None:
        """Zeroes everything, the step count and the divergence flag included (a new run)."""
        for var in (self._sums, self._count, self._hist):
            if var is not None:
                var.assign(tf.zeros_like(var))
        self._diverged.assign([0, 0])
        self._step.assign(0)

    def peek(self) -> dict:
        """The means of every column so far, without resetting them (one host round trip)."""
        if self.columns is None:
            return {}
        sums, count = self._sums.numpy(), float(self._count.numpy())
        return {c: float(x) / count for c, x in zip(self.columns, sums[: len(self.columns)])} if count else {}

    def read_and_reset(self) -> dict:
        """Interval means of every column (one host round trip).

        Returns:
            ``{"row": {column: mean}, "histogram": ndarray, "steps": healthy steps,
            "diverged": None | {"step", "variable"}}``.
        """
        return read_and_reset(self)[0]

    def _drained(self) -> tuple:
        """The variables read_and_reset reads: the sums it zeroes, then the divergence flag."""
        return (self._sums, self._count, self._hist), self._diverged

    def _means(self, sums, count, hist, diverged) -> dict:
        return interval_means(self.columns, self.names, sums, count, hist, diverged)


def interval_means(columns, names, sums, count, hist, diverged) -> dict:
    """The read of an interval from its sums: each column's mean over ``count`` healthy steps, a column
    ``X_sq`` beside ``X`` read back as X's standard deviation, and where the run first turned non-finite
    (``diverged``: its step, 0 if none, and the entry of ``bad`` that did, -1 for the loss)."""
    means = {c: (float(x) / count if count else math.nan) for c, x in zip(columns, sums[: len(columns)])}
    # A column X_sq beside X is X's second moment: read back as X's standard deviation.
    for column in [c for c in means if c.endswith("_sq") and c[:-3] in means]:
        second, mean = means.pop(column), means[column[:-3]]
        means[column[:-3] + "_sd"] = math.sqrt(max(second - mean * mean, 0.0)) if count else math.nan
    step, var = (int(x) for x in diverged)
    return {"row": means, "histogram": hist, "steps": count,
            "diverged": None if not step else {"step": step, "variable": "loss" if var < 0 else names[var]}}


def read_and_reset(*accumulators: Accumulator) -> list[dict]:
    """:meth:`Accumulator.read_and_reset` of several accumulators in one call of a compiled function.

    Seven eager reads and writes per accumulator cost ~0.3 ms each; the function that
    reads and zeroes them is made once per set of accumulators holding columns.
    """
    ready = tuple(a for a in accumulators if a.columns is not None)
    values = []
    if ready:
        key = tuple(id(a) for a in ready)
        drain = ready[0]._drains.get(key)  # kept by the first one, dropped with it
        if drain is None:
            parts = [a._drained() for a in ready]

            @tf.function(autograph=False)
            def drain():
                out = [v.read_value() for sums, flag in parts for v in (*sums, flag)]
                for sums, _ in parts:
                    for v in sums:
                        v.assign(tf.zeros_like(v))
                return out

            ready[0]._drains[key] = drain
        values = [v.numpy() for v in drain()]
    results = {id(a): a._means(*values[4 * i: 4 * i + 4]) for i, a in enumerate(ready)}
    return [results.get(id(a)) or {"row": {}, "histogram": np.zeros((0,)), "steps": 0, "diverged": None}
            for a in accumulators]


def nonfinite_flags(loss, grads, norms, values):
    """bool (1 + n,): loss and each gradient non-finite.

    A gradient's norm says so for free; only when the norm itself is not finite
    (it may merely overflow float32) are its entries looked at.
    """
    ok = [tf.cond(tf.math.is_finite(n), lambda: tf.constant(True),
                  lambda g=g: tf.reduce_all(tf.math.is_finite(values(g)))) for g, n in zip(grads, norms)]
    return tf.logical_not(tf.stack([tf.math.is_finite(tf.cast(loss, tf.float32))] + ok))

"""The statistics of the targets a model trains on that give the findings' baselines: a classifier's label
entropy and ln of its classes, a regression's target variance."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

if TYPE_CHECKING:
    from diagnose.instruments.targets import LossInfo

__all__ = ["TargetStats"]


class TargetStats:
    """Counts of the labels (a classifier) or moments of the targets (a regression) seen in training.

    Accumulated in-graph on the sampled steps (an eighth of the batches gives the label
    distribution's entropy to a few thousandths of a nat on a few thousand examples),
    read once by the Monitor for the baselines.
    """

    def __init__(self):
        self._counts = self._moments = None
        self._exact: dict | None = None  # computed on the host from the arrays fit was given

    def from_arrays(self, y, info: "LossInfo", classes: int | None) -> None:
        """The baselines from the training targets themselves, when fit gets arrays (exact, no step cost)."""
        y = np.asarray(y)
        if info.kind == "binary":
            labels, classes = (y.reshape(-1) > 0.5).astype(np.int64), 2
        elif info.kind in ("categorical", "sparse") and classes and classes >= 2:
            labels = (y.reshape(-1, classes).argmax(-1) if y.ndim >= 2 and y.shape[-1] == classes
                      and info.kind != "sparse" else y.reshape(-1).astype(np.int64))
        elif info.kind == "regression":
            self._exact = {"target_variance": float(np.var(y.astype(np.float64)))} if y.size > 1 else {}
            return
        else:
            return
        counts = np.bincount(labels[(labels >= 0) & (labels < classes)], minlength=classes)
        self._exact = _label_baselines(counts)

    def prepare(self, classes: int | None, info: "LossInfo") -> None:
        """Makes the variables the step would add to (host side), so that it creates none when first traced."""
        if self._exact is not None:
            return
        with tf.init_scope():
            if info.kind == "regression" and self._moments is None:
                self._moments = tf.Variable(tf.zeros(3, tf.float64), trainable=False)
            elif info.kind != "regression" and self._counts is None and classes:
                width = 2 if info.kind == "binary" or classes == 1 else int(classes)
                self._counts = tf.Variable(tf.zeros(width, tf.float64), trainable=False)

    def reset(self) -> None:
        """Forgets the targets seen (a new run)."""
        self._exact = None
        for var in (self._counts, self._moments):
            if var is not None:
                var.assign(tf.zeros_like(var))

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def add_classes(self, labels, weights, classes: int) -> None:
        if self._counts is None or self._counts.shape[0] != classes:
            with tf.init_scope():
                self._counts = tf.Variable(tf.zeros(classes, tf.float64), trainable=False)
        w = tf.ones_like(labels, tf.float64) if weights is None else tf.cast(weights, tf.float64)
        valid = tf.logical_and(labels >= 0, labels < classes)
        self._counts.assign_add(tf.math.unsorted_segment_sum(tf.where(valid, w, 0.0), tf.where(valid, labels, 0),
                                                             classes))

    def add_values(self, y) -> None:
        if y is None:
            return
        if self._moments is None:
            with tf.init_scope():
                self._moments = tf.Variable(tf.zeros(3, tf.float64), trainable=False)
        v = tf.reshape(tf.cast(y, tf.float64), (-1,))
        self._moments.assign_add(tf.stack([tf.cast(tf.size(v), tf.float64), tf.reduce_sum(v),
                                           tf.reduce_sum(v * v)]))

    def baselines(self) -> dict:
        """``ln_vocab`` (ln of the classes), ``unigram_entropy`` (of the labels seen), or ``target_variance``."""
        if self._exact is not None:
            return dict(self._exact)
        if self._counts is not None:
            return _label_baselines(self._counts.numpy())
        if self._moments is not None:
            n, s, ss = self._moments.numpy()
            if n > 1:
                return {"target_variance": float(max(ss / n - (s / n) ** 2, 0.0))}
        return {}


def _label_baselines(counts) -> dict:
    """ln of the classes and the labels' entropy from their counts."""
    total = float(np.sum(counts))
    if total <= 0:
        return {}
    p = counts[counts > 0] / total
    return {"ln_vocab": math.log(len(counts)), "unigram_entropy": float(-(p * np.log(p)).sum()),
            "classes": int(len(counts))}

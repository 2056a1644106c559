"""Gradient handling shared by the training path and the Keras wrapper.

Embedding gradients arrive as IndexedSlices with one row per looked-up token;
:func:`dedupe_slices` sums repeats so norms are those of the dense gradient.
Clipping is computed from those norms, and :func:`guard` zeroes a step's update when
anything in it is not finite.
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.measures import gradient_norms, values

tf = import_tensorflow_quietly()

__all__ = ["dedupe_slices", "clip_scales", "clip_scales_at", "CLIP_MODES", "clip_gradients", "scale", "guard"]


def dedupe_slices(grad, dense_rows: int | None = None):
    """Sums duplicate rows of an IndexedSlices gradient; dense gradients pass through.

    With ``dense_rows`` (the table's row count) the result is the dense gradient:
    one segment sum, no sort, and the optimizer's update becomes a dense subtraction
    instead of a scatter. Callers ask for it where the table has no more rows than
    the slices (PTB at the paper's sizes: 10,001 words, 12,800 looked-up tokens per
    batch). Otherwise each repeated id's rows are summed into its first occurrence
    (one integer scatter finds it) and the other rows become zero: still
    IndexedSlices, no sort, static shapes, so it compiles under XLA. Norms and
    additive updates of the result equal the dense gradient's.
    """
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    idx, vals = grad.indices, grad.values
    if dense_rows is not None:
        return tf.math.unsorted_segment_sum(vals, idx, dense_rows)
    n = tf.shape(idx)[0]
    first = tf.tensor_scatter_nd_min(tf.fill(tf.cast(grad.dense_shape[:1], tf.int32), n), idx[:, None], tf.range(n))
    summed = tf.math.unsorted_segment_sum(vals, tf.gather(first, idx), n)
    return tf.IndexedSlices(summed, idx, grad.dense_shape)


def clip_scales(norms, mode: str, clip_norm: float) -> list:
    """The factor each gradient is multiplied by: global-norm, per-tensor (Keras clipnorm) or 1."""
    if mode == "none":
        return [tf.constant(1.0)] * len(norms)
    if mode == "global":
        global_norm = tf.sqrt(tf.add_n([n * n for n in norms]))
        return [tf.minimum(1.0, clip_norm / tf.maximum(global_norm, 1e-12))] * len(norms)
    return [tf.minimum(1.0, clip_norm / tf.maximum(n, 1e-12)) for n in norms]


# Clipping modes by index, for a step that reads its mode from a variable (:func:`clip_scales_at`).
CLIP_MODES = ("none", "global", "per_tensor")


def clip_scales_at(norms, mode, clip_norm) -> list:
    """:func:`clip_scales` with the mode (an int32 tensor indexing :data:`CLIP_MODES`) and the
    threshold read when the step runs, not when it is traced: one traced step serves every mode,
    each giving the factors :func:`clip_scales` gives for it."""
    by_mode = [clip_scales(norms, name, clip_norm) for name in CLIP_MODES]
    return [tf.where(tf.equal(mode, 1), g, tf.where(tf.equal(mode, 2), p, n))
            for n, g, p in zip(*by_mode)]


def clip_gradients(grads, mode: str, clip_norm: float, norms=None):
    """Rescales gradients: by their global norm, per tensor (Keras clipnorm), or not."""
    if mode == "none":
        return grads
    if norms is None:
        norms = gradient_norms(grads)
    return [scale(g, s) for g, s in zip(grads, clip_scales(norms, mode, clip_norm))]


def scale(g, s):
    """``g * s`` for dense gradients and IndexedSlices alike."""
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * s, g.indices, g.dense_shape)
    return g * s


def guard(g, finite):
    """The gradient where the step is finite and the entry is finite, else 0.

    A non-finite step then applies no update: the weights stay at the last finite
    state, and the run ends as diverged at the host's next read.
    """
    v = values(g)
    v = tf.where(finite & tf.math.is_finite(v), v, tf.zeros_like(v))
    return tf.IndexedSlices(v, g.indices, g.dense_shape) if isinstance(g, tf.IndexedSlices) else v

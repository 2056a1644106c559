"""In-graph measures: pure functions from tensors of one training step to scalars.

The building blocks the instrument families (:mod:`diagnose.instruments.registry`)
and both train steps share: norms, RMS, top-1 accuracy, the softmax cross-entropy
and its pieces, argmax counts. They run inside the compiled step, so nothing here
may pull a value to the host.
"""

from __future__ import annotations

import math

import numpy as np

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402
from diagnose.instruments.eager_ops import every_step_ops  # noqa: E402

# Keras' categorical cross-entropy clips probabilities to [EPSILON, 1 - EPSILON];
# a target whose probability sits at the floor contributes -ln(1e-7) = 16.1 nats
# and no useful gradient.
CLIP_FLOOR = 1e-7


def short_name(path: str) -> str:
    """A variable's path without the model prefix or a generic leaf ('kernel', 'embeddings', 'table').

    ``memn2n/A/embedding/embeddings`` -> ``A/embedding``; ``memn2n/W/kernel`` ->
    ``W``; ``memn2n/W/bias`` -> ``W/bias``. Use :func:`variable_names` for a set of
    variables: it keeps the names unique.
    """
    return variable_names([path])[0] if "/" in path else path


def variable_names(paths: list[str]) -> list[str]:
    """Short, unique, readable names for variable paths.

    Drops a first component shared by every path (the model's name) and a generic
    leaf (``kernel``, ``embeddings``, ``table``) wherever the result stays unique:
    ``Emb_A/embeddings`` -> ``Emb_A``, ``dense/kernel`` -> ``dense``,
    ``dense/bias`` stays.
    """
    parts = [p.split("/") for p in paths]
    if len(parts) > 0 and all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1 and len(parts) > 1:
        parts = [p[1:] for p in parts]
    elif len(parts) == 1 and len(parts[0]) > 2:
        parts = [parts[0][1:]]
    full = ["/".join(p) for p in parts]
    short = ["/".join(p[:-1]) if len(p) > 1 and p[-1] in ("kernel", "embeddings", "table") else "/".join(p)
             for p in parts]
    return [s if short.count(s) == 1 and s not in set(full) - {f} else f for s, f in zip(short, full)]


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow (the backend it picked at import, from KERAS_BACKEND)."""
    return keras.backend.backend() == "tensorflow"


def gather_rows(x, index):
    """``x[i, index[i]]`` for a (N, C) ``x`` and (N,) ``index``: (N,). TensorFlow's batched gather where
    Keras runs on it (XLA lowers it to one gather), ``take_along_axis`` elsewhere."""
    if on_tensorflow():
        return tf.gather(x, index[:, None], batch_dims=1)[:, 0]
    return ops.take_along_axis(x, ops.cast(index, "int32")[:, None], axis=-1)[:, 0]


def values(g):
    """The dense values of a gradient (IndexedSlices already deduplicated)."""
    return g.values if isinstance(g, tf.IndexedSlices) else g


def vector(values) -> object:
    """Per-variable scalars as one float32 (n,) vector; (0,) for a model with no trainable variable (on PyTorch
    in torch's own ops: a cast and a stack through keras.ops cost several microseconds a variable)."""
    o = every_step_ops()
    return o.stack([o.cast(v, "float32") for v in values]) if len(values) else ops.zeros((0,), "float32")


def block(names, vector) -> dict:
    """Several named columns backed by one (n,) vector: ``{(name_1, ..., name_n): vector}``.

    A measure that computes several figures in one reduction returns them this way:
    slicing the vector into scalars would cost a kernel per column under XLA, and
    the accumulator concatenates blocks as they are.
    """
    names = tuple(names)
    return {names: ops.reshape(vector, (len(names),))} if names else {}


def scalars(row: dict) -> dict:
    """A row with every block expanded into ``{name: scalar}`` (for reading, not in a hot path)."""
    out = {}
    for key, value in row.items():
        if isinstance(key, tuple):
            out.update({name: value[i] for i, name in enumerate(key)})
        else:
            out[key] = value
    return out


def column_names(row: dict) -> list[str]:
    """The column names of a row, blocks expanded, in order."""
    return [name for key in row for name in (key if isinstance(key, tuple) else (key,))]


def l2_norm(x):
    """||x||_2 of a tensor, as float32.

    The sum of squares of a large tensor is taken as a matrix-vector product: its
    squares viewed as rows of about a thousand entries, times a vector of ones, then
    the row sums added. XLA's CPU backend emits a plain reduction as one chain of
    scalar adds, in order; the product is vectorised (1.5M entries on a 2-core
    machine: 2.9 ms as a chain, 1.3 ms as rows of 1,095 or 2,055, 2.2 ms as 150 rows
    of 10,001, against 1.1 ms for a max, which only streams the tensor once). Small
    tensors keep ``tf.norm``.
    """
    x = tf.cast(x, tf.float32)
    n = x.shape.num_elements()
    width = _row_width(n, x.shape[-1] if x.shape.rank else 1) if n is not None and n >= 2**16 else None
    if width is None:
        return tf.norm(x)
    rows = tf.reshape(x, (n // width, width))
    return tf.sqrt(tf.reduce_sum(tf.matmul(rows * rows, tf.ones((width, 1)))))


# Row widths for l2_norm's product, nearest to 1,024 first.
_WIDTHS = tuple(sorted(range(128, 4097), key=lambda w: abs(math.log(w / 1024))))


def _row_width(n: int, last: int) -> int | None:
    """A divisor of ``n`` near 1,024 (128-4,096), else the last axis if 16 or wider, else None."""
    for width in _WIDTHS:
        if n % width == 0:
            return width
    return last if last >= 16 else None


# Tensors smaller than this are normed together by norms(grouped=True).
_GROUPED_BELOW = 2**16


def norms(tensors, grouped: bool = False) -> list:
    """``||t||_2`` of each tensor, as float32 scalars.

    ``grouped``: the small tensors (under 2**16 entries: biases, scales, small kernels)
    are normed in one pass over their concatenation, by a segment sum of the squares.
    Outside XLA each op costs a few microseconds of dispatch whatever its size, and a
    norm per tensor is four ops: on a small model with dozens of variables that was most
    of what a sampled step's norms cost (on PyTorch, eager, each tensor's norm is one
    torch op instead, ``torch.linalg.vector_norm``, the same L2 norm). Under XLA (which fuses the per-tensor norms
    and lowers a segment sum to a scatter) leave it False.
    """
    if keras.backend.backend() == "torch":  # eager: one torch op per tensor, not keras.ops' four (see above)
        import torch

        cast = every_step_ops().cast  # (a float32 tensor as it is: a conversion that changes nothing costs 3 us)
        return [torch.linalg.vector_norm(cast(t, "float32")) for t in tensors]
    if not on_tensorflow():  # one norm per tensor, in keras.ops (XLA needs no grouping)
        return [ops.sqrt(ops.sum(ops.square(ops.cast(values(t), "float32")))) for t in tensors]
    tensors = [tf.convert_to_tensor(t) for t in tensors]
    small = [i for i, t in enumerate(tensors)
             if grouped and t.shape.num_elements() is not None and t.shape.num_elements() < _GROUPED_BELOW]
    out = [None] * len(tensors)
    if len(small) > 1:
        sizes = [tensors[i].shape.num_elements() for i in small]
        flat = tf.concat([tf.reshape(tf.cast(tensors[i], tf.float32), (-1,)) for i in small], 0)  # (sum of sizes,)
        ids = tf.constant(np.repeat(np.arange(len(small), dtype=np.int32), sizes))
        for i, n in zip(small, tf.unstack(tf.sqrt(tf.math.segment_sum(tf.square(flat), ids)), num=len(small))):
            out[i] = n
    return [l2_norm(t) if n is None else n for t, n in zip(tensors, out)]


def gradient_norms(grads, grouped: bool = False) -> list:
    """L2 norm per gradient (see :func:`norms`); IndexedSlices must have had duplicate rows summed."""
    return norms([values(g) for g in grads], grouped)


def rms_per(x):
    """Root mean square over all axes but the first: (K,) for a stack of K tensors."""
    x = tf.cast(x, tf.float32)
    return tf.sqrt(tf.reduce_mean(tf.square(tf.reshape(x, (tf.shape(x)[0], -1))), axis=-1))


def top1_correct(outputs, targets, top=None):
    """1.0 where ``argmax(outputs) == targets`` (the first index wins ties), else 0.0: (B,).

    Computed from the row maximum instead of an argmax: XLA lowers argmax on CPU to
    a top-k sort, ~2 ms per step over a (128, 10,001) output, where this is one
    fused pass.
    """
    outputs = ops.cast(outputs, "float32")
    targets = ops.cast(targets, "int32")
    top = ops.max(outputs, axis=-1) if top is None else ops.reshape(top, (-1,))  # (B,)
    at_target = gather_rows(outputs, targets)  # (B,)
    # A tie with an earlier index means argmax would pick that index instead.
    earlier = ops.arange(outputs.shape[-1], dtype="int32")[None, :] < targets[:, None]
    tied_earlier = ops.any(ops.logical_and(earlier, ops.equal(outputs, top[:, None])), axis=-1)
    return ops.cast(ops.logical_and(ops.equal(at_target, top), ops.logical_not(tied_earlier)), "float32")


def argmax_histogram(attention):
    """Counts of the winning slot per position over the batch: (M,) for (B, M), (K, M) for (K, B, M)."""
    m = attention.shape[-1]  # the slots: known when the step is traced
    if keras.backend.backend() == "torch":  # eager: an argmax (the first maximum wins) and one count
        import torch

        winner = torch.argmax(torch.as_tensor(attention), dim=-1)  # (K, B) or (B,)
        lead = tuple(winner.shape[:-1])
        offsets = torch.arange(math.prod(lead), device=winner.device).reshape(lead + (1,)) * m
        counts = torch.bincount((winner + offsets).reshape(-1), minlength=math.prod(lead) * m)
        return counts.reshape(lead + (m,)).to(torch.float32)
    # The first slot holding the row maximum (argmax's choice), without XLA's top-k sort.
    slots = ops.arange(m, dtype="int32")
    is_max = ops.equal(attention, ops.max(attention, axis=-1, keepdims=True))
    winner = ops.min(ops.where(is_max, slots, m), axis=-1)
    return ops.sum(ops.cast(ops.equal(slots, winner[..., None]), "float32"), axis=-2)


def rms(x):
    """Root mean square of all entries."""
    x = ops.cast(x, "float32")
    return ops.sqrt(ops.mean(ops.square(x)))


def row_sq_norms(table):
    """Squared L2 norm of every row of a (V, D) table: (V,).

    Gathered at a window's ids and averaged, they give the RMS of the embedded window
    without the (B, M, D) lookup, which the compiled step never has to materialise.
    """
    return tf.reduce_sum(tf.square(tf.cast(table, tf.float32)), axis=1)


def softmax_cross_entropy(targets, logits):
    """Per-example softmax cross-entropy (nats), and the pieces the output measures reuse.

    The same number as ``sparse_categorical_crossentropy(from_logits=True)``, written
    as ``log Z - logit[target]`` so that the row maximum and ``log Z`` it computes
    anyway give the target's and the top probability without another pass over the
    (B, V) logits. The maximum is held constant for the gradient (``log Z``'s
    gradient is the softmax whatever shift is used).

    Returns:
        ``(per_example (B,), {"top", "log_z", "logit_target"})``, each (B,).
    """
    logits = ops.cast(logits, "float32")
    top = ops.stop_gradient(ops.max(logits, axis=-1))
    log_z = top + ops.log(ops.sum(ops.exp(logits - top[:, None]), axis=-1))
    logit_target = gather_rows(logits, ops.cast(targets, "int32"))
    return log_z - logit_target, {"top": top, "log_z": log_z, "logit_target": logit_target}

"""Attention shape per site: entropy, top-1 weight, mass on padded slots, and where it peaks.

Sites are the model's attention distributions in order (the MemN2N's hops, the
outputs of a Keras model's Softmax layers, a MultiHeadAttention's scores); site K
writes the ``/hopK`` columns. Sites of one shape are stacked and measured in one
set of reductions; when all share one shape, their winning-slot counts go to
attention.csv.
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.family import HISTOGRAM, Column, Family, Step
from diagnose.instruments.measures import argmax_histogram, block

tf = import_tensorflow_quietly()


def _stats(probs, pad):
    """(K, 3): normalised entropy, top-1 weight and padded mass per site of a (K, N, S) stack.

    ``pad`` None: no slot is padded (the same figures, without a mask as large as the weights).
    """
    p = tf.cast(probs, tf.float32)
    entropy = -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-30)), axis=-1)  # (K, N)
    # Normalised by ln(real slots); a row with one real slot counts as two to avoid 0/0.
    if pad is None:
        norm_entropy = entropy / tf.math.log(tf.maximum(tf.cast(tf.shape(p)[-1], tf.float32), 2.0))
        pad_mass = tf.zeros(tf.shape(entropy)[:1])
    else:
        real = tf.cast(tf.logical_not(pad), tf.float32)  # (K, N, S)
        norm_entropy = entropy / tf.math.log(tf.maximum(tf.reduce_sum(real, axis=-1), 2.0))
        pad_mass = tf.reduce_mean(tf.reduce_sum(p * (1.0 - real), axis=-1), axis=-1)
    return tf.stack([tf.reduce_mean(norm_entropy, axis=-1), tf.reduce_mean(tf.reduce_max(p, axis=-1), axis=-1),
                     pad_mass], axis=1)


def measure(step: Step) -> dict:
    if not step.attention:
        return {}
    groups: dict[tuple, list[int]] = {}
    flat = []
    for k, site in enumerate(step.attention):
        s = site.probs.shape[-1]
        probs = tf.reshape(site.probs, (-1, s))  # (N, S): every leading axis (batch, heads, queries) is a row
        pad = None if site.pad is None else tf.reshape(tf.broadcast_to(site.pad, tf.shape(site.probs)), (-1, s))
        flat.append((probs, pad))
        groups.setdefault((s, probs.shape[0]), []).append(k)
    stats = [None] * len(flat)
    for members in groups.values():
        pads = [flat[k][1] for k in members]
        if all(pad is None for pad in pads):
            pads = None
        else:
            pads = tf.stack([tf.zeros_like(flat[k][0], tf.bool) if pad is None else pad
                             for k, pad in zip(members, pads)])
        block_stats = _stats(tf.stack([flat[k][0] for k in members]), pads)
        for i, k in enumerate(members):
            stats[k] = block_stats[i]
    names = [f"{name}/hop{k + 1}" for k in range(len(flat)) for name in ("attn_entropy", "attn_top1", "attn_pad_mass")]
    row = block(names, tf.stack(stats))  # (K, 3) row-major: site by site
    # attention.csv numbers its rows by site: only when every site has the same slots.
    row[HISTOGRAM] = argmax_histogram(tf.stack([p for p, _ in flat])) if len(groups) == 1 else None
    return row


FAMILY = Family(
    name="attention",
    reads="the attention weights of each site (MemN2N hops, Softmax layers, MultiHeadAttention scores)",
    columns=(
        Column("attn_entropy/hopK", "attention entropy / ln(number of non-padded slots): 1 uniform, 0 one-hot"),
        Column("attn_top1/hopK", "largest attention weight"),
        Column("attn_pad_mass/hopK", "attention mass on padded (or masked) slots"),
    ),
    measure=measure,
)

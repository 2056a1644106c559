"""Attention shape per site: entropy, top-1 weight, mass on padded slots, the share masked, and where it peaks.

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

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

_NAMES = ("attn_entropy", "attn_top1", "attn_pad_mass", "attn_masked")


def _stats(probs, pad, allowed, masked):
    """(K, 4): normalised entropy, top-1 weight, padded mass and masked share per site of a (K, N, S) stack.

    ``pad``: True on padded slots, ``allowed``: True on the slots entropy is normalised
    by (those the attention could weigh), ``masked``: True on slots the attention's own
    mask forbids; each None for every slot (no slot padded, all allowed, none masked).

    Each mean over the N rows is one sum over rows and slots together, divided by N:
    a per-row figure summed apart (the entropy divided by its row's log-slots, then
    averaged) makes XLA reduce the rows in a tree of its own, several times the cost of
    the sum (on CPU, 0.2 ms a step of the fault suite's Transformer, its own step 1 ms).
    """
    p = ops.cast(probs, "float32")
    rows = ops.cast(ops.shape(p)[1], "float32")
    plogp = p * ops.log(ops.maximum(p, 1e-30))
    # Normalised by ln(allowed slots); a row with one allowed slot counts as two to avoid 0/0.
    if allowed is None:
        slots = ops.cast(ops.shape(p)[-1], "float32")
        entropy = -ops.sum(plogp, axis=(1, 2)) / (rows * ops.log(ops.maximum(slots, 2.0)))
    else:
        slots = ops.sum(ops.cast(allowed, "float32"), axis=-1, keepdims=True)  # (K, N, 1)
        entropy = -ops.sum(plogp / ops.log(ops.maximum(slots, 2.0)), axis=(1, 2)) / rows
    none = ops.zeros((p.shape[0],))  # (K,): K is the number of sites stacked, always known
    pad_mass = none if pad is None else ops.sum(p * ops.cast(pad, "float32"), axis=(1, 2)) / rows
    share = none if masked is None else ops.mean(ops.cast(masked, "float32"), axis=(1, 2))
    return ops.stack([entropy, ops.sum(ops.max(p, axis=-1), axis=-1) / rows, pad_mass, share], axis=1)


def _data_pad(step: Step, probs):
    """Padded slots read from the batch: where the one integer input of ``probs``' slot count holds id 0.

    None where no input, or more than one, has that many ids per example (which one the
    attention reads cannot be told), or ``probs`` has no batch axis to align with.
    """
    slots = probs.shape[-1]
    found = [x for _, x in step.inputs if ops.is_tensor(x) and "int" in keras.backend.standardize_dtype(x.dtype)
             and len(x.shape) == 2 and x.shape[-1] == slots]
    if len(found) != 1 or len(probs.shape) < 2:
        return None
    ids = found[0][:ops.shape(probs)[0]]
    return ops.reshape(ops.equal(ids, 0), [-1] + [1] * (len(probs.shape) - 2) + [slots])


def _flat(mask, probs, s):
    return None if mask is None else ops.reshape(ops.broadcast_to(mask, ops.shape(probs)), (-1, s))


def measure(step: Step) -> dict:
    if not step.attention:
        return {}
    groups: dict[tuple, list[int]] = {}
    flat = []
    for k, site in enumerate(step.attention):
        s = site.probs.shape[-1]
        pad = site.pad if site.pad is not None else _data_pad(step, site.probs)
        # Entropy over the slots the attention could weigh: those its mask allows, those the model does not
        # pad (the MemN2N's), else all (padding read from the batch is not kept from an unmasked softmax).
        forbidden = site.masked if site.masked is not None else site.pad
        allowed = None if forbidden is None else ops.logical_not(forbidden)
        # (N, S): every leading axis (batch, heads, queries) is a row
        flat.append((ops.reshape(site.probs, (-1, s)), _flat(pad, site.probs, s), _flat(allowed, site.probs, s),
                     _flat(site.masked, site.probs, s)))
        groups.setdefault((s, flat[-1][0].shape[0]), []).append(k)
    stats = [None] * len(flat)
    for members in groups.values():
        masks = []
        for i, fill in ((1, False), (2, True), (3, False)):  # none given: no slot padded, all allowed, none masked
            given = [flat[k][i] for k in members]
            masks.append(None if all(m is None for m in given) else ops.stack(
                [ops.full(ops.shape(flat[k][0]), fill, dtype="bool") if m is None else m
                 for k, m in zip(members, given)]))
        block_stats = _stats(ops.stack([flat[k][0] for k in members]), *masks)
        for i, k in enumerate(members):
            stats[k] = block_stats[i]
    names = [f"{name}/hop{k + 1}" for k in range(len(flat)) for name in _NAMES]
    row = block(names, ops.stack(stats))  # (K, 4) row-major: site by site
    # attention.csv numbers its rows by site: only when every site has the same slots.
    row[HISTOGRAM] = argmax_histogram(ops.stack([p for p, *_ in flat])) if len(groups) == 1 else None
    return row


FAMILY = Family(
    name="attention",
    reads="the attention weights of each site (MemN2N hops, Softmax layers, MultiHeadAttention scores)",
    columns=(
        Column("attn_entropy/hopK", "attention entropy / ln(number of slots it may weigh, unmasked or "
                                    "unpadded): 1 uniform, 0 one-hot"),
        Column("attn_top1/hopK", "largest attention weight"),
        Column("attn_pad_mass/hopK", "attention mass on padded slots (the model's own padding, else id 0 in "
                                     "the integer input of as many ids as the attention has slots)"),
        Column("attn_masked/hopK", "share of slots the attention's own mask forbids (a Keras attention_mask or "
                                   "Softmax mask; 0 where none is given)"),
    ),
    measure=measure,
)

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
_EAGER = keras.backend.backend() == "torch"


def _stats(probs, slots):
    """(K, 2): normalised entropy and top-1 weight per site of a (K, N, S) stack.

    ``slots``: (K, N, 1), the slots each row's entropy is normalised by (those the
    attention could weigh), or None for all S.

    Each mean over the N rows is one sum over rows and slots together, divided by N:
    a per-row figure summed apart (the entropy divided by its row's log-slots, then
    averaged) makes XLA reduce the rows in a tree of its own, several times the cost of
    the sum (on CPU, 0.2 ms a step of the fault suite's Transformer, its own step 1 ms).
    """
    p = ops.cast(probs, "float32")
    rows = ops.cast(ops.shape(p)[1], "float32")
    plogp = p * ops.log(ops.maximum(p, 1e-30))
    # Normalised by ln(allowed slots); a row with one allowed slot counts as two to avoid 0/0.
    if slots is None:
        slots = ops.cast(ops.shape(p)[-1], "float32")
        entropy = -ops.sum(plogp, axis=(1, 2)) / (rows * ops.log(ops.maximum(slots, 2.0)))
    else:
        entropy = -ops.sum(plogp / ops.log(ops.maximum(slots, 2.0)), axis=(1, 2)) / rows
    return ops.stack([entropy, ops.sum(ops.max(p, axis=-1), axis=-1) / rows], axis=1)


def _aligned(mask, probs):
    """``mask`` with as many axes as ``probs`` (leading ones added) and its slots' axis as long as theirs; its
    other axes in its own sizes, not broadcast."""
    while len(mask.shape) < len(probs.shape):
        mask = ops.expand_dims(mask, 0)
    if mask.shape[-1] == 1 and probs.shape[-1] != 1:
        mask = ops.repeat(mask, probs.shape[-1], axis=-1)
    return mask


def _pad_mass(probs, pad):
    """Mean over the rows of ``probs`` (every axis but the slots) of the weight on padded slots.

    ``pad`` is read in its own shape, broadcastable to ``probs``: the weights are first
    summed over the axes ``pad`` does not vary on (a MultiHeadAttention's heads and
    queries for padding read from the batch), so no mask of the weights' size is made.
    """
    p = ops.cast(probs, "float32")
    pad = _aligned(pad, p)
    shared = tuple(i for i, (d, e) in enumerate(zip(pad.shape, p.shape)) if d == 1 and e != 1)
    if shared:
        p = ops.sum(p, axis=shared, keepdims=True)
    rows = ops.cast(ops.size(probs) // ops.shape(probs)[-1], "float32")
    return ops.sum(p * ops.cast(pad, "float32")) / rows


def _allowed_slots(allowed, probs):
    """(N, 1): the slots each row of ``probs`` may weigh, counted on ``allowed`` in its own shape."""
    counts = ops.sum(ops.cast(_aligned(allowed, probs), "float32"), axis=-1, keepdims=True)
    return ops.reshape(ops.broadcast_to(counts, tuple(ops.shape(probs)[:-1]) + (1,)), (-1, 1))


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


def _stacked(tensors):
    """``ops.stack`` of a list; one tensor given a leading axis without a copy (PyTorch copies in a stack)."""
    return ops.expand_dims(tensors[0], 0) if len(tensors) == 1 else ops.stack(tensors)


def measure(step: Step) -> dict:
    if not step.attention:
        return {}
    groups: dict[tuple, list[int]] = {}
    flat, shares = [], []
    none = ops.zeros((), "float32")
    for k, site in enumerate(step.attention):
        s = site.probs.shape[-1]
        pad = site.pad if site.pad is not None else _data_pad(step, site.probs)
        # Entropy over the slots the attention could weigh: those its mask allows, those the model does not
        # pad (the MemN2N's), else all (padding read from the batch is not kept from an unmasked softmax).
        forbidden = site.masked if site.masked is not None else site.pad
        slots = None if forbidden is None else _allowed_slots(ops.logical_not(forbidden), site.probs)
        # (N, S): every leading axis (batch, heads, queries) is a row. The padded mass and the masked share
        # read each mask in its own shape (the mean of a broadcast mask is the mask's own mean).
        flat.append((ops.reshape(site.probs, (-1, s)), slots))
        shares.append((none if pad is None else _pad_mass(site.probs, pad),
                       none if site.masked is None else ops.mean(ops.cast(site.masked, "float32"))))
        # Under XLA, sites of one shape are reduced as one stack (fewer kernels); PyTorch, eager, would copy
        # them into the stack first: each site is reduced alone there.
        groups.setdefault((s, flat[-1][0].shape[0]) + ((k,) if _EAGER else ()), []).append(k)
    stats, histograms = [None] * len(flat), []
    for members in groups.values():
        given = [flat[k][1] for k in members]
        slots = None if all(m is None for m in given) else _stacked(  # none given: every slot
            [ops.full((ops.shape(flat[k][0])[0], 1), flat[k][0].shape[-1], dtype="float32") if m is None else m
             for k, m in zip(members, given)])
        stacked = _stacked([flat[k][0] for k in members])
        block_stats = _stats(stacked, slots)
        for i, k in enumerate(members):
            stats[k] = ops.concatenate([block_stats[i][:2], ops.stack(shares[k])])
        if len({key[:2] for key in groups}) == 1:
            histograms.append(argmax_histogram(stacked))
    names = [f"{name}/hop{k + 1}" for k in range(len(flat)) for name in _NAMES]
    row = block(names, ops.stack(stats))  # (K, 4) row-major: site by site
    # attention.csv numbers its rows by site: only when every site has the same slots (and rows), in site order.
    row[HISTOGRAM] = ops.concatenate(histograms) if len(histograms) > 1 else histograms[0] if histograms else None
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

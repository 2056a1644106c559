"""What an instrument family is, and what a train step hands the instruments.

A :class:`Family` declares, once, what it reads, the metrics.csv columns it writes
with their documentation, and the in-graph function that computes them from a
:class:`Step`. Both train steps (the built-in MemN2N's, :mod:`diagnose.memn2n.steps`,
and the wrapper around any Keras model, :mod:`diagnose.instruments.wrapper`) fill a
``Step`` with the tensors they have and call :func:`diagnose.instruments.registry.measure`,
so a column means the same formula on both paths.

Column patterns use placeholders: ``NAME`` a variable's short name, ``K`` an
attention site's number (hop), ``SITE`` an additive site, ``BRANCH`` one of its
terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Column", "Family", "Step", "AttentionSite", "BranchSite", "HISTOGRAM"]

# The key under which the attention family returns its winning-slot counts (not a column).
HISTOGRAM = "_histogram"

_PLACEHOLDERS = {"NAME": r".+", "K": r"\d+", "SITE": r"[^/]+", "BRANCH": r"[^/]+"}


@dataclass(frozen=True)
class Column:
    """One metrics.csv column (or pattern of columns) and what it means."""

    pattern: str  # e.g. "grad_norm/NAME"
    doc: str

    def matches(self, column: str) -> bool:
        regex = "".join(_PLACEHOLDERS.get(part, re.escape(part))
                        for part in re.split(r"(NAME|K|SITE|BRANCH)", self.pattern))
        return re.fullmatch(regex, column) is not None


@dataclass(frozen=True)
class Family:
    """An instrument family: what it reads, the columns it writes, how it computes them.

    ``measure(step) -> row`` runs inside the compiled step: it returns scalar
    tensors by column name, or :func:`~diagnose.instruments.measures.block` s, and
    nothing it does may pull a value to the host. A family whose figures are taken
    outside the step (the probes) has ``measure=None``.

    The MemN2N's step measures every family on every step; the wrapper around a
    user's model measures the ``every_step`` families on every step and the others on
    the steps its schedule samples (:mod:`diagnose.instruments.schedule`).
    """

    name: str
    reads: str
    columns: tuple[Column, ...]
    measure: Callable[["Step"], dict] | None = None
    every_step: bool = False  # measured on every step even where the train step samples the others

    def documents(self, column: str) -> bool:
        return any(c.matches(column) for c in self.columns)


@dataclass(frozen=True)
class AttentionSite:
    """One attention distribution of a step.

    Attributes:
        probs: (..., S) weights summing to 1 over the last axis (any leading axes).
        pad: bool, broadcastable to ``probs``: True on slots that hold padding, or None
            where the model does not say (the attention family then reads padding from
            the batch: an integer input of S ids, 0 being padding).
        masked: bool, broadcastable to ``probs``: True on slots the attention's own mask
            forbids, or None. A mask is what the model was told, not what the data holds:
            one that marks padding as "attend here" is exactly the fault to see.
    """

    probs: Any
    pad: Any = None
    masked: Any = None


@dataclass(frozen=True)
class BranchSite:
    """Terms added together at one place of the model, each measured by its RMS.

    Attributes:
        site: a name for the place (a layer's, or ``A``, ``hop1`` for the MemN2N).
        tensors: branch name -> tensor whose RMS is taken.
        rms: branch name -> RMS already computed by the caller (a fast path).

    Branch names ``content`` and ``position`` mean the same on every model: the
    input-dependent term, and a table added to it whatever the input (a position
    encoding, a learned bias map). The branch-balance rule reads those two.
    """

    site: str
    tensors: dict = field(default_factory=dict)
    rms: dict = field(default_factory=dict)


@dataclass
class Step:
    """The tensors one train step hands the instruments (all in-graph).

    Attributes:
        names: short variable names, one per trainable variable.
        loss: the step's training loss (a mean over its examples).
        norms: ||g|| per variable before clipping (embedding rows looked up twice summed first).
        clip_mode, clip_norm: how the step clips ("global", "per_tensor" or "none"; or an
            int32 tensor indexing :data:`diagnose.instruments.gradients.CLIP_MODES`, with ``clip_norm``
            a tensor, in a step that reads them when it runs).
        weight_norms: ||w|| per variable before the update.
        update_norms: ||w after - w before|| per variable for this step.
        outputs: the model's output rows (N, C) for a classifier (any leading axes
            folded into N), or None when there is no class axis to read.
        labels: (N,) int class of each row, aligned with ``outputs``.
        row_weights: (N,) weight of each row (a mask), or None.
        output_kind: "logits", "probabilities" or "unnormalized" (outputs that a
            cross-entropy divides by their sum: ReLU or linear under from_logits=False).
        parts: pieces of the softmax cross-entropy already computed (MemN2N fast path).
        attention: the step's attention sites, in model order (site k -> hop k).
        branches: the step's additive sites.
        inputs: ``(name, tensor)`` for each of the model's inputs in the batch.
    """

    names: list
    norms: list
    loss: Any = None
    clip_mode: Any = "none"
    clip_norm: Any = 0.0
    weight_norms: list | None = None
    update_norms: list | None = None
    outputs: Any = None
    labels: Any = None
    row_weights: Any = None
    output_kind: str | None = None
    parts: dict | None = None
    attention: list = field(default_factory=list)
    branches: list = field(default_factory=list)
    inputs: list = field(default_factory=list)

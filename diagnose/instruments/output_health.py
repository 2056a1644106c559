"""Output health: dead output units, targets at the cross-entropy clip floor, confidence.

Read from the output rows of a classifier and their labels. Logits give
probabilities by a softmax; unnormalised outputs (ReLU or linear) are divided by
their sum, as Keras' categorical cross-entropy does; probabilities are read as
they are. A binary classifier's single probability p is read as the two classes
(1 - p, p).
"""

from __future__ import annotations

from keras import ops

from diagnose.instruments.family import Column, Family, Step
from diagnose.instruments.measures import CLIP_FLOOR, block, gather_rows, softmax_cross_entropy


def _weighted_mean(x, weights):
    x = ops.cast(x, "float32")
    if weights is None:
        return ops.mean(x, axis=-1)
    return ops.sum(x * weights, axis=-1) / ops.maximum(ops.sum(weights), 1e-12)


def measure(step: Step) -> dict:
    if step.outputs is None or step.labels is None or step.output_kind is None:
        return {}
    outputs = ops.cast(step.outputs, "float32")  # (N, C)
    labels = ops.cast(step.labels, "int32")  # (N,)
    weights = None if step.row_weights is None else ops.cast(step.row_weights, "float32")
    zero = ops.zeros((), "float32")
    if step.output_kind == "logits":
        parts = step.parts if step.parts is not None else softmax_cross_entropy(labels, outputs)[1]
        p_target = ops.exp(parts["logit_target"] - parts["log_z"])
        max_prob = ops.exp(parts["top"] - parts["log_z"])
        zero_frac = dead_rows = zero  # logits have no dead units
    else:
        at_target = gather_rows(outputs, labels)  # (N,)
        top = ops.max(outputs, axis=-1)
        if step.output_kind == "probabilities":
            p_target, max_prob = at_target, top
            zero_frac = dead_rows = zero
        else:  # unnormalised: a cross-entropy divides them by their sum
            total = ops.sum(outputs, axis=-1)
            alive = total > 0
            safe = ops.where(alive, total, 1.0)
            p_target = ops.where(alive, at_target / safe, 0.0)
            max_prob = ops.where(alive, top / safe, 0.0)
            dead_rows = _weighted_mean(ops.logical_not(alive), weights)
            zero_frac = _weighted_mean(ops.mean(ops.cast(ops.equal(outputs, 0.0), "float32"), axis=-1), weights)
    means = _weighted_mean(ops.stack([ops.cast(p_target <= CLIP_FLOOR, "float32"), max_prob, p_target]), weights)
    return {"out_zero_frac": zero_frac, "out_dead_rows": dead_rows,
            **block(("target_at_floor", "max_prob", "target_prob"), means)}


FAMILY = Family(
    name="output health",
    reads="the output rows of a classifier and their labels",
    columns=(
        Column("out_zero_frac", "share of output units exactly 0 (dead ReLU outputs; 0 for logits and probabilities)"),
        Column("out_dead_rows", "share of examples whose outputs are all 0 (no distribution to read)"),
        Column("target_at_floor", "share of targets with probability <= 1e-7 (Keras' cross-entropy clip floor)"),
        Column("max_prob", "mean largest class probability"),
        Column("target_prob", "mean probability of the target class"),
        # A model with several outputs: each classifier output's, by its name.
        *(Column(f"{name}/NAME", f"one output's {name}, for a model with several outputs")
          for name in ("out_zero_frac", "out_dead_rows", "target_at_floor", "max_prob", "target_prob")),
    ),
    measure=measure,
)

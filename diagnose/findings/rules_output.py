"""Rules about the output layer and the loss it feeds: what the loss expects vs what it gets.

A softmax output under ``from_logits=True`` is not among them: Keras 3 computes the
loss from the logits under a softmax activation whatever ``from_logits`` says (with
a warning), so it trains as the logits would.
"""

from __future__ import annotations

import re

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, RunView, contract, contract_targets, late, number, series, steps_of
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.graph import LINEAR, KerasGraph
from diagnose.findings.outcome import constant_output
from diagnose.findings.registry import Hit, rule

__all__ = ["relu_output_crossentropy", "single_unit_softmax"]


def _late_mean(view: RunView, column: str) -> tuple[float, tuple[int, int]] | None:
    window = late(series(view, column))
    return None if window is None else (float(window.mean()), steps_of(window))


def _normalised_loss_name(loss) -> str:
    """``CategoricalCrossentropy`` / ``categorical_crossentropy`` -> ``categoricalcrossentropy``."""
    return re.sub(r"[^a-z]", "", str(loss).lower())


def _produces_probabilities(view: RunView, binary: bool) -> bool | None:
    """Whether the outputs at the initial weights were probabilities (rows summing to 1 unless ``binary``)."""
    start = (contract(view).get("output") or {}).get("at_start")
    if not isinstance(start, dict) or "outside_unit_share" not in start:
        return None
    if (number(start.get("outside_unit_share")) or 0.0) > 0:
        return False
    if binary or start.get("row_sum_min") is None:
        return True
    return abs(float(start["row_sum_min"]) - 1) <= 1e-3 and abs(float(start["row_sum_max"]) - 1) <= 1e-3


def _output_units(view: RunView, graph: KerasGraph, out: str) -> int | None:
    shape = view.model.get("output_shape") or ((graph.by_name.get(out) or {}).get("output_shape"))
    if isinstance(shape, list) and shape and isinstance(shape[-1], int):
        return shape[-1]
    units = ((graph.by_name.get(out) or {}).get("config") or {}).get("units")
    return units if isinstance(units, int) else None


@rule("relu-output-crossentropy", scope="output", kind="root-cause", severity="high", figure="output",
      what="a ReLU or linear output fed to a cross-entropy that expects probabilities",
      # Dividing by the sum of outputs near zero gives gradients of 1 / sum: they explode as units die.
      explains=("diverged", "dead-network", "ignores-input", "plateau", "vanishing-gradients", "no-gradient",
                "tiny-steps", "exploding-gradients", "huge-steps"))
def relu_output_crossentropy(view: RunView) -> Hit | None:
    model = view.model
    evidence: list[Evidence] = []
    if view.is_keras:
        probabilistic = {_normalised_loss_name(name) for name in T.PROBABILISTIC_LOSSES}
        binary = _normalised_loss_name(model.get("loss")) in {_normalised_loss_name(n) for n in T.BINARY_LOSSES}
        if (_normalised_loss_name(model.get("loss")) not in probabilistic and not binary) \
                or model.get("loss_from_logits"):
            return None
        if not binary and contract_targets(view).get("structure") == "multi-hot":
            return None  # a sigmoid under a categorical loss on multi-label targets: the loss is wrong, not the output
        if constant_output(view) is not None:
            return None  # one output for every example: no activation or loss on it can make it learn
        graph = KerasGraph(model)
        outputs = graph.outputs()
        if not outputs:
            return None
        out = outputs[0]
        produced = _produces_probabilities(view, binary)
        if binary:  # a sigmoid gives the probabilities (a one-unit softmax is single-unit-softmax's)
            if graph.activation(out) in ("sigmoid", "hard_sigmoid", "softmax"):
                return None
            if graph.output_is_distribution(out) is None and produced is not False:
                return None
        elif graph.output_is_distribution(out) is True or (graph.output_is_distribution(out) is None
                                                           and produced is not False):
            return None  # a custom output layer is judged by what it produced at step 0
        activation = graph.activation(out) or "none"
        wanted = "sigmoid" if binary else "softmax"
        evidence.append(Evidence(graph.field(out, "config.activation"), activation, wanted))
        if produced is False:
            start = (contract(view).get("output") or {}).get("at_start") or {}
            evidence.append(Evidence("summary.contract.output.at_start (min, max)",
                                     f"{start.get('min', float('nan')):.3g}, {start.get('max', float('nan')):.3g}",
                                     "[0, 1]" + ("" if binary else ", rows summing to 1"), (0, 0)))
        evidence.append(Evidence("model.loss", str(model.get("loss")), f"from_logits=True or a {wanted} output"))
        what = f"the output layer ({graph.describe(out)}, activation {activation})"
        fix = ("Make the last layer linear (activation=None) and train with "
               "keras.losses.BinaryCrossentropy(from_logits=True); or give it activation='sigmoid' and keep the loss."
               if binary else
               "Make the last layer linear (activation=None) and train with "
               "keras.losses.CategoricalCrossentropy(from_logits=True) (sparse_... for integer targets); "
               "or give it activation='softmax' and keep the loss.")
    elif model.get("output") == "relu":
        evidence.append(Evidence("model.output", "relu", "softmax"))
        what = "the ReLU output layer"
        fix = ("Use a linear output layer with softmax cross-entropy (from_logits=True), as the paper does: "
               "--set output=softmax.")
    else:
        return None
    floor_share = None
    for column in ("out_zero_frac", "out_dead_rows", "target_at_floor"):
        found = _late_mean(view, column)
        if found is not None:
            evidence.append(Evidence(column, found[0], None, found[1]))
            if column == "target_at_floor":
                floor_share = found[0]
    cost = ""
    if floor_share:
        cost = (f" Late in training {floor_share:.1%} of targets sat at the 1e-7 clip floor, each costing "
                f"{T.FLOOR_NATS:.1f} nats: about {floor_share * T.FLOOR_NATS:.2f} nats of the mean loss.")
    return Hit(
        title="ReLU/linear output trained with a cross-entropy that expects probabilities",
        evidence=evidence,
        explanation=(f"Categorical cross-entropy divides the outputs of {what} by their sum and clips the "
                     "result to [1e-7, 1]: a target output at 0 gets probability 1e-7 and no gradient, so "
                     "units and examples that die never recover." + cost),
        fix=fix)


@fix("relu-output-crossentropy", what="a softmax (sigmoid, under a binary loss) output for a ReLU one; "
                                      "from_logits=True for a linear one")
def _relu_output(view):
    graph = KerasGraph(view.model)
    outputs = graph.outputs()
    if not outputs:
        return None
    if graph.activation(outputs[0]) is None and graph.cls(outputs[0]) not in LINEAR | {"Activation"}:
        return None  # an output from a layer of the user's own (a distance): no activation to set
    activation = graph.activation(outputs[0]) or "linear"
    if activation == "linear" and graph.cls(outputs[0]) in LINEAR:
        return Remedy({"op": "from_logits"}, "from_logits", "the loss reads the linear output as logits "
                                                           "(from_logits=True)")
    binary = view.model.get("loss_kind") == "binary" or "binary" in str(view.model.get("loss") or "").lower()
    wanted = "sigmoid" if binary else "softmax"
    return Remedy({"op": "output_activation", "activation": wanted}, wanted,
                  f"a {wanted} output instead of {activation}")


@rule("single-unit-softmax", scope="output", kind="root-cause", severity="high", figure="output",
      what="a softmax over a single output unit, which is always 1",
      explains=("ignores-input", "plateau", "no-gradient", "tiny-steps", "vanishing-gradients"))
def single_unit_softmax(view: RunView) -> Hit | None:
    if not view.is_keras:
        return None
    graph = KerasGraph(view.model)
    outputs = graph.outputs()
    if not outputs or not graph.is_softmax(outputs[0]) or _output_units(view, graph, outputs[0]) != 1:
        return None
    out = outputs[0]
    evidence = [Evidence(graph.field(out, "config.activation"), "softmax", "sigmoid"),
                Evidence("model.output_shape", str(view.model.get("output_shape")), "one unit")]
    for column in ("max_prob", "target_at_floor", "accuracy"):
        found = _late_mean(view, column)
        if found is not None:
            evidence.append(Evidence(column, found[0], None, found[1]))
    return Hit(
        title=f"Softmax over a single output unit ({graph.describe(out)}): the prediction is always 1",
        evidence=evidence,
        explanation=("A softmax normalises over the units of its layer; over one unit it returns exactly 1 for "
                     "every example, so the prediction never depends on the input and no gradient reaches any "
                     "weight through it. Accuracy sits at the share of the positive class."),
        fix=("For two classes with one output unit use activation='sigmoid' with binary cross-entropy (or a linear "
             "unit with BinaryCrossentropy(from_logits=True)); for a softmax, give the layer one unit per class "
             "and a categorical cross-entropy."))


# Keras' binary cross-entropy reads the logits under a softmax or sigmoid output, so a
# softmax over one unit trains its logit as a sigmoid would and the loss shows nothing;
# every prediction is 1.0, which the validation error does show.
@fix("single-unit-softmax", what="a sigmoid on the one output unit", judged_by="error")
def _single_unit_softmax(view):
    return Remedy({"op": "output_activation", "activation": "sigmoid"}, "sigmoid",
                  "a sigmoid output instead of a softmax over one unit")

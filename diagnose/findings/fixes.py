"""Mechanical fixes: for each finding id, the change to a Keras model that would undo its cause.

A proof (:mod:`diagnose.userstudy.prove`) tests a finding by training the model with
its fix over seeds. Each fix is declared once here, keyed by the finding id its rule
declares, as a pure function of the run's :class:`RunView` that returns the change
(a JSON dict :mod:`diagnose.userstudy.transforms` applies to the rebuilt model) with
a label, or None where it cannot apply to this run (a linear output where a softmax
would be set...). A new rule's fix is one more declaration::

    @fix("huge-steps", what="the learning rate lowered to what the update ratios suggest")
    def _huge_steps(view):
        return Remedy({"op": "learning_rate", "factor": 0.01}, "lr x0.01", "learning rate x0.01")

Symptoms get the fix of their likeliest mechanical cause (a dead network: a learning
rate too large), so a proof can refute a symptom's usual reading too. Findings with
no mechanical fix (the input ignored, a plateau, overfitting) stay untested.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

from diagnose.findings import thresholds as T
from diagnose.findings.base import RunView, early, late, number, series, variable_columns, weight_matrices
from diagnose.findings.outputs import output_views
from diagnose.findings.graph import LINEAR, KerasGraph

__all__ = ["Remedy", "MechanicalFix", "FIXES", "fix", "remedy_for", "LR_FACTOR", "LR_FACTOR_MAX"]

# A step size found off is first moved by one order of magnitude, the usual first try.
LR_FACTOR = 10.0
# ... or by what the update ratios suggest (to ~1e-3 per step), rounded to a power of ten
# and at most three orders: beyond that the counterfactual trains a different model (a
# rate that far off learns nothing in the same budget, whichever way it was wrong).
LR_FACTOR_MAX = 1000.0
# Saturating activations that vanishing gradients point at, and what replaces them.
_SATURATING = ("sigmoid", "tanh", "hard_sigmoid")


@dataclass(frozen=True)
class Remedy:
    """A fix resolved for one run: the change, a short label (a variant name) and the words."""

    change: dict
    label: str
    text: str


@dataclass(frozen=True)
class MechanicalFix:
    """A declared fix: the finding it answers, what it changes, and how it resolves against a run."""

    finding: str
    what: str
    resolve: Callable[[RunView], Remedy | None]
    # What the proof judges the fix by: "loss" (the validation loss), "error" (1 -
    # validation accuracy) for a fault the loss cannot show, or "task" (the task's error on
    # the probe batch, whatever the loss) for a fix that changes the loss itself.
    judged_by: str = "loss"


FIXES: dict[str, MechanicalFix] = {}


def fix(finding: str, *, what: str, judged_by: str = "loss"):
    """Declares ``resolve(view) -> Remedy | None`` as the mechanical fix of ``finding``.

    ``judged_by="error"`` has the proof judge it by the validation error instead of the
    loss, for a fault that leaves the loss as it would be without it.
    """
    if judged_by not in ("loss", "error", "task"):
        raise ValueError(f"judged_by is 'loss', 'error' or 'task', not {judged_by!r}")

    def register(resolve):
        if finding in FIXES:
            raise ValueError(f"a fix for {finding} is declared twice")
        FIXES[finding] = MechanicalFix(finding, what, resolve, judged_by)
        return resolve

    return register


def remedy_for(finding: str, view: RunView) -> Remedy | None:
    """The fix of ``finding`` resolved for this run, or None (none declared, or none applies).

    On a model with several outputs, a finding about one output (a rule of scope
    "output") is fixed on the first output it is found on: the fix resolved on that
    output's view, each change naming the output.
    """
    declared = FIXES.get(finding)
    if declared is None or not view.is_keras:
        return None
    from diagnose.findings.registry import RULES

    rule = next((r for r in RULES if r.spec.id == finding), None)
    outputs = output_views(view)
    if not outputs or rule is None or rule.spec.scope != "output":
        return declared.resolve(view)
    for name, each in outputs:
        if rule(each) is None:
            continue
        remedy = declared.resolve(each)
        if remedy is None:
            return None
        if remedy.change.get("op") == "fit":
            return None  # fit's settings (class weights) are the whole model's, not one output's
        return Remedy(_for_output(remedy.change, name), remedy.label, f"{remedy.text} (output '{name}')")
    return None


def _for_output(change: dict, name: str) -> dict:
    """A change (or a change of several parts) applied to the output named ``name``."""
    if change.get("op") == "all":
        return {**change, "changes": [_for_output(c, name) for c in change.get("changes") or []]}
    if change.get("op") in OUTPUT_OPS:
        return {**change, "output": name}
    return change


# The changes that act on one output (its layer, its loss, its targets), given an ``output`` on a model with several.
OUTPUT_OPS = ("loss", "from_logits", "loss_reduction", "output_activation", "standardize_targets")


# --- step size ------------------------------------------------------------------------------


def _rate(view: RunView) -> float | None:
    optimizer = (view.config.get("train") or {}).get("optimizer")
    return number(optimizer.get("learning_rate")) if isinstance(optimizer, dict) else None


def _power_of_ten(ratio: float | None) -> float:
    """``ratio`` rounded to a power of ten within [LR_FACTOR, LR_FACTOR_MAX]; LR_FACTOR when unknown."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return LR_FACTOR
    return min(LR_FACTOR_MAX, max(LR_FACTOR, 10.0 ** round(math.log10(ratio))))


def _scaled(view: RunView, factor: float) -> Remedy:
    rate = _rate(view)
    times = f"x{factor:g}"
    text = f"learning rate {times}" + (f" ({rate:g} -> {rate * factor:g})" if rate is not None else "")
    return Remedy({"op": "learning_rate", "factor": factor}, f"lr {times}", text)


def _ratios(view: RunView) -> list:
    return [s for c in (weight_matrices(view) or variable_columns(view, "update_ratio"))
            if (s := series(view, c)) is not None]


@fix("tiny-steps", what="the learning rate raised to what the update ratios suggest")
def _tiny_steps(view):
    late_means = [float(late(s).mean()) for s in _ratios(view)]
    median = statistics.median(late_means) if late_means else None
    return _scaled(view, _power_of_ten(T.HEALTHY_UPDATE_RATIO / median if median else None))


@fix("huge-steps", what="the learning rate lowered to what the update ratios suggest")
def _huge_steps(view):
    import pandas as pd

    found = _ratios(view)
    if not found:
        return _scaled(view, 1.0 / LR_FACTOR)
    per_row = pd.concat(found, axis=1).median(axis=1).dropna()
    # Where the steps stayed huge, the late ratios say by how much; where they killed the
    # network (late ratios 0), the blow-up's peak does.
    ratio = float(late(per_row).mean()) if len(per_row) else 0.0
    if ratio < LR_FACTOR * T.HEALTHY_UPDATE_RATIO:
        ratio = float(per_row.max()) if len(per_row) else 0.0
    return _scaled(view, 1.0 / _power_of_ten(ratio / T.HEALTHY_UPDATE_RATIO if ratio else None))


# What a rate too large does: kill ReLUs early, make the loss swing, blow the run up. The
# symptom's fix is huge-steps' own, so the two share their runs and cannot disagree.
fix("dead-network", what="the learning rate lowered as for huge-steps (huge early steps kill ReLUs)")(_huge_steps)
fix("oscillating-loss", what="the learning rate lowered as for huge-steps (overshooting makes the loss swing)")(
    _huge_steps)


@fix("diverged", what="the learning rate lowered as for huge-steps, unless it diverged at step 1 (before any step)")
def _diverged(view):
    at = view.summary.get("diverged_at")
    return None if isinstance(at, dict) and number(at.get("step")) == 1 else _huge_steps(view)


@fix("exploding-gradients", what="gradients clipped by global norm at their early median")
def _exploding(view):
    norms = early(series(view, "grad_norm/global"), 0.25)
    norm = float(norms.median()) if norms is not None and float(norms.median()) > 0 else 1.0
    return Remedy({"op": "global_clipnorm", "norm": float(f"{norm:.3g}")}, f"clip {norm:.3g}",
                  f"gradients clipped by global norm at {norm:.3g} (their early median)")


# --- the output and the loss -------------------------------------------------------------------


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


# Keras' binary cross-entropy reads the logits under a softmax or sigmoid output, so a
# softmax over one unit trains its logit as a sigmoid would and the loss shows nothing;
# every prediction is 1.0, which the validation error does show.
@fix("single-unit-softmax", what="a sigmoid on the one output unit", judged_by="error")
def _single_unit_softmax(view):
    return Remedy({"op": "output_activation", "activation": "sigmoid"}, "sigmoid",
                  "a sigmoid output instead of a softmax over one unit")


# --- initialisation, inputs, padding ----------------------------------------------------------------


@fix("constant-init", what="hidden kernels drawn from Glorot uniform (tables from uniform(-0.05, 0.05)) "
                           "instead of a constant")
def _constant_init(view):
    from diagnose.findings.rules_architecture import constant_weights

    layers = list(dict.fromkeys(name for name, _, _ in constant_weights(view)))
    if not layers:
        return None
    return Remedy({"op": "reinit_kernels", "layers": layers}, "glorot",
                  f"the kernels of {', '.join(layers)} drawn from Glorot uniform")


@fix("temporal-encoding-dominates", what="the position table started at the scale of the content it is added to")
def _position_table(view):
    from diagnose.findings.rules_architecture import at_start, dominating_positions

    sites = [site for site, *_ in dominating_positions(view)]
    scales = []
    for site in sites:  # the content's scale as the model was built: its first step, else its first row
        content = series(view, f"rms/{site}/content")
        first = at_start(view, content) if content is not None else None
        scales.append(float((first if first is not None else content).iloc[0]))
    if not sites:
        return None
    stddev = float(f"{min(scales):.3g}")
    return Remedy({"op": "reinit_table", "sites": sites, "stddev": stddev}, f"N(0,{stddev:g})",
                  f"the position table of {', '.join(sites)} drawn from N(0, {stddev:g}), the content's scale")


@fix("unscaled-inputs", what="the inputs standardised per feature with the training data's mean and spread")
def _unscaled_inputs(view):
    names = []
    for column in view.metrics.columns:
        if str(column).startswith("input_rms/"):
            window = late(series(view, str(column)))
            if window is not None and float(window.mean()) > T.INPUT_RMS:
                names.append(str(column)[len("input_rms/"):])
    if not names:
        return None
    order = view.model.get("inputs") if isinstance(view.model.get("inputs"), list) else []
    change = {"op": "standardize_inputs", "inputs": names}
    if all(name in order for name in names):  # by position too: a model rebuilt elsewhere may name them anew
        change["positions"] = [order.index(name) for name in names]
    return Remedy(change, "standardised", f"input {', '.join(names)} standardised (training mean and spread per "
                                           "feature)")


@fix("unmasked-padding", what="the embeddings mask id 0 (mask_zero=True)")
def _unmasked_padding(view):
    graph = KerasGraph(view.model)
    layers = [n for n in graph.by_name if graph.cls(n) == "Embedding"]
    if not layers:
        return None
    return Remedy({"op": "mask_zero", "layers": layers}, "mask_zero", f"{', '.join(layers)} with mask_zero=True")


@fix("vanishing-gradients", what="ReLU for the saturating activations of hidden layers")
def _vanishing(view):
    graph = KerasGraph(view.model)
    outputs = set(graph.outputs())
    layers = [n for n in graph.by_name if n not in outputs and graph.activation(n) in _SATURATING
              and graph.cls(n) in LINEAR]
    if not layers:
        return None
    return Remedy({"op": "hidden_activation", "layers": layers, "activation": "relu"}, "relu",
                  f"ReLU in {', '.join(layers)} instead of {graph.activation(layers[0])}")


# --- the model-task contract ------------------------------------------------------------------------


def _contract(view: RunView) -> dict:
    facts = view.summary.get("contract")
    return facts if isinstance(facts, dict) else {}


@fix("loss-target-mismatch", what="the loss of the targets' structure: binary cross-entropy for multi-hot targets "
                                  "(with a sigmoid output), a cross-entropy for a classifier trained by a "
                                  "regression loss", judged_by="task")
def _loss_target_mismatch(view):
    facts = _contract(view)
    targets, loss, output = facts.get("targets") or {}, facts.get("loss") or {}, facts.get("output") or {}
    structure, activation = targets.get("structure"), output.get("activation")
    if loss.get("kind") == "categorical" and structure == "multi-hot":
        changes = [{"op": "loss", "loss": "binary_crossentropy"}]
        if activation == "softmax":
            changes.insert(0, {"op": "output_activation", "activation": "sigmoid"})
        return Remedy(changes[0] if len(changes) == 1 else {"op": "all", "changes": changes}, "bce",
                      "binary cross-entropy (one probability per tag" +
                      (", a sigmoid output)" if activation == "softmax" else ")"))
    if loss.get("kind") == "regression" and structure in ("one-hot", "multi-hot", "binary") \
            and activation in ("softmax", "sigmoid"):
        wanted = "categorical_crossentropy" if structure == "one-hot" and activation == "softmax" \
            else "binary_crossentropy"
        return Remedy({"op": "loss", "loss": wanted}, wanted.split("_")[0], f"{wanted} instead of {loss.get('name')}")
    return None


@fix("output-range-mismatch", what="a linear output (no activation) for one whose range excludes the targets")
def _output_range(view):
    activation = (_contract(view).get("output") or {}).get("activation")
    return Remedy({"op": "output_activation", "activation": "linear"}, "linear",
                  f"a linear output instead of {activation}")


# Standardised targets put the loss in other units: the task's error (1 - R^2) judges the fix. (A fixed
# Rescaling after the output keeps the loss's units but not its gradients' scale: under SGD it fixes nothing.)
@fix("unscaled-targets", what="the targets standardised with the training targets' mean and spread",
     judged_by="task")
def _unscaled_targets(view):
    return Remedy({"op": "standardize_targets"}, "standardised", "the targets standardised (training mean and "
                                                                 "spread)")


@fix("excessive-dropout", what="dropout rates above 0.5 replaced by one less the rate (what a keep "
                               "probability passed as a rate meant)")
def _excessive_dropout(view):
    from diagnose.findings.base import all_layers
    from diagnose.findings.rules_contract import _rates

    layers = {}
    for layer in all_layers(view):
        for key, rate in _rates(layer):
            if rate > T.DROPOUT_RATE:
                layers.setdefault(layer.get("name"), {})[key] = round(1.0 - rate, 4)
    if not layers:
        return None
    return Remedy({"op": "dropout_rate", "layers": layers}, "keep",
                  "dropout rates " + ", ".join(f"{n} {r}" for n, rates in layers.items() for r in rates.values()))


@fix("frozen-layers", what="the frozen layers trainable again")
def _frozen_layers(view):
    from diagnose.findings.base import all_layers
    from diagnose.findings.rules_contract import _leaf

    names = [layer.get("name") for layer in all_layers(view) if _leaf(layer)
             and (number(layer.get("frozen_params")) or 0) > 0]
    if not names:
        return None
    return Remedy({"op": "unfreeze", "layers": names}, "trainable", f"{', '.join(names)} trainable")


# As many updates as before: a batch 32 times larger over as many epochs would take 32 times fewer steps.
@fix("batchnorm-small-batch", what="a batch of 32 for one too small for BatchNormalization's statistics, over as "
                                   "many steps (the epochs scaled by the batch's growth)")
def _small_batch(view):
    batch = number(_contract(view).get("batch_size"))
    if not batch or batch >= 32:
        return None
    factor = 32.0 / batch
    return Remedy({"op": "fit", "batch_size": 32, "epochs_factor": factor}, "batch 32",
                  f"batch size 32 (from {batch:g}) for {factor:g}x the epochs: as many steps")


@fix("unadapted-preprocessing", what="the preprocessing layers adapted on the training inputs")
def _unadapted(view):
    from diagnose.findings.base import all_layers

    names = [layer.get("name") for layer in all_layers(view) if layer.get("adapted") is False]
    names += [f.get("name") for f in _contract(view).get("preprocessing") or []
              if (number((f or {}).get("oov_share")) or 0.0) >= T.OOV_SHARE and f.get("name") not in names]
    if not names:
        return None
    return Remedy({"op": "adapt", "layers": names}, "adapted", f"{', '.join(names)} adapted on the training data")


@fix("missing-activation", what="ReLU on the hidden layers that have no activation")
def _missing_activation(view):
    graph = KerasGraph(view.model)
    outputs = set(graph.outputs())
    layers = [n for n in graph.by_name if n not in outputs and graph.cls(n) in LINEAR
              and graph.activation(n) in (None, "linear")]
    if not layers:
        return None
    return Remedy({"op": "hidden_activation", "layers": layers, "activation": "relu"}, "relu",
                  f"ReLU in {', '.join(layers)}")


@fix("class-imbalance", what="classes weighted by the inverse of their share of the training labels",
     judged_by="task")
def _class_imbalance(view):
    return Remedy({"op": "fit", "class_weight": "balanced"}, "balanced", "classes weighted (balanced)")


@fix("too-few-steps", what="four times the epochs")
def _too_few_steps(view):
    return Remedy({"op": "fit", "epochs_factor": 4}, "epochs x4", "four times the epochs")

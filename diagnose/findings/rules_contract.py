"""Rules about the model-task contract: the targets, the output layer and the loss that joins them, and
the layers' own settings (dropout, freezing, normalisation, preprocessing state), judged from step 0.

They read summary.json's ``contract`` (what the targets are, what the output can
produce, the loss of a constant prediction and of the output's range;
:mod:`diagnose.instruments.contract`) and the model's description, so their evidence
is there before the first step and does not depend on how the run went. Choices that
are wrong whatever the run does (a categorical cross-entropy over multi-hot tags,
fractional labels, an output that cannot reach the targets, a preprocessing layer never
adapted) are root causes in any run; choices that can train (a squared error over
classes, dropout of 0.8, targets in the thousands) are named only in a run that
failed or learned little (:func:`~diagnose.findings.outcome.underperformed`).
"""

from __future__ import annotations

import math

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, all_layers, contract, contract_targets, late, number,
                                    series, start_loss, steps_of, weight_matrices)
from diagnose.findings.graph import LINEAR, PASS_THROUGH, KerasGraph
from diagnose.findings.outcome import at_chance, constant_output, failure, underperformed
from diagnose.findings.rules_inputs import zero_inputs
from diagnose.findings.registry import Hit, rule

__all__ = ["loss_target_mismatch", "labels_not_class_indices", "output_range_mismatch", "unscaled_targets",
           "excessive_dropout", "frozen_layers", "blocked_gradient", "batchnorm_small_batch",
           "unadapted_preprocessing", "missing_activation", "class_imbalance", "too_few_steps", "CONTRACT_IDS",
           "broken_contract"]

# What a broken contract makes a run show: these rules are listed before those findings.
_CAUSES = ("ignores-input", "plateau", "dead-network", "no-gradient", "vanishing-gradients", "tiny-steps",
           "huge-steps", "diverged", "exploding-gradients", "oscillating-loss", "clipping-always-fires",
           "relu-output-crossentropy", "overfitting", "too-few-steps", "blocked-gradient")
_REGRESSION_KINDS = ("regression", "other")
_CLASS_STRUCTURES = ("one-hot", "multi-hot", "binary", "soft-labels", "text", "unknown", None)
_DROPOUTS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
             "GaussianDropout")
_CONTAINERS = ("Sequential", "Functional", "Model", "TimeDistributed", "Bidirectional")
_RECURRENT_DROPOUT = ("dropout", "recurrent_dropout")


def _loss(view: RunView) -> dict:
    loss = contract(view).get("loss")
    return loss if isinstance(loss, dict) else {}


def _output(view: RunView) -> dict:
    output = contract(view).get("output")
    return output if isinstance(output, dict) else {}


def _fact(key: str, value, threshold=None) -> Evidence:
    return Evidence(f"summary.contract.{key}", value, threshold, (0, 0))


@rule("loss-target-mismatch", scope="output", kind="root-cause", severity="high", figure="loss",
      what="a loss that does not fit the targets' structure: categorical cross-entropy over multi-hot targets, "
           "binary cross-entropy over more than two classes, a regression loss over class targets",
      explains=_CAUSES)
def loss_target_mismatch(view: RunView) -> Hit | None:
    targets, loss, output = contract_targets(view), _loss(view), _output(view)
    kind, structure, name = loss.get("kind"), targets.get("structure"), loss.get("name")
    activation = output.get("activation")
    evidence = [_fact("loss.name", str(name)), _fact("targets.structure", str(structure))]
    if kind == "categorical" and structure == "multi-hot":
        evidence.insert(1, _fact("targets.multi_hot_share", number(targets.get("multi_hot_share")),
                                 T.MULTI_HOT_SHARE))
        return Hit(
            title=(f"A categorical cross-entropy over multi-hot targets: {targets.get('multi_hot_share'):.0%} of "
                   "the rows have several labels"),
            evidence=evidence,
            explanation=("A categorical cross-entropy reads each row as one distribution over mutually exclusive "
                         "classes; a row with several ones asks one probability mass to be in several places, so "
                         "the labels compete and the loss rewards spreading mass evenly over an example's tags "
                         "rather than deciding each tag. The task is multi-label: each tag is its own yes/no."),
            fix=("Give each tag its own probability: a sigmoid output (activation='sigmoid') with "
                 "binary_crossentropy (or a linear output with BinaryCrossentropy(from_logits=True)); judge it "
                 "by binary accuracy, precision and recall per tag."))
    units = number(output.get("units"))
    if kind == "categorical" and units == 1:
        evidence.insert(1, _fact("output.units", 1, 2))
        return Hit(
            title="A categorical cross-entropy over one output unit: the loss is always 0",
            evidence=evidence,
            explanation=("A categorical cross-entropy normalises the output over its units; over one unit the "
                         "normalised output is exactly 1 for every example, so the loss is 0 whatever the model "
                         "predicts and no gradient reaches any weight."),
            fix=("For a yes/no target with one output unit use binary_crossentropy with a sigmoid output (or a "
                 "linear output and from_logits=True); for several classes, one unit per class."))
    if kind == "binary" and structure == "class-indices" and (number(targets.get("max")) or 0) >= 2:
        evidence.insert(1, _fact("targets.max", number(targets.get("max")), 1.0))
        classes = int(number(targets.get("max")) or 1) + 1
        return Hit(
            title=f"A binary cross-entropy over {classes} classes given as indices 0-{classes - 1}",
            evidence=evidence,
            explanation=("A binary cross-entropy reads each target as the probability of one yes/no outcome, in "
                         "[0, 1]; a class index of 2 or more is no probability, so the loss is unbounded below "
                         "and rewards pushing every output to an extreme, whatever the class."),
            fix=(f"For {classes} exclusive classes use Dense({classes}, activation='softmax') with "
                 "sparse_categorical_crossentropy (or a linear output and from_logits=True)."))
    if kind == "regression" and structure in ("one-hot", "multi-hot", "binary") \
            and activation in ("softmax", "sigmoid"):
        failed = underperformed(view)
        if failed is None:
            return None
        wanted = "categorical_crossentropy" if structure == "one-hot" and activation == "softmax" \
            else "binary_crossentropy"
        evidence += [_fact("output.activation", str(activation)), failed]
        return Hit(
            title=f"A regression loss ({name}) trains a classifier's {activation} output on {structure} targets",
            evidence=evidence,
            explanation=(f"Through a {activation}, a squared or absolute error passes back the error times the "
                         "activation's slope, which vanishes exactly where the output is confidently wrong, and "
                         "an absolute error's gradient does not shrink as predictions improve: training stalls "
                         "near chance where a cross-entropy's gradient (the error itself) keeps it moving."),
            fix=(f"Train the {activation} output with {wanted} (the loss of probabilities), keeping the "
                 "targets as they are."))
    return None


@rule("labels-not-class-indices", scope="output", kind="root-cause", severity="high", figure="loss",
      what="classifier targets that are not class labels: fractions, negatives, indices beyond the output's units, "
           "binary targets outside [0, 1]",
      explains=_CAUSES + ("loss-target-mismatch",))
def labels_not_class_indices(view: RunView) -> Hit | None:
    targets, loss, output = contract_targets(view), _loss(view), _output(view)
    kind, units = loss.get("kind"), number(output.get("units"))
    low, high = number(targets.get("min")), number(targets.get("max"))
    fractional = number(targets.get("non_integer_share")) or 0.0
    if low is None or high is None:
        return None
    evidence = [_fact("loss.name", str(loss.get("name")))]
    if kind == "sparse":
        beyond = number(targets.get("out_of_units_share")) or 0.0
        if fractional < T.LABEL_SHARE and low >= 0 and beyond < T.LABEL_SHARE:
            return None
        evidence += [_fact("targets.non_integer_share", fractional, T.LABEL_SHARE),
                     _fact("targets.min", low, 0.0), _fact("targets.max", high, (units or 0) - 1)]
        what = (f"{fractional:.0%} of them are not integers" if fractional >= T.LABEL_SHARE else
                f"they reach {low:g}" if low < 0 else f"they reach {high:g} with {int(units or 0)} output units")
        return Hit(
            title=f"The labels are not class indices: {what} (range {low:g} to {high:g})",
            evidence=evidence,
            explanation=("A sparse categorical cross-entropy reads each target as the index of a class, an integer "
                         "from 0 to the number of output units less one; Keras casts other values to integers, so "
                         "fractions (labels divided by 255, or scaled to [0, 1]) all become class 0 and the model "
                         "learns to predict one class for everything."),
            fix=("Give the loss integer class ids 0..C-1 (undo the scaling: labels * 255 or the original ids; map "
                 "arbitrary ids with keras.layers.IntegerLookup or numpy.unique(..., return_inverse=True))."))
    if kind == "binary" and (low < 0 or high > 1) and (number(targets.get("distinct")) or 3) <= 2:
        evidence += [_fact("targets.min", low, 0.0), _fact("targets.max", high, 1.0)]
        return Hit(
            title=f"Binary targets outside [0, 1]: the labels are {low:g} and {high:g}",
            evidence=evidence,
            explanation=("A binary cross-entropy reads each target as the probability of the positive class; "
                         f"{low:g} and {high:g} are not probabilities, so the loss is unbounded and pushes outputs to "
                         "an extreme instead of separating the two classes."),
            fix=f"Map the labels to 0 and 1 (y = (y == {high:g}).astype('float32')).")
    if kind == "categorical" and targets.get("structure") == "continuous" and units and units >= 2 \
            and (high > 1 or low < 0):
        evidence += [_fact("targets.min", low, 0.0), _fact("targets.max", high, 1.0),
                     _fact("targets.row_sum_max", number(targets.get("row_sum_max")), 1.0)]
        return Hit(
            title=f"Categorical targets are not distributions: values from {low:g} to {high:g}",
            evidence=evidence,
            explanation=("A categorical cross-entropy reads each row of targets as a distribution over the classes "
                         "(one-hot, or probabilities summing to 1); rows of counts or scaled values weight the "
                         "classes by their size and are no labels."),
            fix="Give one-hot rows (keras.utils.to_categorical(ids)), or integer ids with the sparse loss.")
    return None


@rule("output-range-mismatch", scope="output", kind="root-cause", severity="high", figure="output",
      what="an output activation whose range excludes the targets (sigmoid, tanh, softmax or ReLU on targets "
           "outside its range)",
      explains=_CAUSES)
def output_range_mismatch(view: RunView) -> Hit | None:
    facts, targets, output = contract(view), contract_targets(view), _output(view)
    share, floor = number(facts.get("range_floor_share")), number(facts.get("range_floor"))
    low, high = (output.get("range") or [None, None])[:2]
    bounds = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
    activation = output.get("activation")
    name = str(_loss(view).get("name"))
    domain = number(_loss(view).get("domain_low"))  # where the loss is defined (the contract says)
    if domain is not None and activation is not None and (low is None or low < domain):
        # An output that can leave the loss's domain: the loss takes the log of what it predicts.
        return Hit(
            title=f"The output's {activation} can go below {domain:g}, where the {name} loss is not defined",
            evidence=[_fact("output.activation", str(activation)), _fact("output.range", bounds),
                      _fact("loss.name", name, f"predictions above {domain:g}")],
            explanation=(f"The {name} loss takes the logarithm of the prediction (plus one, for MSLE), so a "
                         f"prediction at or below {domain:g} gives NaN or an unbounded loss; a {activation} output "
                         "gets there as soon as training pushes it, and the run is lost."),
            fix=("Give the output a range inside the loss's domain: activation='exponential' or 'softplus' for a "
                 "Poisson loss (and start its bias at the log of the mean count), or a mean squared error on "
                 "log1p(y) instead of MSLE on a linear output."))
    if _loss(view).get("kind") not in _REGRESSION_KINDS or share is None or share < T.RANGE_SHARE:
        return None
    evidence = [_fact("output.activation", str(activation)), _fact("output.range", bounds),
                _fact("targets.min", number(targets.get("min"))), _fact("targets.max", number(targets.get("max"))),
                _fact("range_floor (the loss of the targets clipped to the range)", floor),
                _fact("range_floor_share (of what a model can learn, the share the range takes away)", share,
                      T.RANGE_SHARE)]
    return Hit(
        title=(f"The output's {activation} can only produce {bounds}; the targets run from "
               f"{number(targets.get('min')):.4g} to {number(targets.get('max')):.4g}"),
        evidence=evidence,
        explanation=(f"Every target outside {bounds} is out of the model's reach: even predicting the rest "
                     f"exactly, the loss cannot go below {floor:.4g}, which takes {share:.0%} of what a model could "
                     "learn (from a constant prediction's loss down to exact predictions'). Near the bounds the "
                     "activation's slope vanishes too, so the outputs that are furthest off learn slowest."),
        fix=("Use a linear output (activation=None) for an unbounded target, or bring the targets into the range "
             "(scale them to [0, 1] for a sigmoid and scale predictions back)."))


@rule("unscaled-targets", scope="output", kind="root-cause", severity="medium", figure="loss",
      what="regression targets far from unit scale under an output with no bounding activation, in a run that "
           "failed or learned little",
      explains=_CAUSES)
def unscaled_targets(view: RunView) -> Hit | None:
    targets, output = contract_targets(view), _output(view)
    rms = number(targets.get("rms"))
    low, high = (output.get("range") or [None, None])[:2]
    if _loss(view).get("kind") not in _REGRESSION_KINDS or targets.get("structure") in _CLASS_STRUCTURES \
            or rms is None or rms <= T.TARGET_RMS or low is not None or high is not None:
        return None  # (integer targets under a regression loss are values: ratings, counts, prices)
    failed = underperformed(view)
    if failed is None:
        return None
    mean, std = number(targets.get("mean")) or 0.0, number(targets.get("std")) or 0.0
    return Hit(
        title=f"Regression targets far from unit scale: RMS {rms:.3g} (mean {mean:.3g}, sd {std:.3g})",
        evidence=[_fact("targets.rms", rms, T.TARGET_RMS), _fact("targets.mean", mean), _fact("targets.std", std),
                  _fact("output.activation", str(output.get("activation"))), failed],
        explanation=("The network's outputs start at about unit scale; targets this large make the first losses "
                     "and gradients enormous (the learning rate that suits the weights is far off for the last "
                     "layer and its bias), and an adaptive optimizer, moving each weight by about its learning "
                     "rate per step, needs thousands of steps just to reach the targets' scale."),
        fix=(f"Standardise the targets (y - {mean:.3g}) / {max(std, 1e-12):.3g} and scale predictions back, or "
             f"append keras.layers.Rescaling(scale={max(std, 1e-12):.3g}, offset={mean:.3g}) to the output so the "
             "network learns a unit-scale quantity."))


def _rates(layer: dict) -> list[tuple[str, float]]:
    config = layer.get("config") or {}
    keys = ("rate",) if layer.get("class") in _DROPOUTS else _RECURRENT_DROPOUT
    return [(key, float(config[key])) for key in keys if number(config.get(key)) is not None]


@rule("excessive-dropout", kind="root-cause", severity="medium", figure="loss",
      what="a dropout rate so high that most units are dropped (above 0.5: a keep-probability passed as a rate), "
           "in a run that failed or learned little",
      explains=_CAUSES)
def excessive_dropout(view: RunView) -> Hit | None:
    found = [(layer, key, rate) for layer in all_layers(view) for key, rate in _rates(layer)
             if rate > T.DROPOUT_RATE]
    if not found:
        return None
    failed = underperformed(view)
    if failed is None:
        return None
    evidence = [Evidence(f"{layer.get('class')} '{layer.get('name')}'.{key}", rate, T.DROPOUT_RATE, (0, 0))
                for layer, key, rate in found[:4]]
    worst = max(rate for *_, rate in found)
    return Hit(
        title=f"Dropout drops {worst:.0%} of the units ({len(found)} layer(s))",
        evidence=evidence + [failed],
        explanation=(f"At rate {worst:g} a layer keeps {1 - worst:.0%} of its units at each step and multiplies "
                     f"them by {1 / max(1 - worst, 1e-9):.0f}: what follows sees mostly noise, and training fits "
                     "little. Keras' rate is the share dropped; TensorFlow 1's keep_prob was the share kept."),
        fix=(f"Use a rate of {1 - worst:.2g} if {worst:g} was meant as the share kept (rates of 0.1-0.5 are "
             "usual), or remove dropout until the model fits its training data."))


def _leaf(layer: dict) -> bool:
    return layer.get("class") not in _CONTAINERS


@rule("frozen-layers", kind="root-cause", severity="medium", figure="updates",
      what="weight layers left non-trainable (trainable=False) on the path to the output, in a run that failed or "
           "learned little (or with nothing left to train)",
      explains=_CAUSES)
def frozen_layers(view: RunView) -> Hit | None:
    layers = [layer for layer in all_layers(view) if _leaf(layer)]
    frozen = [layer for layer in layers if (number(layer.get("frozen_params")) or 0) > 0]
    if not frozen:
        return None
    trainable = sum(int(number(layer.get("trainable_params")) or 0) for layer in layers)
    held = sum(int(number(layer.get("frozen_params")) or 0) for layer in frozen)
    failed = None if trainable == 0 else underperformed(view)
    if trainable > 0 and failed is None:
        return None
    evidence = [Evidence(f"{layer.get('class')} '{layer.get('name')}'.trainable", False, True, (0, 0))
                for layer in frozen[:4]]
    evidence += [_fact("frozen parameters", held), _fact("trainable parameters", trainable)]
    if failed is not None:
        evidence.append(failed)
    names = ", ".join(f"'{layer.get('name')}'" for layer in frozen[:4])
    return Hit(
        title=(f"{len(frozen)} layer(s) with weights are frozen ({held:,} parameters: {names}); "
               f"{trainable:,} parameters train"),
        evidence=evidence,
        explanation=("A layer with trainable=False keeps its weights where they started: randomly initialised "
                     "weights stay random, and the layers after them have to learn from a fixed random "
                     "projection. Freezing is meant for weights already trained (a pretrained backbone), with "
                     "the layers that must learn left trainable."),
        fix=(f"Set trainable=True on {names} (and recompile), or load trained weights into them before freezing; "
             "to fine-tune a pretrained part, train the new head first, then unfreeze it at a low learning rate."))


def _zero_throughout(view: RunView, column: str) -> tuple[int, int] | None:
    values = series(view, column)
    if values is None or len(values) < T.MIN_ROWS or float(values.abs().max()) > T.VANISH_ABSOLUTE:
        return None
    start = (view.summary.get("at_start") or {}).get(column)
    if number(start) is not None and abs(float(start)) > T.VANISH_ABSOLUTE:
        return None
    return steps_of(values)


@rule("blocked-gradient", kind="root-cause", severity="high", figure="gradients",
      what="weight matrices on the path to the loss that never receive a gradient from the first step "
           "(a stop_gradient or a non-differentiable op between them and the loss), behind a stop_gradient the "
           "model applies, or in a run that failed or learned little (not layers the input goes around, in a run "
           "whose output ignores it)",
      explains=_CAUSES + ("no-gradient",))
def blocked_gradient(view: RunView) -> Hit | None:
    digests = view.summary.get("initial_weight_digests")
    digests = digests if isinstance(digests, dict) else {}
    blocked = []
    for column in weight_matrices(view, "grad_norm"):
        name = column.split("/", 1)[1]
        if name in digests and digests[name] is None:
            continue  # a matrix that starts constant is constant-init's (zeros pass no gradient on)
        steps = _zero_throughout(view, column)
        if steps is not None:
            blocked.append((column, steps))
    if not blocked:
        return None
    from diagnose.findings.rules_architecture import constant_weights

    if constant_weights(view):
        return None  # weights that start constant upstream pass zeros on: constant-init's, not a cut path
    graph = KerasGraph(view.model)
    stops = [layer.get("name") for layer in graph.layers if layer.get("operation")
             and str(layer.get("class")) in ("StopGradient",)]
    behind = set().union(*(graph.upstream(name) for name in stops)) if stops else set()
    # A stop_gradient the model applies ahead of weights that then never move is the cut itself, measured
    # (trainable weights no loss can train), whatever the run reached with the others; without one, zero
    # gradients can be by construction, and only a run that failed or learned little makes them its cause.
    cut = [(c, s) for c, s in blocked if c.split("/")[1] in behind]
    failed = underperformed(view)
    if failed is None and not cut:
        return None  # weights the run never trains, in a run that learned its task: wasted (no-gradient says so)
    if not cut and (zero_inputs(view) or constant_output(view) is not None):
        # Weights that multiply an input of zeros get none (the data is cut, not the path), and so do weights
        # under an output that is the same for every example whatever they are (the architecture is).
        return None
    if not cut and failure(view) is not None:
        held, by_layer = {c for c, _ in blocked}, {}
        for column in weight_matrices(view, "grad_norm"):
            by_layer.setdefault(column.split("/")[1], []).append(column)
        whole = {layer for layer, columns in by_layer.items() if all(c in held for c in columns)}
        if whole and graph.reached_without(whole):
            # The input goes around the layers that never train (a residual connection): they take capacity
            # away, but a model whose output ignores its input, at chance or flat, does so for another reason.
            return None
    blocked = cut or blocked
    evidence = [Evidence(column + " (every logged row and the first step)", 0.0, T.VANISH_ABSOLUTE, steps)
                for column, steps in blocked[:4]]
    evidence += [Evidence(f"model op '{name}'", "StopGradient", "no stop_gradient on the path", (0, 0))
                 for name in stops[:2]]
    if failed is not None:
        evidence.append(failed)
    total = len(weight_matrices(view, "grad_norm"))
    names = ", ".join(c.split("/", 1)[1] for c, _ in blocked[:4])
    return Hit(
        title=f"{len(blocked)} of {total} weight matrices never get a gradient ({names})",
        evidence=evidence,
        explanation=("From the very first step, with their initial random values, these weights receive exactly "
                     "zero gradient, so something between them and the loss passes none back: a stop_gradient, "
                     "an argmax, a round, a cast to an integer, or a branch the loss does not use. They keep their "
                     "initial values for the whole run." +
                     (f" The model has {len(stops)} stop_gradient op(s) on its graph." if stops else "")),
        fix=("Remove the stop_gradient (or the argmax / round / cast) between these layers and the loss, or replace "
             "it with a differentiable op (softmax for argmax); if the weights are meant to stay fixed, make them "
             "non-trainable."))


def _values_per_channel(layer: dict, batch: int) -> int | None:
    shape = layer.get("output_shape")
    if not isinstance(shape, list) or len(shape) < 2:
        return batch
    axis = (layer.get("config") or {}).get("axis", -1)
    axes = [d for i, d in enumerate(shape[1:], start=1) if i != (axis if axis >= 0 else len(shape) + axis)]
    if any(not isinstance(d, int) for d in axes):
        return None
    return batch * int(np.prod(axes)) if axes else batch


@rule("batchnorm-small-batch", kind="root-cause", severity="high", figure="loss",
      what="BatchNormalization trained on batches that give each channel one or two values (batch size 1 or 2 "
           "on a Dense layer's features), or one example a batch in a run that failed or learned little",
      explains=_CAUSES)
def batchnorm_small_batch(view: RunView) -> Hit | None:
    batch = number(contract(view).get("batch_size"))
    if batch is None:
        return None
    found, norms = [], [layer for layer in all_layers(view)
                        if layer.get("class") in ("BatchNormalization", "SyncBatchNormalization")]
    for layer in norms:
        values = _values_per_channel(layer, int(batch))
        if values is not None and values < T.BN_MIN_VALUES:
            found.append((layer, values))
    alone = not found and int(batch) == 1 and bool(norms)
    if alone:
        # One example a batch: however many positions it has, each channel's statistics are that example's own.
        failed = underperformed(view)
        if failed is None:
            return None  # a model that learned its task this way (instance statistics suit some tasks)
        found = [(layer, _values_per_channel(layer, 1)) for layer in norms]
    if not found:
        return None
    evidence = [_fact("batch_size", int(batch), "2 or more examples" if alone else None)]
    evidence += [Evidence(f"{layer.get('class')} '{layer.get('name')}' values per channel per batch", values,
                          None if alone else T.BN_MIN_VALUES, (0, 0)) for layer, values in found[:4]]
    if alone:
        evidence.append(failed)
        title = (f"BatchNormalization trained on one example per batch ({len(norms)} layer(s)): each channel "
                 "normalised by that example's own statistics")
        what = ("one example's own values, whose statistics take away what sets it apart from the others (its "
                "overall level and contrast in each channel)")
    else:
        values = min(v for _, v in found)
        title = f"BatchNormalization normalises over {values} value(s) per channel (batch size {int(batch)})"
        what = (f"{values} value(s): " + ("its output is exactly its beta, whatever the input" if values == 1 else
                "its output is exactly +1 or -1: only the sign of the difference between the two examples gets "
                "through"))
    return Hit(
        title=title,
        evidence=evidence,
        explanation=(f"In training a BatchNormalization layer subtracts each channel's batch mean and divides by "
                     f"its batch spread, here over {what}. The layers after it learn from that, and at inference, "
                     "with the moving statistics of all the batches, they see inputs they never trained on."),
        fix=("Train with a batch size of 16 or more, or use LayerNormalization or GroupNormalization, which "
             "normalise each example on its own."))


@rule("unadapted-preprocessing", kind="root-cause", severity="high", figure="loss",
      what="preprocessing layers in the model with no state that fits the data: never adapted (Normalization "
           "without mean and variance, a lookup without a vocabulary), or a vocabulary missing most tokens",
      explains=_CAUSES + ("unscaled-inputs",))
def unadapted_preprocessing(view: RunView) -> Hit | None:
    found = [layer for layer in all_layers(view) if layer.get("adapted") is False]
    evidence = [Evidence(f"{layer.get('class')} '{layer.get('name')}' adapted", False, True, (0, 0))
                for layer in found[:4]]
    names = {layer.get("name") for layer in found}
    misfits = []  # adapted, but on other data: most tokens out of the vocabulary
    for facts in contract(view).get("preprocessing") or []:
        share = number((facts or {}).get("oov_share"))
        if share is not None and share >= T.OOV_SHARE and facts.get("name") not in names:
            misfits.append(facts)
            evidence.append(Evidence(f"{facts.get('class')} '{facts.get('name')}' out-of-vocabulary share of the "
                                     "probe batch's tokens", share, T.OOV_SHARE, (0, 0)))
    if not found and not misfits:
        return None
    found = found + [{"class": f.get("class"), "name": f.get("name")} for f in misfits]
    classes = {layer.get("class") for layer in found}
    effects = []
    if "Normalization" in classes:
        effects.append("a Normalization layer never adapted holds mean 0 and variance 1, so it passes the raw "
                       "values through unchanged")
    if classes & {"TextVectorization", "StringLookup", "IntegerLookup"}:
        effects.append("a vocabulary that was never built, or built from other data, maps the tokens it is given "
                       "to the out-of-vocabulary index, so the inputs look alike")
    if "Discretization" in classes:
        effects.append("a Discretization layer without bin boundaries puts everything in one bin")
    names = ", ".join(f"{layer.get('class')} '{layer.get('name')}'" for layer in found[:4])
    return Hit(
        title=f"{len(found)} preprocessing layer(s) hold no state that fits the data: {names}",
        evidence=evidence,
        explanation="Preprocessing layers learn their state from data with adapt(), before training: " +
                    "; ".join(effects) + ".",
        fix=(f"Call layer.adapt() on {names} with the training data of the input it reads, before compiling and "
             "fitting (or pass mean and variance, or the vocabulary, to the layer's constructor)."))


# Layers that apply no nonlinearity: a stack of them is one affine map whatever its depth.
_AFFINE = frozenset({"InputLayer", "Add", "Subtract", "Average", "Concatenate", "AveragePooling1D",
                     "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                     "GlobalAveragePooling3D", "BatchNormalization", "Rescaling", "ZeroPadding1D", "ZeroPadding2D",
                     "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "RepeatVector"}) | PASS_THROUGH


@rule("missing-activation", kind="root-cause", severity="medium", figure="loss",
      what="stacked Dense or Conv layers with no nonlinearity anywhere between input and output (one linear "
           "map), in a run that failed or learned little",
      explains=_CAUSES)
def missing_activation(view: RunView) -> Hit | None:
    if not view.is_keras:
        return None
    graph = KerasGraph(view.model)
    outputs = set(graph.outputs())
    hidden, other = [], []
    for layer in graph.layers:
        name, cls = layer.get("name"), layer.get("class")
        if name in outputs:
            continue
        if cls in LINEAR and graph.activation(name) in (None, "linear"):
            hidden.append(name)
        elif cls not in _AFFINE:
            other.append(name)
    for layer in view.model.get("inner_layers") or []:  # a nested model's own layers count too
        activation = (layer.get("config") or {}).get("activation")
        if layer.get("class") not in _AFFINE and not (layer.get("class") in LINEAR
                                                      and activation in (None, "linear")):
            other.append(layer.get("name"))
    deviation = number((contract(view).get("affine") or {}).get("deviation"))
    if deviation is not None and deviation > T.AFFINE_DEVIATION:
        return None  # the model bends its input somewhere: not one linear map, whatever its layers read as
    if len(hidden) < 1 or (other and deviation is None):
        return None  # a nonlinearity somewhere (or a layer of unknown kind, unmeasured): not one linear map
    failed = underperformed(view)
    if failed is None or view.summary.get("status") == "diverged" \
            or isinstance(view.summary.get("diverged_at"), dict):
        return None  # too little capacity fits poorly; it does not blow a run up (a step size or a scale does)
    evidence = [Evidence(graph.field(name, "config.activation"), graph.activation(name) or "linear",
                         "a nonlinearity (relu)", (0, 0)) for name in hidden[:4]]
    if deviation is not None:
        evidence.append(Evidence("summary.contract.affine.deviation (a midpoint's output off the outputs' "
                                 "midpoint, over their distance)", deviation, T.AFFINE_DEVIATION, (0, 0)))
    return Hit(
        title=(f"{len(hidden)} hidden layer(s) have no activation: the network is one linear map "
               f"({', '.join(hidden[:4])})"),
        evidence=evidence + [failed],
        explanation=("A composition of linear layers is itself linear: without an activation between them, "
                     "stacking Dense layers adds parameters but no capacity, and the model can fit only a linear "
                     "function of its input (a logistic or linear regression), whatever its depth."),
        fix=f"Give the hidden layers a nonlinearity: activation='relu' on {', '.join(hidden[:4])}.")


@rule("class-imbalance", scope="output", kind="root-cause", severity="medium", figure="loss",
      what="one class holding nearly all the labels, and a model that predicts it for everything",
      explains=("ignores-input", "plateau"))
def class_imbalance(view: RunView) -> Hit | None:
    targets = contract_targets(view)
    share = number(targets.get("majority_share"))
    if share is None or share < T.IMBALANCE_SHARE or contract(view).get("weighted"):
        return None
    chance = at_chance(view)
    if chance is None:
        return None
    return Hit(
        title=(f"Class {targets.get('majority_class')} holds {share:.0%} of the labels, and the model predicts "
               "no better than always choosing it"),
        evidence=[_fact("targets.majority_share", share, T.IMBALANCE_SHARE), *chance.evidence],
        explanation=(f"Always predicting the largest class is right {share:.0%} of the time and costs little "
                     "loss; the other classes' examples give at most a tenth of the gradient, so the model settles "
                     "on the prior before it learns to tell them apart (its accuracy looks high, and says nothing)."),
        fix=("Weight the classes (fit(..., class_weight={c: n / (k * n_c)}) ), or resample to balance the batches; "
             "judge the model by per-class recall or AUC rather than accuracy."))


@rule("too-few-steps", kind="root-cause", severity="medium", figure="loss",
      what="training that stopped while the loss was still falling as fast as on average, at healthy step sizes, "
           "having learned little (too few epochs; a symptom where the run did not fail)",
      explains=("plateau", "ignores-input"))
def too_few_steps(view: RunView) -> Hit | None:
    window = late(series(view, "loss"), T.PLATEAU_WINDOW)
    if window is None or len(window) < T.MIN_ROWS or view.summary.get("status") == "diverged" \
            or isinstance(view.summary.get("diverged_at"), dict):
        return None  # (a run that blew up was not learning its way down when it stopped)
    third = max(1, len(window) // 3)
    first, last = float(window.iloc[:third].mean()), float(window.iloc[-third:].mean())
    if not (first > 0 and math.isfinite(last)) or (first - last) / first < T.STILL_FALLING:
        return None
    start = start_loss(view)
    steps_between = float(window.index[-third:].to_series().mean() - window.index[:third].to_series().mean())
    end_step = float(window.index[-third:].to_series().mean())
    if start is None or steps_between <= 0 or end_step <= 0 or start <= last:
        return None
    late_rate, mean_rate = (first - last) / steps_between, (start - last) / end_step
    if late_rate < T.LEVELLING * mean_rate:
        return None  # the curve has bent: the run is levelling off, not cut short in its steep part
    ratios = [float(late(s).mean()) for c in weight_matrices(view) if (s := series(view, c)) is not None]
    if ratios and float(np.median(ratios)) < T.HEALTHY_UPDATE_RATIO:
        return None  # steps too small to call the budget the cause: tiny-steps'
    short = underperformed(view)
    if short is None:
        return None
    failed = failure(view)
    steps = int(view.summary.get("steps") or window.index[-1])
    drop = (first - last) / first
    return Hit(
        # The budget is why a run failed only where it failed; where it learned something, still
        # falling is what the run shows (more epochs would help), not the cause of a failure.
        kind=None if failed is not None else "symptom", severity=None if failed is not None else "low",
        title=f"Training stopped while the loss was still falling ({drop:.0%} over the last 30% of {steps} steps)",
        evidence=[Evidence("loss (relative drop over the last 30% of rows)", drop, T.STILL_FALLING,
                           steps_of(window)),
                  Evidence("loss's late rate of fall / its mean rate since step 0", late_rate / mean_rate,
                           T.LEVELLING, steps_of(window)),
                  short, _fact("epochs", contract(view).get("epochs"))]
                 + ([Evidence("update_ratio/* (median of the weight matrices, late)", float(np.median(ratios)),
                              T.HEALTHY_UPDATE_RATIO, steps_of(window))] if ratios else []),
        explanation=("The loss was still going down when training ended, as fast as it had on average since "
                     "the start (the curve had not begun to level off), at step sizes that are not small: the "
                     "model had not finished learning, and it got less than half of the way from where it "
                     "started to the best it could reach."),
        fix="Train for more epochs (several times as many), with early stopping on the validation loss.")


def broken_contract(view: RunView) -> list[str]:
    """The contract rules that find their fault in this run (their ids)."""
    return [fn.spec.id for fn in (loss_target_mismatch, labels_not_class_indices, output_range_mismatch,
                                  unscaled_targets, excessive_dropout, frozen_layers, batchnorm_small_batch,
                                  unadapted_preprocessing, missing_activation) if fn(view) is not None]


CONTRACT_IDS = ("loss-target-mismatch", "labels-not-class-indices", "output-range-mismatch", "unscaled-targets",
                "excessive-dropout", "frozen-layers", "blocked-gradient", "batchnorm-small-batch",
                "unadapted-preprocessing", "missing-activation", "class-imbalance")

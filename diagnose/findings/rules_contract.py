"""Rules about the model-task contract: the targets, the output layer and the loss that joins them.

They read summary.json's ``contract`` (what the targets are, what the output can
produce, the loss of a constant prediction and of the output's range;
:mod:`diagnose.instruments.contract`), so their evidence is there before the first
step and does not depend on how the run went. Choices that are wrong whatever the run
does (a categorical cross-entropy over multi-hot tags, fractional labels, an output
that cannot reach the targets) are root causes in any run; choices that can train (a
squared error over classes, targets in the thousands) are named only in a run that
failed or learned little (:func:`~diagnose.findings.outcome.underperformed`). The
layers' own settings are :mod:`~diagnose.findings.rules_contract_layers`'s, what fit
is given (the labels' balance, the number of steps)
:mod:`~diagnose.findings.rules_contract_training`'s.
"""

from __future__ import annotations

from diagnose.findings.base import Evidence, RunView, contract, contract_targets, number
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.outcome import underperformed
from diagnose.findings.registry import Hit, rule

__all__ = ["loss_target_mismatch", "labels_not_class_indices", "output_range_mismatch", "unscaled_targets",
           "CAUSES", "fact"]

# What a broken contract makes a run show: these rules are listed before those findings.
CAUSES = ("ignores-input", "plateau", "dead-network", "no-gradient", "vanishing-gradients", "tiny-steps",
          "huge-steps", "diverged", "exploding-gradients", "oscillating-loss", "clipping-always-fires",
          "relu-output-crossentropy", "overfitting", "too-few-steps", "blocked-gradient")
_REGRESSION_KINDS = ("regression", "other")
_CLASS_STRUCTURES = ("one-hot", "multi-hot", "binary", "soft-labels", "text", "unknown", None)

# Multi-hot rows: a multi-class task has exactly one label per example, so rows with two
# or more ones are multi-label by construction. 1% of the rows read (a share the 4,096
# rows measure to about 0.2%) rather than any one row, so that a stray corrupt row does not
# turn a one-hot task into a multi-label one.
MULTI_HOT_SHARE = 0.01
# Labels that are not class indices: a class index is an integer in [0, classes); Keras
# casts the rest to integers (0.73 -> class 0) or reads them out of range. 1% of the
# labels read, as above.
LABEL_SHARE = 0.01
# The output's range alone costs at least a tenth of what a constant prediction costs:
# predicting every target exactly where the range allows and the nearest bound elsewhere
# still leaves 10% of the constant's loss (an R^2 capped at 0.9 for a squared error), so
# no model with this output can fit the task, however it trains.
RANGE_SHARE = 0.1
# Regression targets whose RMS is over 10, under an output with no bounding activation:
# initialisers make a network's outputs about unit scale at the start (as rules_inputs.INPUT_RMS
# assumes of its inputs), so the output has to grow tenfold or more before it predicts the
# targets' scale, while the loss and its gradients are a hundred times what a unit-scale
# target gives.
TARGET_RMS = 10.0


def _loss(view: RunView) -> dict:
    loss = contract(view).get("loss")
    return loss if isinstance(loss, dict) else {}


def _output(view: RunView) -> dict:
    output = contract(view).get("output")
    return output if isinstance(output, dict) else {}


def fact(key: str, value, threshold=None) -> Evidence:
    """Evidence read from summary.json's contract (there from step 0)."""
    return Evidence(f"summary.contract.{key}", value, threshold, (0, 0))


@rule("loss-target-mismatch", scope="output", kind="root-cause", severity="high", figure="loss",
      what="a loss that does not fit the targets' structure: categorical cross-entropy over multi-hot targets, "
           "binary cross-entropy over more than two classes, a regression loss over class targets",
      explains=CAUSES)
def loss_target_mismatch(view: RunView) -> Hit | None:
    targets, loss, output = contract_targets(view), _loss(view), _output(view)
    kind, structure, name = loss.get("kind"), targets.get("structure"), loss.get("name")
    activation = output.get("activation")
    evidence = [fact("loss.name", str(name)), fact("targets.structure", str(structure))]
    if kind == "categorical" and structure == "multi-hot":
        evidence.insert(1, fact("targets.multi_hot_share", number(targets.get("multi_hot_share")),
                                 MULTI_HOT_SHARE))
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
        evidence.insert(1, fact("output.units", 1, 2))
        return Hit(
            title="A categorical cross-entropy over one output unit: the loss is always 0",
            evidence=evidence,
            explanation=("A categorical cross-entropy normalises the output over its units; over one unit the "
                         "normalised output is exactly 1 for every example, so the loss is 0 whatever the model "
                         "predicts and no gradient reaches any weight."),
            fix=("For a yes/no target with one output unit use binary_crossentropy with a sigmoid output (or a "
                 "linear output and from_logits=True); for several classes, one unit per class."))
    if kind == "binary" and structure == "class-indices" and (number(targets.get("max")) or 0) >= 2:
        evidence.insert(1, fact("targets.max", number(targets.get("max")), 1.0))
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
        evidence += [fact("output.activation", str(activation)), failed]
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
      explains=CAUSES + ("loss-target-mismatch",))
def labels_not_class_indices(view: RunView) -> Hit | None:
    targets, loss, output = contract_targets(view), _loss(view), _output(view)
    kind, units = loss.get("kind"), number(output.get("units"))
    low, high = number(targets.get("min")), number(targets.get("max"))
    fractional = number(targets.get("non_integer_share")) or 0.0
    if low is None or high is None:
        return None
    evidence = [fact("loss.name", str(loss.get("name")))]
    if kind == "sparse":
        beyond = number(targets.get("out_of_units_share")) or 0.0
        if fractional < LABEL_SHARE and low >= 0 and beyond < LABEL_SHARE:
            return None
        evidence += [fact("targets.non_integer_share", fractional, LABEL_SHARE),
                     fact("targets.min", low, 0.0), fact("targets.max", high, (units or 0) - 1)]
        what = (f"{fractional:.0%} of them are not integers" if fractional >= LABEL_SHARE else
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
        evidence += [fact("targets.min", low, 0.0), fact("targets.max", high, 1.0)]
        return Hit(
            title=f"Binary targets outside [0, 1]: the labels are {low:g} and {high:g}",
            evidence=evidence,
            explanation=("A binary cross-entropy reads each target as the probability of the positive class; "
                         f"{low:g} and {high:g} are not probabilities, so the loss is unbounded and pushes outputs to "
                         "an extreme instead of separating the two classes."),
            fix=f"Map the labels to 0 and 1 (y = (y == {high:g}).astype('float32')).")
    if kind == "categorical" and targets.get("structure") == "continuous" and units and units >= 2 \
            and (high > 1 or low < 0):
        evidence += [fact("targets.min", low, 0.0), fact("targets.max", high, 1.0),
                     fact("targets.row_sum_max", number(targets.get("row_sum_max")), 1.0)]
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
      explains=CAUSES)
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
            evidence=[fact("output.activation", str(activation)), fact("output.range", bounds),
                      fact("loss.name", name, f"predictions above {domain:g}")],
            explanation=(f"The {name} loss takes the logarithm of the prediction (plus one, for MSLE), so a "
                         f"prediction at or below {domain:g} gives NaN or an unbounded loss; a {activation} output "
                         "gets there as soon as training pushes it, and the run is lost."),
            fix=("Give the output a range inside the loss's domain: activation='exponential' or 'softplus' for a "
                 "Poisson loss (and start its bias at the log of the mean count), or a mean squared error on "
                 "log1p(y) instead of MSLE on a linear output."))
    if _loss(view).get("kind") not in _REGRESSION_KINDS or share is None or share < RANGE_SHARE:
        return None
    evidence = [fact("output.activation", str(activation)), fact("output.range", bounds),
                fact("targets.min", number(targets.get("min"))), fact("targets.max", number(targets.get("max"))),
                fact("range_floor (the loss of the targets clipped to the range)", floor),
                fact("range_floor_share (of what a model can learn, the share the range takes away)", share,
                      RANGE_SHARE)]
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
      explains=CAUSES)
def unscaled_targets(view: RunView) -> Hit | None:
    targets, output = contract_targets(view), _output(view)
    rms = number(targets.get("rms"))
    low, high = (output.get("range") or [None, None])[:2]
    if _loss(view).get("kind") not in _REGRESSION_KINDS or targets.get("structure") in _CLASS_STRUCTURES \
            or rms is None or rms <= TARGET_RMS or low is not None or high is not None:
        return None  # (integer targets under a regression loss are values: ratings, counts, prices)
    failed = underperformed(view)
    if failed is None:
        return None
    mean, std = number(targets.get("mean")) or 0.0, number(targets.get("std")) or 0.0
    return Hit(
        title=f"Regression targets far from unit scale: RMS {rms:.3g} (mean {mean:.3g}, sd {std:.3g})",
        evidence=[fact("targets.rms", rms, TARGET_RMS), fact("targets.mean", mean), fact("targets.std", std),
                  fact("output.activation", str(output.get("activation"))), failed],
        explanation=("The network's outputs start at about unit scale; targets this large make the first losses "
                     "and gradients enormous (the learning rate that suits the weights is far off for the last "
                     "layer and its bias), and an adaptive optimizer, moving each weight by about its learning "
                     "rate per step, needs thousands of steps just to reach the targets' scale."),
        fix=(f"Standardise the targets (y - {mean:.3g}) / {max(std, 1e-12):.3g} and scale predictions back, or "
             f"append keras.layers.Rescaling(scale={max(std, 1e-12):.3g}, offset={mean:.3g}) to the output so the "
             "network learns a unit-scale quantity."))



@fix("loss-target-mismatch", what="the loss of the targets' structure: binary cross-entropy for multi-hot targets "
                                  "(with a sigmoid output), a cross-entropy for a classifier trained by a "
                                  "regression loss", judged_by="task")
def _loss_target_mismatch(view):
    facts = contract(view)
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
    activation = (contract(view).get("output") or {}).get("activation")
    return Remedy({"op": "output_activation", "activation": "linear"}, "linear",
                  f"a linear output instead of {activation}")


# Standardised targets put the loss in other units: the task's error (1 - R^2) judges the fix. (A fixed
# Rescaling after the output keeps the loss's units but not its gradients' scale: under SGD it fixes nothing.)
@fix("unscaled-targets", what="the targets standardised with the training targets' mean and spread",
     judged_by="task")
def _unscaled_targets(view):
    return Remedy({"op": "standardize_targets"}, "standardised", "the targets standardised (training mean and "
                                                                 "spread)")

"""Rules about the layers' own settings, read from the model's description before the first step:
dropout rates, frozen layers, a path the gradient cannot take, BatchNormalization over too few values,
preprocessing never adapted, no nonlinearity anywhere.

A setting that is wrong whatever the run does (a preprocessing layer never adapted,
BatchNormalization over one value per channel, a stop_gradient ahead of trainable
weights) is a root cause in any run; one that can train (dropout of 0.8, a frozen
layer, no activations) is named only in a run that failed or learned little
(:func:`~diagnose.findings.outcome.underperformed`).
"""

from __future__ import annotations

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, RunView, all_layers, contract, number, series, steps_of, weight_matrices
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.graph import LINEAR, PASS_THROUGH, KerasGraph
from diagnose.findings.outcome import constant_output, failure, underperformed
from diagnose.findings.registry import Hit, rule
from diagnose.findings.rules_contract import (CAUSES, fact, labels_not_class_indices, loss_target_mismatch,
                                              output_range_mismatch, unscaled_targets)
from diagnose.findings.rules_inputs import zero_inputs

__all__ = ["excessive_dropout", "frozen_layers", "blocked_gradient", "batchnorm_small_batch",
           "unadapted_preprocessing", "missing_activation", "broken_contract"]

_DROPOUTS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
             "GaussianDropout")
_CONTAINERS = ("Sequential", "Functional", "Model", "TimeDistributed", "Bidirectional")
_RECURRENT_DROPOUT = ("dropout", "recurrent_dropout")

# A dropout rate above one half drops most of the units at every step (the id's own
# definition): the next layer sees more noise than signal (a rate r scales the survivors
# by 1 / (1 - r), a variance of r / (1 - r) per unit, above 1 past one half). Typical
# rates are 0.1-0.5, 0.5 the usual ceiling; 0.6-0.9 is what a keep probability
# (TensorFlow 1's keep_prob, commonly 0.5-0.9) passed as a rate gives. Named only in a run
# that failed or learned little.
DROPOUT_RATE = 0.5
# A model that is one affine map of its input sends the midpoint of two inputs to the
# midpoint of their outputs up to float32 rounding (~1e-6 of the outputs' distance after
# a few layers); any activation that bends, a ReLU switching or a tanh curving, moves some
# pair's midpoint by a percent or more. 1e-4 sits between the two, two decades from each.
AFFINE_DEVIATION = 1e-4
# BatchNormalization normalises each channel over the values a batch gives it (the batch
# size times the positions in an image or sequence). With 1 value the normalised output is
# exactly 0 (the layer outputs its beta whatever the input); with 2 it is exactly +-1 (only
# the sign of the pair's difference gets through). Both pass almost nothing of the input.
BN_MIN_VALUES = 3
# A lookup (TextVectorization, StringLookup) mapping half its tokens or more to the
# out-of-vocabulary index: its vocabulary does not fit the data it is given (adapted on
# other data, never adapted), and the model loses more than half its input. A vocabulary
# capped at the frequent words of the right data leaves a few percent to a fifth out.
OOV_SHARE = 0.5

def _rates(layer: dict) -> list[tuple[str, float]]:
    config = layer.get("config") or {}
    keys = ("rate",) if layer.get("class") in _DROPOUTS else _RECURRENT_DROPOUT
    return [(key, float(config[key])) for key in keys if number(config.get(key)) is not None]


@rule("excessive-dropout", kind="root-cause", severity="medium", figure="loss",
      what="a dropout rate so high that most units are dropped (above 0.5: a keep-probability passed as a rate), "
           "in a run that failed or learned little",
      explains=CAUSES)
def excessive_dropout(view: RunView) -> Hit | None:
    found = [(layer, key, rate) for layer in all_layers(view) for key, rate in _rates(layer)
             if rate > DROPOUT_RATE]
    if not found:
        return None
    failed = underperformed(view)
    if failed is None:
        return None
    evidence = [Evidence(f"{layer.get('class')} '{layer.get('name')}'.{key}", rate, DROPOUT_RATE, (0, 0))
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


@fix("excessive-dropout", what="dropout rates above 0.5 replaced by one less the rate (what a keep "
                               "probability passed as a rate meant)")
def _excessive_dropout(view):
    layers = {}
    for layer in all_layers(view):
        for key, rate in _rates(layer):
            if rate > DROPOUT_RATE:
                layers.setdefault(layer.get("name"), {})[key] = round(1.0 - rate, 4)
    if not layers:
        return None
    return Remedy({"op": "dropout_rate", "layers": layers}, "keep",
                  "dropout rates " + ", ".join(f"{n} {r}" for n, rates in layers.items() for r in rates.values()))


def _leaf(layer: dict) -> bool:
    return layer.get("class") not in _CONTAINERS


@rule("frozen-layers", kind="root-cause", severity="medium", figure="updates",
      what="weight layers left non-trainable (trainable=False) on the path to the output, in a run that failed or "
           "learned little (or with nothing left to train)",
      explains=CAUSES)
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
    evidence += [fact("frozen parameters", held), fact("trainable parameters", trainable)]
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


@fix("frozen-layers", what="the frozen layers trainable again")
def _frozen_layers(view):
    names = [layer.get("name") for layer in all_layers(view) if _leaf(layer)
             and (number(layer.get("frozen_params")) or 0) > 0]
    if not names:
        return None
    return Remedy({"op": "unfreeze", "layers": names}, "trainable", f"{', '.join(names)} trainable")


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
      explains=CAUSES + ("no-gradient",))
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
                     (f" The model has {len(stops)} stop_gradient op(s) on its graph." if stops else "") +
                     (_clipped_crossentropy(view) if len(blocked) == total and not stops else "")),
        fix=("Remove the stop_gradient (or the argmax / round / cast) between these layers and the loss, or replace "
             "it with a differentiable op (softmax for argmax); if the weights are meant to stay fixed, make them "
             "non-trainable."))


def _clipped_crossentropy(view: RunView) -> str:
    """Where every weight gets none under a cross-entropy on probabilities on JAX or PyTorch: Keras' own clip."""
    backend = (view.summary.get("versions") or {}).get("keras_backend")
    model = view.model or {}
    if backend not in ("jax", "torch") or model.get("loss_from_logits") is not False \
            or "crossentropy" not in str(model.get("loss", "")).lower():
        return ""
    name = {"jax": "JAX", "torch": "PyTorch"}[backend]
    return (f" Every weight matrix gets none here, and on {name} Keras computes a cross-entropy on probabilities "
            "from probabilities clipped into [1e-7, 1 - 1e-7]: a softmax or sigmoid saturated from the first "
            "step (inputs far from unit scale, weights initialised far too wide) sits on the clip and passes "
            "back nothing (on TensorFlow Keras computes it from the logits, and the same model moves): bring the "
            "inputs to unit scale, or the initialiser to its default, before looking for a cut path.")


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
      explains=CAUSES)
def batchnorm_small_batch(view: RunView) -> Hit | None:
    batch = number(contract(view).get("batch_size"))
    if batch is None:
        return None
    found, norms = [], [layer for layer in all_layers(view)
                        if layer.get("class") in ("BatchNormalization", "SyncBatchNormalization")]
    for layer in norms:
        values = _values_per_channel(layer, int(batch))
        if values is not None and values < BN_MIN_VALUES:
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
    evidence = [fact("batch_size", int(batch), "2 or more examples" if alone else None)]
    evidence += [Evidence(f"{layer.get('class')} '{layer.get('name')}' values per channel per batch", values,
                          None if alone else BN_MIN_VALUES, (0, 0)) for layer, values in found[:4]]
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


# As many updates as before: a batch 32 times larger over as many epochs would take 32 times fewer steps.
@fix("batchnorm-small-batch", what="a batch of 32 for one too small for BatchNormalization's statistics, over as "
                                   "many steps (the epochs scaled by the batch's growth)")
def _small_batch(view):
    batch = number(contract(view).get("batch_size"))
    if not batch or batch >= 32:
        return None
    factor = 32.0 / batch
    return Remedy({"op": "fit", "batch_size": 32, "epochs_factor": factor}, "batch 32",
                  f"batch size 32 (from {batch:g}) for {factor:g}x the epochs: as many steps")


@rule("unadapted-preprocessing", kind="root-cause", severity="high", figure="loss",
      what="preprocessing layers in the model with no state that fits the data: never adapted (Normalization "
           "without mean and variance, a lookup without a vocabulary), or a vocabulary missing most tokens",
      explains=CAUSES + ("unscaled-inputs",))
def unadapted_preprocessing(view: RunView) -> Hit | None:
    found = [layer for layer in all_layers(view) if layer.get("adapted") is False]
    evidence = [Evidence(f"{layer.get('class')} '{layer.get('name')}' adapted", False, True, (0, 0))
                for layer in found[:4]]
    names = {layer.get("name") for layer in found}
    misfits = []  # adapted, but on other data: most tokens out of the vocabulary
    for facts in contract(view).get("preprocessing") or []:
        share = number((facts or {}).get("oov_share"))
        if share is not None and share >= OOV_SHARE and facts.get("name") not in names:
            misfits.append(facts)
            evidence.append(Evidence(f"{facts.get('class')} '{facts.get('name')}' out-of-vocabulary share of the "
                                     "probe batch's tokens", share, OOV_SHARE, (0, 0)))
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


@fix("unadapted-preprocessing", what="the preprocessing layers adapted on the training inputs")
def _unadapted(view):
    names = [layer.get("name") for layer in all_layers(view) if layer.get("adapted") is False]
    names += [f.get("name") for f in contract(view).get("preprocessing") or []
              if (number((f or {}).get("oov_share")) or 0.0) >= OOV_SHARE and f.get("name") not in names]
    if not names:
        return None
    return Remedy({"op": "adapt", "layers": names}, "adapted", f"{', '.join(names)} adapted on the training data")


# Layers that apply no nonlinearity: a stack of them is one affine map whatever its depth.
_AFFINE = frozenset({"InputLayer", "Add", "Subtract", "Average", "Concatenate", "AveragePooling1D",
                     "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                     "GlobalAveragePooling3D", "BatchNormalization", "Rescaling", "ZeroPadding1D", "ZeroPadding2D",
                     "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "RepeatVector"}) | PASS_THROUGH


@rule("missing-activation", kind="root-cause", severity="medium", figure="loss",
      what="stacked Dense or Conv layers with no nonlinearity anywhere between input and output (one linear "
           "map, read from the layers or measured: the midpoint of two inputs maps to the midpoint of their "
           "outputs), in a run that failed or learned little",
      explains=CAUSES)
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
    if deviation is not None and deviation > AFFINE_DEVIATION:
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
                                 "midpoint, over their distance)", deviation, AFFINE_DEVIATION, (0, 0)))
    return Hit(
        title=(f"{len(hidden)} hidden layer(s) have no activation: the network is one linear map "
               f"({', '.join(hidden[:4])})"),
        evidence=evidence + [failed],
        explanation=("A composition of linear layers is itself linear: without an activation between them, "
                     "stacking Dense layers adds parameters but no capacity, and the model can fit only a linear "
                     "function of its input (a logistic or linear regression), whatever its depth."),
        fix=f"Give the hidden layers a nonlinearity: activation='relu' on {', '.join(hidden[:4])}.")



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


def broken_contract(view: RunView) -> list[str]:
    """The contract rules (of targets, output, loss and layers) that find their fault in this run (their ids)."""
    return [fn.spec.id for fn in (loss_target_mismatch, labels_not_class_indices, output_range_mismatch,
                                  unscaled_targets, excessive_dropout, frozen_layers, batchnorm_small_batch,
                                  unadapted_preprocessing, missing_activation) if fn(view) is not None]


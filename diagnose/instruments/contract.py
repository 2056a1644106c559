"""The model-task contract, read on the host before the first step: what the targets are, what the
output can produce, and what the compiled loss makes of the two.

``fit`` is given targets whose structure (class indices, one-hot, multi-hot, binary,
continuous, with their range and scale) has to fit the output layer's activation and
the loss: a categorical cross-entropy over multi-hot tags, labels divided by 255
under a sparse cross-entropy or a sigmoid head on targets in the thousands all train
without an error and never converge. :func:`task_contract` records the facts the
findings judge that by (``summary.json``'s ``contract``), from one read of up to
:data:`~diagnose.instruments.constants.MAX_ROWS` targets, the output of one forward pass on the probe batch, and
the compiled loss evaluated at constant predictions:

* ``constant_loss``: the loss of the best constant prediction under the compiled
  loss, whatever it is (MAE, Huber, hinge, a function of the user's own): what a
  model that learned nothing from its input scores, so a run stuck at chance is
  seen under any loss;
* ``range_floor``: the loss of predicting every target exactly where the output's
  range allows, and the nearest bound where it does not: what the output range
  alone costs, the least any model with that output can reach;
* ``affine``: whether the model, its output activation undone, is one affine map of
  its input at its initial weights (two more forward passes on the probe batch: the
  midpoint of two examples must map to the midpoint of their outputs), so a network
  without a nonlinearity is seen whatever its layers are.

Nothing here decides whether the contract is broken: the rules do
(:mod:`diagnose.findings.rules_contract`), from these facts.
"""

from __future__ import annotations

import time

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.constants import (LOSS_DOMAINS, _rows, best_constant, loss_of_constant, output_range,
                                            range_floor)
from diagnose.instruments.input_facts import affine_facts, embedding_facts, first_weights_facts, preprocessing_facts
from diagnose.instruments.targets import of_output, output_names, per_output
from diagnose.instruments.taps import activation_name

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["task_contract", "target_facts", "output_facts", "output_activation", "loss_function", "loss_callable",
           "output_stats", "target_of"]

# Values that differ from an integer by less than this are integers (float32 labels).
INTEGER_TOL = 1e-4
# Rows whose values sum to 1 within this are distributions (float32 one-hot or soft labels).
SUM_TOL = 1e-3

# Layers that pass their input on unchanged in value range (looking through them finds the output's activation).
_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                 "AlphaDropout", "Reshape", "Permute", "Flatten", "Identity", "ActivityRegularization")
def output_activation(model, index: int = 0) -> str | None:
    """The activation of the layer producing the model's output (the ``index``-th of several), looking through
    Dropout and the like.

    "linear" for a layer with no activation, None where the output is not a layer's
    we can read (a subclassed model, an op).
    """
    outputs = getattr(model, "outputs", None)
    if not outputs or index >= len(outputs):
        return None
    history = getattr(outputs[index], "_keras_history", None)
    layer = getattr(history, "operation", None)
    for _ in range(16):
        if layer is None or type(layer).__name__ not in _PASS_THROUGH:
            break
        node = layer._inbound_nodes[0] if getattr(layer, "_inbound_nodes", None) else None
        inputs = node.input_tensors if node is not None else []
        layer = inputs[0]._keras_history.operation if len(inputs) == 1 and hasattr(inputs[0], "_keras_history") \
            else None
    if not isinstance(layer, keras.layers.Layer):
        return None
    name = activation_name(layer)
    if name is None and hasattr(layer, "activation"):
        return "linear"
    return name if name is not None else None


def loss_function(model, index: int | None = None):
    """The compiled loss (of the ``index``-th output, for a model with several) as a function of
    (y_true, y_pred) giving one value per example, or None."""
    config = getattr(model, "_compile_config", None)
    loss = config.config.get("loss") if config is not None else getattr(model, "loss", None)
    if index is not None:
        names = output_names(model)
        loss = of_output(loss, index, names[index] if index < len(names) else None)
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    return loss_callable(loss)


def loss_callable(loss):
    """One loss (a name, a Loss, a function) as a function giving one value per example, or None."""
    if loss is None:
        return None
    try:
        if isinstance(loss, str):
            return keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            return loss.call  # unreduced: one value per example
        return loss if callable(loss) else None
    except (ValueError, TypeError):
        return None


def target_facts(y, units: int | None, ignore: int | None = None) -> dict:
    """What the targets are, from up to MAX_ROWS of them.

    Args:
        y: the training targets (an array).
        units: the output's last dimension (classes for a classifier), or None.
        ignore: a label the loss leaves out (its ``ignore_class``): no target, so not counted
            (its share is ``ignored_share``).

    Returns:
        ``structure`` ("class-indices", "binary", "one-hot", "multi-hot", "soft-labels",
        "continuous" or "text") with the facts it rests on: value range and moments,
        the share of values that are not integers, of rows with several ones
        (multi-hot), the classes seen and the largest class's share.
    """
    y = np.asarray(y)
    if y.dtype.kind in "OUS":
        return {"rows": int(len(y)), "dtype": str(y.dtype), "structure": "text"}
    rows = _rows(y)
    v = rows.astype(np.float64)
    finite = np.isfinite(v)
    counted = finite if ignore is None else finite & (v != ignore)
    values = v[counted]
    facts = {"rows": int(len(y)), "read": int(len(rows)), "shape": [int(d) for d in y.shape[1:]],
             "dtype": str(y.dtype), "non_finite_share": float(1.0 - finite.mean()) if v.size else 0.0}
    if ignore is not None:
        facts["ignored_share"] = float(1.0 - counted.mean() / max(finite.mean(), 1e-12)) if v.size else 0.0
    if not values.size:
        return facts | {"structure": "unknown"}
    fractional = np.abs(values - np.round(values)) > INTEGER_TOL
    facts.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()),
                 std=float(values.std()), rms=float(np.sqrt(np.mean(values ** 2))),
                 non_integer_share=float(fractional.mean()), distinct=int(min(len(np.unique(values[:65536])),
                                                                               1001)))
    binary_valued = bool(np.all((values == 0) | (values == 1)))
    over_units = units is not None and units >= 2 and v.ndim >= 2 and v.shape[-1] == units
    labels = None
    if over_units:  # one row of scores per example (and position): one-hot, multi-hot or soft labels
        table = v.reshape(-1, units)
        table = table[np.all(np.isfinite(table), axis=1)]
        ones, sums = (table == 1).sum(axis=1), table.sum(axis=1)
        facts.update(row_sum_min=float(sums.min()) if len(sums) else None,
                     row_sum_max=float(sums.max()) if len(sums) else None,
                     multi_hot_share=float(np.mean(ones >= 2)) if binary_valued and len(ones) else 0.0)
        if binary_valued and facts["multi_hot_share"] > 0:
            structure = "multi-hot"
        elif binary_valued:
            structure = "one-hot"
            labels = table.argmax(axis=1)
        elif len(sums) and np.all(np.abs(sums - 1) <= SUM_TOL) and values.min() >= 0:
            structure = "soft-labels"
            labels = table.argmax(axis=1)
        else:
            structure = "continuous"
    elif binary_valued:
        structure = "binary"
        labels = values.astype(np.int64)
    elif not fractional.any() and values.min() >= 0 and (facts["distinct"] <= 1000):
        structure = "class-indices"
        labels = values.astype(np.int64)
    else:
        structure = "continuous"
    facts["structure"] = structure
    if labels is not None and len(labels):
        counts = np.bincount(labels[labels >= 0])
        facts["classes_seen"] = int(np.count_nonzero(counts))
        facts["majority_share"] = float(counts.max() / counts.sum())
        facts["majority_class"] = int(counts.argmax())
    if units is not None:
        facts["out_of_units_share"] = float(np.mean((values < 0) | (values >= max(units, 2))))
    return facts


def output_facts(model, x, index: int | None = None) -> dict:
    """The model's outputs (the ``index``-th of several) on a batch at its initial weights (one forward pass,
    no dropout); see :func:`output_stats`."""
    try:
        out = model(x, training=False)
        if index is not None:
            out = keras.tree.flatten(out)[index]
        out = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
    except Exception:  # noqa: BLE001 - a forward pass we cannot take says nothing
        return {}
    return output_stats(out)


def output_stats(out: np.ndarray) -> dict:
    """What an output produces on a batch.

    Returns:
        ``min``, ``max``, the share of outputs outside [0, 1], and for several units the
        smallest and largest sum over a row: whether the output is a distribution, by
        what it produces, whatever layer made it.
    """
    out = out[np.isfinite(out)] if out.ndim == 0 else out
    if not out.size:
        return {}
    facts = {"min": float(np.nanmin(out)), "max": float(np.nanmax(out)),
             "outside_unit_share": float(np.mean((out < 0) | (out > 1)))}
    if out.ndim >= 2 and out.shape[-1] >= 2:
        sums = out.reshape(-1, out.shape[-1]).sum(axis=1)
        facts.update(row_sum_min=float(np.nanmin(sums)), row_sum_max=float(np.nanmax(sums)))
    return facts


def task_contract(model, loss_info, y=None, probe_x=None, batch_size: int | None = None,
                  epochs: int | None = None, steps_per_epoch: int | None = None, y_valid=None,
                  x_train=None, probe_outputs=None) -> dict:
    """The facts of the model-task contract for summary.json (see the module docstring).

    A model with several outputs gets the facts of each output (its loss, output layer,
    targets and constant's loss) in ``outputs``, a list in the model's output order with
    each output's ``name`` and loss ``weight``; ``constant_loss`` is then the weighted
    sum of theirs, what the whole loss scores for a model that learned nothing.

    Args:
        model: the user's built, compiled model.
        loss_info: its :class:`~diagnose.instruments.targets.LossInfo`.
        y: training targets (an array; for several outputs a list in their order or a
            dict by output name), else None.
        probe_x: a batch of inputs for :func:`output_facts`, else None.
        batch_size, epochs, steps_per_epoch: as ``fit`` runs them, where known.
        y_valid: held-out targets, for ``constant_loss_valid``: the training targets' best
            constant scored on them (above ``constant_loss`` where the data drifts).
        x_train: a batch of training inputs, for what the layers make of the inputs their
            weights train on (preprocessing, padding, the first weights' scale); else ``probe_x``.
        probe_outputs: the model's outputs on ``probe_x`` and on ``probe_x`` rolled by one example
            (a pair, each in the model's output structure), where the probe's compiled pass took
            them at these weights; else None, and they are computed here (eager passes).
    """
    start = time.perf_counter()
    facts: dict = {"batch_size": batch_size, "epochs": epochs, "steps_per_epoch": steps_per_epoch}
    at_start = None
    if probe_x is not None:
        try:
            out = probe_outputs[0] if probe_outputs is not None else model(probe_x, training=False)
            at_start = [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in keras.tree.flatten(out)]
        except Exception:  # noqa: BLE001 - a forward pass we cannot take says nothing
            at_start = None
    if loss_info.several:
        facts["loss"] = {"name": loss_info.name, "kind": loss_info.kind, "from_logits": False, "domain_low": None}
        names = output_names(model)
        outputs = []
        for index, (name, info, weight) in enumerate(per_output(model)):
            if info is None:  # an output compiled without a loss: nothing trains it
                continue
            each = _output_contract(model, index, info, loss_function(model, index), target_of(y, name, index),
                                    target_of(y_valid, name, index),
                                    at_start[index] if at_start is not None and index < len(at_start) else None)
            outputs.append({"name": names[index], "weight": weight, **each})
        facts["outputs"] = outputs
        for key in ("constant_loss", "constant_loss_valid"):
            values = [(o["weight"], o.get(key, o.get("constant_loss"))) for o in outputs]
            if outputs and all(v is not None for _, v in values):
                facts[key] = float(sum(w * v for w, v in values))
    else:
        facts.update(_output_contract(model, 0, loss_info, loss_function(model), y, y_valid,
                                      at_start[0] if at_start else None))
    if at_start is not None:
        facts["affine"] = affine_facts(model, probe_x, at_start,
                                       [output_activation(model, k) for k in range(len(at_start))],
                                       rolled=None if probe_outputs is None else keras.tree.flatten(probe_outputs[1]))
    inputs_x = x_train if x_train is not None else probe_x
    if inputs_x is not None:
        facts["preprocessing"] = preprocessing_facts(model, inputs_x)
        facts["embeddings"] = embedding_facts(model, inputs_x)
        facts["first_weights"] = first_weights_facts(model, inputs_x)
    facts["seconds"] = time.perf_counter() - start
    return facts


def target_of(y, name: str, index: int):
    """One output's targets (an array) from what fit was given for several: a dict by output name, or a list in
    order; None where there are none."""
    y = of_output(y, index, name)
    return y if y is not None and hasattr(y, "shape") else None


def _output_contract(model, index: int, loss_info, fn, y, y_valid, at_start) -> dict:
    """The contract of one output: its loss, its layer's activation and range, what it produces at the start,
    what its targets are, and the loss of the best constant prediction and of its range."""
    outputs = getattr(model, "outputs", None)
    shape = list(outputs[index].shape[1:]) if outputs and index < len(outputs) else None
    units = shape[-1] if shape else None
    activation = output_activation(model, index)
    low, high = output_range(activation)
    facts: dict = {"loss": {"name": loss_info.name, "kind": loss_info.kind, "from_logits": loss_info.from_logits,
                            "domain_low": LOSS_DOMAINS.get(loss_info.name), "ignore_class": loss_info.ignore_class},
                   "output": {"activation": activation, "units": units, "shape": shape, "range": [low, high]}}
    if at_start is not None:
        facts["output"]["at_start"] = output_stats(at_start)
    if y is None or not hasattr(y, "shape"):
        return facts
    targets = np.asarray(y)
    facts["targets"] = target_facts(targets, units, ignore=loss_info.ignore_class)
    if shape is None or not all(isinstance(d, int) for d in shape) or fn is None \
            or facts["targets"].get("structure") == "text":
        return facts
    with tf.device("/cpu:0"):
        best = best_constant(fn, targets, shape, loss_name=loss_info.name, kind=loss_info.kind,
                             from_logits=loss_info.from_logits, activation=activation)
        constant = None if best is None else best[0]
        floor = range_floor(fn, targets, shape, activation) if loss_info.kind in ("regression", "other") else None
        if best is not None and y_valid is not None and hasattr(y_valid, "shape"):
            facts["constant_loss_valid"] = loss_of_constant(fn, np.asarray(y_valid), shape, best[1])
    facts["constant_loss"] = constant
    if best is not None:  # the constant itself, one value per unit: what a model that learned nothing predicts
        facts["constant_prediction"] = [float(v) for v in np.asarray(best[1], np.float64).reshape(-1)]
    facts["range_floor"] = None if floor is None else floor[0]
    if floor is not None and constant is not None and constant > floor[1]:
        # Of what a model can learn (from a constant's loss down to exact predictions' loss), the
        # share the range takes away.
        facts["range_floor_share"] = max(floor[0] - floor[1], 0.0) / (constant - floor[1])
    return facts


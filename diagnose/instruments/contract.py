"""The model-task contract, read on the host before the first step: what the targets are, what the
output can produce, and what the compiled loss makes of the two.

``fit`` is given targets whose structure (class indices, one-hot, multi-hot, binary,
continuous, with their range and scale) has to fit the output layer's activation and
the loss: a categorical cross-entropy over multi-hot tags, labels divided by 255
under a sparse cross-entropy or a sigmoid head on targets in the thousands all train
without an error and never converge. :func:`task_contract` records the facts the
findings judge that by (``summary.json``'s ``contract``), from one read of up to
:data:`MAX_ROWS` targets, the output of one forward pass on the probe batch, and
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

import functools
import hashlib
import math
import time
from collections import OrderedDict

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.input_facts import affine_facts, embedding_facts, first_weights_facts, preprocessing_facts
from diagnose.instruments.targets import of_output, output_names, per_output
from diagnose.instruments.taps import activation_name

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["task_contract", "target_facts", "output_facts", "constant_loss", "range_floor", "output_range",
           "output_activation", "loss_function", "loss_callable", "output_stats", "target_of", "task_error",
           "constant_task_error", "best_constant", "loss_of_constant", "MAX_ROWS", "LOSS_DOMAINS"]

# Targets read: shares of rows (multi-hot, fractional labels) to about 1/sqrt(4096) = 1.6%
# and a constant loss to a fraction of a percent, in milliseconds however large the data.
MAX_ROWS = 4096
# ... and at most this many values (a segmentation mask is rows x pixels).
MAX_VALUES = 1 << 20
# Results of the data's facts kept for a fit of the same targets again (a notebook's next fit, a study's seeds).
_MEMO_SIZE = 16
# Values that differ from an integer by less than this are integers (float32 labels).
INTEGER_TOL = 1e-4
# Rows whose values sum to 1 within this are distributions (float32 one-hot or soft labels).
SUM_TOL = 1e-3

# The range of each output activation (None: unbounded on that side).
_RANGES = {
    "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "log_softmax": (None, 0.0),
    "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0), "soft_sign": (-1.0, 1.0), "softsign": (-1.0, 1.0),
    "relu": (0.0, None), "relu6": (0.0, 6.0), "softplus": (0.0, None), "exponential": (0.0, None),
    "elu": (-1.0, None), "selu": (-1.7580993408473766, None), "celu": (-1.0, None),
}
# Layers that pass their input on unchanged in value range (looking through them finds the output's activation).
_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                 "AlphaDropout", "Reshape", "Permute", "Flatten", "Identity", "ActivityRegularization")
# Losses that read raw margins or values however the output is squashed.
_RAW = ("hinge", "squaredhinge", "categoricalhinge")
# Regression losses defined only for some predictions: the log of the prediction (Poisson) or of
# one plus it (MSLE) is NaN below these bounds.
LOSS_DOMAINS = {"poisson": 0.0, "meansquaredlogarithmicerror": -1.0, "msle": -1.0}


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


def output_range(activation: str | None) -> tuple[float | None, float | None]:
    """What an output activation can produce: (low, high), None where unbounded (or unknown)."""
    return _RANGES.get(str(activation), (None, None))


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


def _rows(y: np.ndarray) -> np.ndarray:
    """Up to MAX_ROWS rows (and MAX_VALUES values) spread evenly over ``y``."""
    per_row = max(1, int(np.prod(y.shape[1:])))
    keep = max(1, min(len(y), MAX_ROWS, MAX_VALUES // per_row))
    return y[np.unique(np.linspace(0, len(y) - 1, keep).astype(int))] if keep < len(y) else y


def _memoized(compute):
    """``compute`` with its results kept for the same arguments: what the targets give does not change with the
    model's weights, and a fit of the same data again (each round of a study, a notebook's next fit) would
    compute it again (an L-BFGS search in ~50 eager calls of the loss: ~5 ms a fit).

    The targets (the second argument) are known by their shape, dtype and a hash of the rows
    :func:`_rows` reads of them, all that the functions read; another array by its shape, dtype and
    values; other arguments by equality (a loss function by identity). Arguments that are none of
    these (an object array, a tensor) are computed every time.
    """
    memo: OrderedDict = OrderedDict()

    def key_of(value, targets: bool = False):
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "O":
                raise TypeError("object array")
            read = np.ascontiguousarray(_rows(value) if targets else value)
            return "array", value.shape, value.dtype.str, hashlib.blake2b(read.tobytes(), digest_size=16).digest()
        if isinstance(value, list):
            return tuple(key_of(v) for v in value)
        hash(value)
        return value

    @functools.wraps(compute)
    def memoized(*args, **kwargs):
        try:
            key = (tuple(key_of(a, targets=i == 1) for i, a in enumerate(args)),
                   tuple(sorted((k, key_of(v)) for k, v in kwargs.items())))
        except TypeError:
            return compute(*args, **kwargs)
        if key in memo:
            memo.move_to_end(key)
        else:
            memo[key] = compute(*args, **kwargs)
            while len(memo) > _MEMO_SIZE:
                memo.popitem(last=False)
        found = memo[key]  # arrays handed out as copies: a caller's change never reaches the memo
        return tuple(np.copy(v) if isinstance(v, np.ndarray) else v for v in found) if isinstance(found, tuple) \
            else found

    memoized.clear = memo.clear
    return memoized


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


def _constant_prediction(z, domain: str, like):
    """The constant ``z`` (one value per output unit) mapped to the loss's domain and broadcast like ``like``."""
    if domain == "softmax":
        z = tf.nn.softmax(z)
    elif domain == "sigmoid":
        z = tf.sigmoid(z)
    elif domain == "tanh":
        z = tf.tanh(z)
    elif domain == "positive":
        z = tf.nn.softplus(z)
    return tf.broadcast_to(z, like)


def _domain(loss_name: str, kind: str, from_logits: bool, activation: str | None) -> str:
    """Where the loss's predictions live: raw values, or a squashed range."""
    if loss_name in LOSS_DOMAINS:
        return "positive"  # a constant inside the loss's domain
    if from_logits or loss_name in _RAW or kind == "regression":
        return "raw"
    if kind in ("categorical", "sparse"):
        return "softmax"
    if kind == "binary":
        return "sigmoid"
    # A loss of the user's own: the range the output can produce.
    low, high = output_range(activation)
    if (low, high) == (0.0, 1.0):
        return "softmax" if activation == "softmax" else "sigmoid"
    if (low, high) == (-1.0, 1.0):
        return "tanh"
    if low is not None and low >= 0 and high is None:
        return "positive"
    return "raw"


def _per_example_mean(fn, y, pred) -> float:
    values = fn(y, pred)
    return float(tf.reduce_mean(tf.cast(values, tf.float64)))


def constant_loss(fn, y, pred_shape, *, loss_name: str, kind: str, from_logits: bool,
                  activation: str | None) -> float | None:
    """The loss of the best constant prediction (one value per output unit) under the compiled loss.

    A mean squared error has the targets' per-unit variance, a mean absolute error their
    mean distance to the median (closed forms); any other loss is minimised over the
    constant numerically (L-BFGS on the loss's own gradient). None where the loss cannot
    be evaluated on these targets.

    Args:
        fn: the loss, one value per example (:func:`loss_function`).
        y: targets (an array; up to MAX_ROWS rows are used).
        pred_shape: the output's shape without the batch axis.
        loss_name, kind, from_logits: the compiled loss (:class:`~diagnose.instruments.targets.LossInfo`).
        activation: the output layer's activation (the range a loss of the user's own reads).
    """
    found = best_constant(fn, y, pred_shape, loss_name=loss_name, kind=kind, from_logits=from_logits,
                          activation=activation)
    return None if found is None else found[0]


# The loss's gradient in the constant's logits at the cross-entropy's known optimum: float32 rounding
# of the class shares (~1e-7) and Keras' clipping of probabilities at 1e-7 leave it far below this.
_AT_OPTIMUM = 1e-5


def _cross_entropy_optimum(v: np.ndarray, shape: tuple, domain: str, kind: str) -> np.ndarray | None:
    """The logits of a cross-entropy's best constant: the log class shares (softmax), each unit's log-odds of
    a one (sigmoid); None where the targets are not labels of that form (an ignored class id, a shape
    the output does not have)."""
    units = shape[-1]
    if not v.size or not np.all(np.isfinite(v)):
        return None
    if domain == "softmax":
        if kind == "sparse" and v.size * units == int(np.prod(shape)) and np.all(v == np.round(v)) \
                and v.min() >= 0 and v.max() < units:
            shares = np.bincount(v.astype(np.int64).ravel(), minlength=units) / v.size
        elif v.shape == shape and v.min() >= 0:
            shares = v.reshape(-1, units).mean(axis=0)
            shares = shares / shares.sum() if shares.sum() > 0 else shares
        else:
            return None
        return np.log(np.clip(shares, 1e-7, None))
    if domain == "sigmoid" and v.size == int(np.prod(shape)) and v.min() >= 0 and v.max() <= 1:
        share = np.clip(v.reshape(-1, units).mean(axis=0), 1e-7, 1 - 1e-7)
        return np.log(share) - np.log1p(-share)
    return None


@_memoized
def best_constant(fn, y, pred_shape, *, loss_name: str, kind: str, from_logits: bool,
                  activation: str | None) -> tuple[float, np.ndarray] | None:
    """:func:`constant_loss` and the constant itself (one prediction per output unit), or None.

    A cross-entropy's best constant is known (the class shares, each unit's share of ones):
    the search starts there and ends there when the loss's own gradient says so (a loss
    with label smoothing or a function of the user's own moves on from it)."""
    y = _rows(np.asarray(y))
    if y.dtype.kind in "OUS" or not len(y) or fn is None:
        return None
    shape = (len(y), *[int(d) for d in pred_shape])
    if any(d is None or d <= 0 for d in shape):
        return None
    v = y.astype(np.float64)
    if loss_name in ("meansquarederror", "mse") and v.shape == shape:
        table = v.reshape(-1, shape[-1])
        return float(np.mean(np.var(table, axis=0))), table.mean(axis=0)
    if loss_name in ("meanabsoluteerror", "mae") and v.shape == shape:
        table = v.reshape(-1, shape[-1])
        return float(np.mean(np.abs(table - np.median(table, axis=0)))), np.median(table, axis=0)
    domain = _domain(loss_name, kind, from_logits, activation)
    y_t = tf.constant(y.astype(np.float32) if y.dtype.kind == "f" else y)  # predictions are float32
    units = shape[-1]
    start = np.zeros(units)
    if domain == "raw" and v.size and v.shape[-1:] == (units,):
        start = v.reshape(-1, units).mean(axis=0)
    elif domain == "raw" and v.size:
        start = np.full(units, float(np.mean(v)))
    known = _cross_entropy_optimum(v, shape, domain, kind)
    start = start if known is None else known

    def value_and_grad(z):
        z = tf.constant(z, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = tf.reduce_mean(tf.cast(fn(y_t, _constant_prediction(z, domain, shape)), tf.float32))
        grad = tape.gradient(value, z)
        grad = np.zeros(units) if grad is None else grad.numpy().astype(np.float64)
        return float(value), np.nan_to_num(grad)

    try:
        first, slope = value_and_grad(start)
        if not math.isfinite(first):
            return None
        if known is not None and float(np.max(np.abs(slope))) <= _AT_OPTIMUM:
            return first, np.asarray(_constant_prediction(tf.constant(start, tf.float32), domain, (units,)),
                                     np.float64)
        from scipy.optimize import minimize

        found = minimize(value_and_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": 100})
        z = found.x if math.isfinite(float(found.fun)) and float(found.fun) <= first else start
        prediction = np.asarray(_constant_prediction(tf.constant(z, tf.float32), domain, (units,)), np.float64)
        return min(float(found.fun), first) if math.isfinite(float(found.fun)) else first, prediction
    except Exception:  # noqa: BLE001 - a loss that cannot take a constant (shapes, dtypes) has no baseline
        return None


@_memoized
def loss_of_constant(fn, y, pred_shape, prediction) -> float | None:
    """The compiled loss of one constant prediction (per output unit) on the targets ``y``, per example:
    on held-out targets, what a model that learned nothing from its training targets scores there."""
    y = _rows(np.asarray(y))
    if fn is None or y.dtype.kind in "OUS" or not len(y):
        return None
    shape = (len(y), *[int(d) for d in pred_shape])
    try:
        pred = tf.broadcast_to(tf.constant(np.asarray(prediction, np.float32)), shape)
        value = _per_example_mean(fn, tf.constant(y.astype(np.float32) if y.dtype.kind == "f" else y), pred)
    except Exception:  # noqa: BLE001
        return None
    return value if math.isfinite(value) else None


@_memoized
def range_floor(fn, y, pred_shape, activation: str | None) -> tuple[float, float] | None:
    """What the output's range alone costs: ``(clipped, exact)``, the loss of predicting each target exactly
    where the output's range allows and the nearest bound elsewhere, and of predicting every target exactly
    (0 for a squared or absolute error; not for a Poisson loss, whose value at the target is not 0).

    None where the range is unbounded on both sides, or the targets do not have the
    output's shape (a classifier's labels).
    """
    low, high = output_range(activation)
    y = _rows(np.asarray(y))
    if (low is None and high is None) or fn is None or y.dtype.kind in "OUS":
        return None
    shape = (len(y), *[int(d) for d in pred_shape])
    if y.shape != shape:
        return None
    exact = y.astype(np.float32)
    clipped = np.clip(exact, -np.inf if low is None else low, np.inf if high is None else high)
    try:
        values = [_per_example_mean(fn, tf.constant(exact), tf.constant(p)) for p in (clipped, exact)]
    except Exception:  # noqa: BLE001
        return None
    return tuple(values) if all(math.isfinite(v) for v in values) else None


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


def constant_task_error(y, facts: dict) -> float | None:
    """The :func:`task_error` of the training targets' best constant (``facts["constant_prediction"]``) on the
    targets ``y`` of another batch: 1 for continuous targets at the training targets' mean, more where ``y``
    drifted from them (a series' later values, held out). None where it is not known."""
    constant = facts.get("constant_prediction")
    if not constant or y is None or not hasattr(y, "shape") or not len(y):
        return None
    pred = np.broadcast_to(np.asarray(constant, np.float64).reshape(1, -1), (len(y), len(constant)))
    return task_error(pred, y, facts)


def _balanced_error(predicted: np.ndarray, labels: np.ndarray) -> float | None:
    """The mean over the classes present of the share of their examples predicted as another class."""
    classes = np.unique(labels)
    if not len(classes):
        return None
    return float(np.mean([np.mean(predicted[labels == c] != c) for c in classes]))


def task_error(pred, y, facts: dict) -> float | None:
    """How wrong the predictions are by what the targets are, whatever the compiled loss and metrics.

    For a classifier, the balanced error: per class, the share of its examples predicted
    as another class (the largest output, or the output past 0.5 for a probability, past
    0 for a logit), averaged over the classes present; for multi-hot targets the same per
    tag, averaged over tags. A model that always predicts one class scores 1 - 1/classes
    (0.5 for two). For continuous targets, 1 - R^2: the squared error over the targets'
    variance (0 perfect, 1 a constant at their mean). Comparable between a model and the
    same model with another loss, which is how a proof judges a fix that changes the loss.
    None for a loss of the user's own, whose output (a distance, a score) has no known
    relation to the targets.

    Args:
        pred: the model's outputs on a batch (training=False).
        y: that batch's targets.
        facts: the contract (:func:`task_contract`): the targets' structure, the output and the loss.
    """
    targets, output, loss = facts.get("targets") or {}, facts.get("output") or {}, facts.get("loss") or {}
    structure, units = targets.get("structure"), output.get("units")
    if loss.get("kind") not in ("categorical", "sparse", "binary", "regression"):
        return None  # a loss of the user's own: what its output means (a distance, a score) is not known
    try:
        p = np.asarray(pred, np.float64)
        t = np.asarray(y)
    except (TypeError, ValueError):
        return None
    if t.dtype.kind in "OUS" or not p.size or not t.size:
        return None
    t = t.astype(np.float64)
    if loss.get("kind") == "regression":  # values, whatever their structure (integer ratings, counts)
        structure = "continuous"
    logits = bool(loss.get("from_logits")) or output.get("activation") in ("linear", None) and \
        loss.get("kind") in ("binary", "categorical", "sparse")
    cut = 0.0 if logits else 0.5
    try:
        if structure == "multi-hot" or (structure == "binary" and units == 1) or \
                (loss.get("kind") == "binary" and units == 1 and structure in ("binary", "class-indices")):
            p, t = p.reshape(-1, units or 1), t.reshape(-1, units or 1)
            errors = [_balanced_error((p[:, j] > cut).astype(int), (t[:, j] > 0.5).astype(int))
                      for j in range(p.shape[1])]
            errors = [e for e in errors if e is not None]
            return float(np.mean(errors)) if errors else None
        if structure in ("class-indices", "binary", "one-hot", "soft-labels") and units and units >= 2:
            p = p.reshape(-1, units)
            labels = t.reshape(-1, units).argmax(axis=1) if t.shape[-1:] == (units,) and t.ndim == p.ndim + 0 \
                and structure in ("one-hot", "soft-labels") else t.reshape(-1).astype(np.int64)
            if len(labels) != len(p):
                return None
            kept = labels != loss.get("ignore_class") if loss.get("ignore_class") is not None else slice(None)
            return _balanced_error(p.argmax(axis=1)[kept], labels[kept])
        if structure == "continuous" and p.size == t.size:
            variance = float(np.var(t))
            return float(np.mean((p.reshape(-1) - t.reshape(-1)) ** 2) / variance) if variance > 0 else None
    except (ValueError, IndexError):
        return None
    return None

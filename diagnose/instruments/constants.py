"""What a model that learned nothing scores: the best constant prediction under the compiled loss, and what
an output's range alone costs (the contract's ``constant_loss`` and ``range_floor``).

Both read the targets once (up to :data:`MAX_ROWS` rows, spread over them) and keep
their results for the same targets (:func:`_memoized`): they do not change with the
model's weights, and a study's next seed or a notebook's next fit asks again.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict

import numpy as np

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

__all__ = ["constant_loss", "best_constant", "loss_of_constant", "range_floor", "output_range", "MAX_ROWS",
           "MAX_VALUES", "LOSS_DOMAINS"]

# Targets read: shares of rows (multi-hot, fractional labels) to about 1/sqrt(4096) = 1.6%
# and a constant loss to a fraction of a percent, in milliseconds however large the data.
MAX_ROWS = 4096
# ... and at most this many values (a segmentation mask is rows x pixels).
MAX_VALUES = 1 << 20
# Results of the data's facts kept for a fit of the same targets again (a notebook's next fit, a study's seeds).
_MEMO_SIZE = 16

# The range of each output activation (None: unbounded on that side).
_RANGES = {
    "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "log_softmax": (None, 0.0),
    "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0), "soft_sign": (-1.0, 1.0), "softsign": (-1.0, 1.0),
    "relu": (0.0, None), "relu6": (0.0, 6.0), "softplus": (0.0, None), "exponential": (0.0, None),
    "elu": (-1.0, None), "selu": (-1.7580993408473766, None), "celu": (-1.0, None),
}

# Losses that read raw margins or values however the output is squashed.
_RAW = ("hinge", "squaredhinge", "categoricalhinge")
# Regression losses defined only for some predictions: the log of the prediction (Poisson) or of
# one plus it (MSLE) is NaN below these bounds.
LOSS_DOMAINS = {"poisson": 0.0, "meansquaredlogarithmicerror": -1.0, "msle": -1.0}

def output_range(activation: str | None) -> tuple[float | None, float | None]:
    """What an output activation can produce: (low, high), None where unbounded (or unknown)."""
    return _RANGES.get(str(activation), (None, None))

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

"""What a study's data function returns, as ``model.fit`` arguments, and the loss a run is judged by.

A data function takes the run's settings (or nothing) and returns either

* ``(train, valid)``: each an ``(x, y)`` or ``(x, y, sample_weight)`` tuple of arrays
  (``x`` may be a list or a dict of arrays for several inputs) or a batched
  ``tf.data.Dataset`` of such tuples; or
* a dict of ``model.fit`` keyword arguments: ``x``, ``y``, ``validation_data`` and any
  of :data:`FIT_KEYS`, plus an optional ``probe``, a fixed ``(x, y)`` batch for the
  ignores-input probe (as ``diagnose.Monitor(probe=...)``).

Validation data is required: it is what a run's outcome is measured on.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from diagnose.errors import ConfigError

__all__ = ["FIT_KEYS", "call_user", "fit_arguments", "validation_loss", "loss_step"]

# model.fit keyword arguments a data function or a spec's [fit] may give.
FIT_KEYS = frozenset({"x", "y", "validation_data", "sample_weight", "class_weight", "batch_size", "epochs",
                      "steps_per_epoch", "validation_batch_size", "shuffle"})
# Keras' own default batch size, used when neither the data nor [fit] gives one.
DEFAULT_BATCH = 32


def call_user(fn, settings: dict, what: str):
    """Calls a builder or data function with the settings, or with nothing if it takes no argument."""
    try:
        takes = len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        takes = True
    return fn(dict(settings)) if takes else fn()


def fit_arguments(result, fit: dict, ref: str) -> dict:
    """The data function's ``result`` as ``model.fit`` keyword arguments, ``fit`` (the spec's) over them.

    Raises:
        ConfigError: the result has none of the shapes above, or no validation data.
    """
    import tensorflow as tf

    if isinstance(result, dict):
        unknown = sorted(set(result) - FIT_KEYS - {"probe"})
        if unknown:
            raise ConfigError(f"data function '{ref}' returned unknown keys {unknown}; valid keys: "
                              f"{', '.join(sorted(FIT_KEYS | {'probe'}))}")
        kwargs = dict(result)
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        train, valid = result
        if isinstance(train, tf.data.Dataset):
            kwargs = {"x": train}
        elif isinstance(train, (tuple, list)) and len(train) in (2, 3):
            kwargs = {"x": train[0], "y": train[1]}
            if len(train) == 3:
                kwargs["sample_weight"] = train[2]
        else:
            raise ConfigError(f"data function '{ref}' must return (train, valid) with train as (x, y), "
                              "(x, y, sample_weight) or a tf.data.Dataset")
        kwargs["validation_data"] = valid
    else:
        raise ConfigError(f"data function '{ref}' must return (train, valid) or a dict of model.fit arguments, "
                          f"got {type(result).__name__}")
    valid = kwargs.get("validation_data")
    if valid is None or not (isinstance(valid, tf.data.Dataset) or isinstance(valid, (tuple, list))
                             and len(valid) in (2, 3)):
        raise ConfigError(f"data function '{ref}' gave no validation data ((x, y) or a tf.data.Dataset): a run's "
                          "outcome is its validation loss; return (train, valid)")
    kwargs.update(fit)
    if not isinstance(kwargs.get("x"), tf.data.Dataset):
        kwargs.setdefault("batch_size", DEFAULT_BATCH)
    return kwargs


def _batches(valid, batch_size: int):
    """(x, y, sample_weight or None) batches of the validation data."""
    import keras
    import tensorflow as tf

    if isinstance(valid, tf.data.Dataset):
        for batch in valid.as_numpy_iterator() if keras.backend.backend() != "tensorflow" else valid:
            yield keras.utils.unpack_x_y_sample_weight(batch)
        return
    x, y = valid[0], valid[1]
    weights = valid[2] if len(valid) == 3 else None
    n = len(keras.tree.flatten(x)[0])
    for start in range(0, n, batch_size):
        cut = slice(start, start + batch_size)
        yield (keras.tree.map_structure(lambda a, cut=cut: np.asarray(a)[cut], x),
               keras.tree.map_structure(lambda a, cut=cut: np.asarray(a)[cut], y),
               None if weights is None else np.asarray(weights)[cut])


def validation_loss(step, valid, batch_size: int) -> tuple[float, float | None]:
    """The model's own loss on the validation data, per example, without regularisation penalties,
    and the top-1 accuracy of its predictions where it is a classifier.

    Per example whatever the loss's reduction: a loss summed over the batch is divided
    by the batch's rows, so runs that differ in the reduction compare in one unit. The
    accuracy reads the outputs themselves (a one-unit softmax predicts 1.0 whatever
    logit Keras' binary cross-entropy trains under it), so a proof can judge a fault
    the loss cannot show.

    Args:
        step: the model's :func:`loss_step`.
        valid: validation data as the data function gave it.
        batch_size: rows per batch for arrays.

    Returns:
        (loss, accuracy): the loss as the weighted mean over batches (by rows), or NaN
        when a batch's loss is not finite; the accuracy, or None for a regression.
    """
    total, rows, correct, counted = 0.0, 0.0, 0.0, 0.0
    for x, y, w in _batches(valid, batch_size):
        loss, n, right, scored = step(x, y, w)
        total += float(loss) * float(n)
        rows += float(n)
        correct += float(right)
        counted += float(scored)
    value = total / rows if rows else math.nan
    return (value if math.isfinite(value) else math.nan), (correct / counted if counted else None)


def loss_step(model):
    """A compiled ``(x, y, sample_weight) -> (per-example loss, rows, correct, scored)`` for ``model``:
    its loss, and the top-1 hits over the prediction rows it scored (0 of 0 for a regression); compiled as
    the running Keras backend compiles a predict step."""
    import keras
    from keras import ops

    from diagnose.instruments.backends.inference import inference_function
    from diagnose.instruments.targets import LossInfo, classifier_view

    info = LossInfo.of(model)

    def step(forward, x, y, w):
        pred = forward(x)
        # (several outputs: their weighted sum; the trackers this moves are the user's model's own, not those
        # of the instrumented model whose History fit reports)
        with keras.StatelessScope():
            loss = model._compile_loss(y, pred, w) / info.sum_divisor(pred)
        rows = ops.shape(keras.tree.flatten(pred)[0])[0]
        view = classifier_view(y, pred, info) if len(keras.tree.flatten(pred)) == 1 else None
        if view is None:
            return loss, rows, ops.zeros(()), ops.zeros(())
        weights = view.row_weights if view.row_weights is not None else ops.ones_like(view.labels, "float32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(view.outputs, axis=-1), "int32"),
                                  ops.cast(view.labels, "int32")), "float32")
        return loss, rows, ops.sum(hits * weights), ops.sum(weights)

    return inference_function(model, step)

"""What an instrumented model needs before ``fit`` traces its steps, and a restart for another run.

``fit`` traces the train step once per compiled step when nothing in it creates a
variable: TensorFlow traces a function that creates variables twice. So before
``fit`` calls Keras, :func:`prepare_fit` builds the user's model (from the data's
shapes, never from a batch read off a dataset, which would move a reshuffling
dataset on), Keras' optimizer, compiled metrics and loss (which Keras otherwise
builds inside the first trace), the snapshot the update ratios need and the target
counts, and the baselines the targets give. :func:`restart` starts another run on a
model whose steps are traced already: a user study's next seed.
"""

from __future__ import annotations

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.update_ratios import plain_sgd

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["prepare_fit", "restart", "build_from", "contract_targets", "fit_batch_size", "held_out_targets",
           "training_sample", "as_arrays"]


def prepare_fit(model, x, y, sample_weight, validation_split: float) -> None:
    """Everything ``model.fit(x, y, ...)``'s first trace would otherwise create, made now (host side).

    Args:
        model: the :class:`~diagnose.instruments.wrapper.Instrumented` wrapper.
        x, y, sample_weight, validation_split: as ``fit`` was given them.
    """
    if not model._ready:
        build_from(model, x)
    _target_baselines(model, y, validation_split)
    if not model._ready or model._custom_step or keras.backend.backend() != "tensorflow":
        return  # (JAX, PyTorch: nothing is traced twice; Keras builds its state from the data as in plain fit)
    _build_state(model, x, y, sample_weight)
    if not plain_sgd(model.optimizer):
        model.snapshot.prepare(model.trainable_weights)
    outputs = getattr(model.user_model, "outputs", None)
    if not model.loss_info.several:  # several outputs: their baselines are the contract's, per output
        model.targets.prepare(outputs[0].shape[-1] if outputs else None, model.loss_info)


def restart(model, fresh) -> bool:
    """Starts another run on ``model``'s traced steps: ``fresh``'s weights and optimizer state, instruments zeroed.

    ``fresh`` is the same model built again (another seed): every variable of it
    (weights, dropout's seed states) and of its optimizer, built on its own weights as
    ``fit`` builds it, is copied into ``model``'s, so the run trains as ``fresh``'s own
    ``fit`` would, while tracing the train step, most of a small model's run, is saved.

    Returns:
        False, changing nothing, where ``fresh`` does not match (other shapes, its
        optimizer ``model``'s own object, a model not built yet), and on Keras' JAX and
        PyTorch backends: there ``fit`` draws its data order from numpy's generator, and
        a model's first fit draws one order more (a batch read to build its compiled loss
        and metrics) than a model that has trained, so a restarted run would see other
        batches than ``fresh``'s own fit; else True.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    mine, theirs = model.user_model.variables, getattr(fresh, "variables", None)
    optimizer = getattr(fresh, "optimizer", None)
    if not model._ready or theirs is None or optimizer is None or optimizer is model.optimizer \
            or not _same_shapes(mine, theirs):
        return False
    optimizer.build(fresh.trainable_variables)
    if not _same_shapes(model.optimizer.variables, optimizer.variables):
        return False
    for ours, new in zip(mine + list(model.optimizer.variables), theirs + list(optimizer.variables), strict=True):
        ours.assign(new.value)
    model.acc.reset()
    model.sampled_acc.reset()
    model.schedule.restart()
    model.targets.reset()
    return True


def build_from(model, x) -> None:
    """Builds the user's model from one example of ``x`` (arrays or a dataset), then sets the wrapper up."""
    try:
        if isinstance(x, tf.data.Dataset):
            # Zeros of the elements' shapes, not a batch read from it: a new iterator over a
            # dataset that reshuffles each iteration would move its shuffle on, and fit
            # would then see other batches than its own fit does.
            spec = keras.utils.unpack_x_y_sample_weight(x.element_spec)[0]
            sample = keras.tree.map_structure(lambda t: tf.zeros([1, *[d or 1 for d in t.shape[1:]]], t.dtype), spec)
        elif x is not None and all(hasattr(a, "shape") for a in keras.tree.flatten(x)):
            sample = keras.tree.map_structure(lambda a: np.asarray(a[:1]), x)
        else:
            return  # a generator: built at the first trace of the train step instead
    except (TypeError, ValueError, StopIteration, tf.errors.OutOfRangeError):
        return
    model.user_model(sample, training=False)
    model.setup()
    model.built = True


def _target_baselines(model, y, validation_split: float) -> None:
    """The baselines from the training targets when fit is given them as one array (the part it trains on)."""
    if y is None or not hasattr(y, "shape") or isinstance(y, tf.data.Dataset):
        return
    y = np.asarray(y)
    if validation_split:
        y = y[: int(len(y) * (1.0 - validation_split))]  # Keras holds out the tail
    outputs = getattr(model.user_model, "outputs", None)
    classes = outputs[0].shape[-1] if outputs else None
    model.targets.from_arrays(y, model.loss_info, classes)


def as_arrays(targets):
    """Targets given as an array, or (several outputs) a list or dict of arrays, as numpy; else None."""
    if targets is None or isinstance(targets, tf.data.Dataset):
        return None
    if isinstance(targets, (list, tuple, dict)):
        leaves = keras.tree.flatten(targets)
        if not leaves or not all(hasattr(a, "shape") for a in leaves):
            return None
        return keras.tree.map_structure(np.asarray, targets)
    return np.asarray(targets) if hasattr(targets, "shape") else None


def _head(targets, fraction: float):
    """The first ``fraction`` of the rows of each array (the part fit trains on before validation_split)."""
    return keras.tree.map_structure(lambda a: a[: int(len(a) * fraction)], targets)


def contract_targets(y, validation_data, validation_split: float):
    """Targets to read the model-task contract from: the training targets fit is given as arrays (the part
    it trains on), else held-out ones given as arrays, else None (the Monitor then reads its probe batch's).
    Several outputs' targets keep their structure (a list or dict of arrays)."""
    for targets, split in ((y, validation_split), (_held_out_targets(validation_data), 0.0)):
        targets = as_arrays(targets)
        if targets is not None:
            return _head(targets, 1.0 - split) if split else targets
    return None


def _held_out_targets(validation_data):
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        return validation_data[1]
    return None


def held_out_targets(y, validation_data, validation_split: float):
    """The held-out targets fit validates on, as an array (validation_data's, or the tail validation_split
    holds out), else None."""
    held = as_arrays(_held_out_targets(validation_data))
    if held is not None:
        return held
    y = as_arrays(y) if validation_split else None
    if y is not None:
        return keras.tree.map_structure(lambda a: a[int(len(a) * (1.0 - validation_split)):], y)
    return None


def training_sample(x, rows: int = 256):
    """Up to ``rows`` training inputs spread evenly over what fit is given as arrays (a list or dict of them
    too), for the contract's facts about what the model's weights are trained on; None for other data."""
    if x is None or isinstance(x, tf.data.Dataset):
        return None
    arrays = keras.tree.flatten(x)
    if not arrays or not all(hasattr(a, "shape") and hasattr(a, "__getitem__") for a in arrays):
        return None
    n = len(arrays[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, rows)).astype(int))
    try:
        return keras.tree.map_structure(lambda a: np.asarray(a)[idx] if hasattr(a, "shape") else a, x)
    except Exception:  # noqa: BLE001 - data we cannot slice: the probe batch stands in
        return None


def fit_batch_size(x, y, batch_size):
    """The batch size fit trains with: as given, Keras' 32 for arrays, a dataset's static batch axis, else None."""
    if isinstance(x, tf.data.Dataset):
        spec = keras.tree.flatten(x.element_spec)
        dims = {s.shape[0] for s in spec if getattr(s, "shape", None) is not None and s.shape.rank}
        return int(next(iter(dims))) if len(dims) == 1 and next(iter(dims)) is not None else None
    if batch_size is not None:
        return int(batch_size)
    arrays = keras.tree.flatten(x)
    return 32 if arrays and all(hasattr(a, "shape") for a in arrays) else None


def _build_state(model, x, y, sample_weight) -> None:
    """Builds Keras' optimizer, compiled metrics and loss from one batch, as its symbolic build would.

    Keras builds them inside the first trace when no distribution strategy is set
    (plain fit too, which is then traced twice). Data other than arrays keeps Keras' way.
    """
    if x is None or not all(hasattr(a, "shape") for a in keras.tree.flatten((x, y)) if a is not None):
        return
    try:
        batch = keras.tree.map_structure(lambda a: None if a is None else np.asarray(a[:2]), (x, y, sample_weight))
        model._symbolic_build(data_batch=batch)
    except Exception:  # noqa: BLE001 - an optimisation only: Keras builds them in the trace as before
        return


def _same_shapes(a, b) -> bool:
    return len(a) == len(b) and all(u.shape == v.shape and u.dtype == v.dtype for u, v in zip(a, b))

"""The probe's batch: picked from what ``fit`` is given (held-out data first), or checked when the user gives one.

The probe itself (the loss on this batch with real, shuffled and zeroed inputs) is
:mod:`~diagnose.instruments.probes`.
"""

from __future__ import annotations

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["PROBE_ROWS", "probe_batch", "first_batch", "check_probe", "examples"]

# Examples in a probe batch picked from the data: a loss over 256 examples is precise
# to a few hundredths of a nat, far inside the probe's 0.05-nat margin.
PROBE_ROWS = 256


def check_probe(model, probe) -> None:
    """Refuses, in one line, a probe batch whose inputs do not fit the model's (before anything traces)."""
    x, y = probe
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return  # a subclassed model says nothing of its inputs' shapes
    arrays = list(x.values()) if isinstance(x, dict) else list(x) if isinstance(x, (list, tuple)) else [x]
    shapes = [tuple(getattr(a, "shape", ()) or ()) for a in arrays]
    wanted = [tuple(t.shape) for t in inputs]
    rows = {s[0] for s in shapes if s}
    fits = len(shapes) == len(wanted) and len(rows) == 1 and all(
        len(s) == len(w) and all(d is None or d == e for d, e in zip(w[1:], s[1:])) for s, w in zip(shapes, wanted))
    targets = [tuple(getattr(t, "shape", ()) or ()) for t in keras.tree.flatten(y)]  # one per output
    if not fits or not targets or any((s[0] if s else None) not in rows for s in targets):
        shown = targets[0] if len(targets) == 1 else targets
        raise DiagnoseError(f"diagnose.Monitor: the probe batch's shapes {shapes} (targets {shown})"
                            f" do not fit the model's inputs {wanted}; pass probe=(x, y) with a batch of the model's "
                            "own inputs and targets")


def examples(batch) -> int | None:
    """The examples in an ``(x, y)`` batch (its first input's length), or None."""
    inputs = keras.tree.flatten(batch[0]) if batch is not None else []
    return len(inputs[0]) if inputs and hasattr(inputs[0], "__len__") else None


def _rows(n: int) -> np.ndarray:
    """Up to PROBE_ROWS indices spread evenly over n examples (data sorted by class still gives a mix)."""
    return np.unique(np.linspace(0, n - 1, min(n, PROBE_ROWS)).astype(int))


def first_batch(dataset):
    for batch in dataset.take(1):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        return (x, y) if y is not None else None
    return None


def probe_batch(x, y, validation_data=None, validation_split: float = 0.0):
    """A fixed ``(x, y)`` batch for the probe from what ``fit`` is given, or None.

    Held-out data when there is any: on training examples a model that memorised
    labels unrelated to its inputs would look as if it used its inputs.
    """
    try:
        if validation_data is not None:
            if isinstance(validation_data, tf.data.Dataset):
                return first_batch(validation_data)
            if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
                x, y = validation_data[0], validation_data[1]
                validation_split = 0.0
            else:
                return None
        if isinstance(x, tf.data.Dataset):
            return None  # read after training instead (Monitor.probe_after): reading it now moves its shuffle on
        if y is None:
            return None
        arrays = keras.tree.flatten(x) + keras.tree.flatten(y)
        if not all(hasattr(a, "shape") and hasattr(a, "__getitem__") for a in arrays):
            return None  # a generator or PyDataset: nothing to pick from
        n = len(arrays[0])
        start = int(n * (1.0 - validation_split)) if validation_split else 0  # Keras holds out the tail
        idx = start + _rows(n - start)
        pick = lambda a: np.asarray(a)[idx]  # noqa: E731
        return keras.tree.map_structure(pick, x), keras.tree.map_structure(pick, y)
    except Exception:  # noqa: BLE001 - a probe is a bonus; data we cannot slice gets none
        return None

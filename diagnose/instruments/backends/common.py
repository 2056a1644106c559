"""What the JAX and PyTorch train steps share: the instruments measured in ``keras.ops``, and their sums kept
on the host.

On TensorFlow the wrapper's compiled step sums its columns in variables
(:mod:`~diagnose.instruments.accumulate`). A JAX step is a pure function and a
PyTorch step runs eagerly, so there each step hands back one float32 vector of its
columns and the flags of what went non-finite, and a :class:`HostAccumulator`
keeps them, unread, until the Monitor reads a row (one transfer per step then,
none while training). The columns are the same families' (:mod:`~diagnose.instruments.registry`),
computed by the same formulas.
"""

from __future__ import annotations

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError
from diagnose.instruments import measures, registry
from diagnose.instruments.accumulate import interval_means
from diagnose.instruments.family import Step
from diagnose.instruments.probes import variants
from diagnose.instruments.targets import classifier_view

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["HostAccumulator", "every_step", "sampled_row", "data_loss", "as_vector", "clip_setting", "sync_state",
           "check_supported", "probe_losses"]


def clip_setting(optimizer) -> tuple[str, float]:
    """How the optimizer clips gradient norms: Keras' global_clipnorm / clipnorm as diagnose's clip modes."""
    if getattr(optimizer, "global_clipnorm", None):
        return "global", float(optimizer.global_clipnorm)
    if getattr(optimizer, "clipnorm", None):
        return "per_tensor", float(optimizer.clipnorm)
    return "none", 0.0


def data_loss(model, y, y_pred, sample_weight, total, penalties: bool):
    """The loss as the model's loss computes it, per example, without regularisation penalties, and with
    sample or class weights per unit of weight (see ``Instrumented._data_loss``).

    Args:
        total: Keras' loss of the step (penalties included where ``penalties``).
        penalties: whether ``total`` may hold layer penalties: the compiled loss is then computed again.
    """
    loss = total
    if penalties and model._compile_loss is not None:
        with keras.StatelessScope():  # Keras' own per-output loss trackers stay where the step left them
            loss = model._compile_loss(y, y_pred, sample_weight)
    loss = ops.cast(loss, "float32")
    loss = loss / model.loss_info.sum_divisor(y_pred) if model.loss_info.summed else loss
    if sample_weight is None:
        return loss
    return ops.divide_no_nan(loss, ops.mean(ops.cast(sample_weight, loss.dtype)))


def _nonfinite(loss, grads):
    checks = [ops.logical_not(ops.all(ops.isfinite(g))) for g in grads]
    return ops.stack([ops.logical_not(ops.isfinite(ops.cast(loss, "float32"))), *checks])


def every_step(model, y, y_pred, loss, row_loss, grads, sampled: bool, xla: bool):
    """The figures taken on every step (loss, accuracy, loss noise), the classifier view, and the
    non-finite flags (loss, each gradient): every gradient is checked on sampled steps and whenever the
    loss is not finite (between them a non-finite gradient shows in the next step's loss)."""
    row = {"loss": row_loss}
    view = classifier_view(y, y_pred, model.loss_info)
    if view is not None:
        row["accuracy"] = view.accuracy(xla=xla)
    row.update(registry.measure(Step(names=model.names, norms=[], loss=row_loss), every_step=True)[0])
    if sampled:
        bad = _nonfinite(loss, grads)
    else:
        bad = ops.cond(ops.isfinite(ops.cast(loss, "float32")),
                       lambda: ops.zeros((1 + len(grads),), "bool"), lambda: _nonfinite(loss, grads))
    return row, view, bad


def sampled_row(model, x, view, row_loss, grads, before, after, sites=((), ())) -> dict:
    """A sampled step's other families, from its gradients, the weights before and after the update, and
    ``sites``: the attention and branch sites its forward pass captured (``Taps.capture``)."""
    norms = measures.norms(grads)
    mode, threshold = clip_setting(model.optimizer)
    attention, branches = sites
    step = Step(names=model.names, norms=norms, loss=row_loss, clip_mode=mode, clip_norm=threshold,
                weight_norms=measures.norms(before),
                update_norms=measures.norms([ops.subtract(a, b) for a, b in zip(after, before)]),
                attention=list(attention), branches=list(branches), inputs=model._named_inputs(x))
    if view is not None:
        step.outputs, step.labels, step.row_weights, step.output_kind = (
            view.outputs, view.labels, view.row_weights, view.kind)
    return registry.measure(step, every_step=False)[0]


def as_vector(row: dict):
    """A row's columns as one float32 vector (blocks as they are), for the host to sum."""
    return ops.concatenate([ops.reshape(ops.cast(v, "float32"), (-1,)) for v in row.values()], axis=0)


class HostAccumulator:
    """The sums of each column over the healthy steps since the last read, kept on the host.

    Each step adds its columns' vector and its non-finite flags, as backend arrays left
    unread; a read pulls them in order and gives what
    :meth:`~diagnose.instruments.accumulate.Accumulator.read_and_reset` gives.
    """

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.columns: list[str] | None = None
        self.reset()

    def reset(self) -> None:
        """Zeroes everything, the step count and the divergence flag included (a new run)."""
        self._pending, self._sums, self._count, self._step, self._diverged = [], None, 0.0, 0, (0, 0)

    def add(self, columns: list[str], vector, bad) -> None:
        """Records one step (host side; nothing is read from the device here)."""
        if self.columns is None:
            self.columns = list(columns)
        self._pending.append((vector, bad))

    def _settle(self) -> None:
        for vector, bad in self._pending:
            self._step += 1
            bad = np.asarray(keras.ops.convert_to_numpy(bad), bool)
            values = np.asarray(keras.ops.convert_to_numpy(vector), np.float64)
            if self._sums is None:
                self._sums = np.zeros_like(values)
            if not bad.any() and not self._diverged[0]:
                self._sums += values
                self._count += 1.0
            elif bad.any() and not self._diverged[0]:
                self._diverged = (self._step, int(np.argmax(bad)) - 1)
        self._pending = []

    def peek(self) -> dict:
        """The means of every column so far, without resetting them."""
        self._settle()
        if self.columns is None or not self._count:
            return {}
        return {c: float(x) / self._count for c, x in zip(self.columns, self._sums)}

    def read_and_reset(self) -> dict:
        """The interval's means of every column (see :func:`~diagnose.instruments.accumulate.interval_means`)."""
        self._settle()
        if self.columns is None:
            return {"row": {}, "histogram": np.zeros((0,)), "steps": 0, "diverged": None}
        sums = self._sums if self._sums is not None else np.zeros(len(self.columns))
        read = interval_means(self.columns, self.names, sums, self._count, np.zeros((1,)), self._diverged)
        self._sums, self._count = np.zeros_like(sums), 0.0
        return read


def sync_state(model) -> None:
    """On JAX, the model's variables from the state fit trains on (Keras purges them during fit): before
    the host reads a weight or the learning rate, or runs the model (a probe)."""
    if getattr(model, "_jax_state", None) and not getattr(model, "_jax_state_synced", True):
        model.jax_state_sync()


def check_supported(model) -> None:
    """Refuses, in one line, what the JAX and PyTorch steps do not measure yet."""
    backend = keras.backend.backend()
    if type(model).train_step is not keras.Model.train_step:
        raise DiagnoseError(f"diagnose.instrument on Keras' {backend} backend takes models trained by Keras' own "
                            "train step; a model with its own train_step is instrumented on TensorFlow "
                            "(KERAS_BACKEND=tensorflow)")
    if len(getattr(model, "outputs", None) or []) > 1:
        raise DiagnoseError(f"diagnose.instrument on Keras' {backend} backend takes models with one output; "
                            "instrument a model with several on TensorFlow (KERAS_BACKEND=tensorflow)")


def probe_losses(model, x, y) -> list[float]:
    """The data loss on ``(x, y)`` with real, shuffled and zeroed inputs (see ``Instrumented.probe_losses``),
    the outputs on the real and shuffled inputs kept as the TensorFlow path keeps them."""
    sync_state(model)
    x = keras.tree.map_structure(ops.convert_to_tensor, x)
    y = keras.tree.map_structure(ops.convert_to_tensor, y)
    # Keras' compiled predict step (jitted on JAX, no autograd on PyTorch): an eager forward pass costs ~50 ms
    outputs = [model.user_model.predict_on_batch(v) for v in variants(x)]
    with keras.StatelessScope():
        losses = [model._compile_loss(y, ops.convert_to_tensor(p)) / model.loss_info.sum_divisor(p)
                  for p in outputs]
    object.__setattr__(model, "probe_outputs", outputs[0])
    object.__setattr__(model, "probe_shuffled_outputs", outputs[1])
    return [float(ops.convert_to_numpy(v)) for v in losses]

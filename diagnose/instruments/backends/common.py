"""What the JAX and PyTorch train steps share: the instruments measured in ``keras.ops``, and their sums kept
on the host.

On TensorFlow the wrapper's compiled step sums its columns in variables
(:mod:`~diagnose.instruments.accumulate`). A JAX step is a pure function and a
PyTorch step runs eagerly, so there each step hands back one float32 vector of its
columns and the flags of what went non-finite, and a :class:`HostAccumulator`
keeps them, unread, until the Monitor reads a row (one transfer per step then,
none while training). The columns are the same families' (:mod:`~diagnose.instruments.registry`),
computed by the same formulas. The TensorFlow wrapper reads a model's several outputs,
a model's own train step and the probes' loss through the same functions here.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError
from diagnose.instruments import measures, output_health, registry, update_ratios
from diagnose.instruments.accumulate import interval_means
from diagnose.instruments.eager_ops import every_step_ops
from diagnose.instruments.family import Step
from diagnose.instruments.targets import classifier_view, output_losses

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

BACKEND_NAME = keras.backend.backend()

__all__ = ["HostAccumulator", "every_step", "sampled_row", "data_loss", "as_vector", "clip_setting", "output_rows",
           "output_health_rows", "logged_loss", "weight_changes", "check_state"]


def clip_setting(optimizer) -> tuple[str, float]:
    """How the optimizer clips gradient norms: Keras' global_clipnorm / clipnorm as diagnose's clip modes."""
    if getattr(optimizer, "global_clipnorm", None):
        return "global", float(optimizer.global_clipnorm)
    if getattr(optimizer, "clipnorm", None):
        return "per_tensor", float(optimizer.clipnorm)
    return "none", 0.0


def data_loss(model, y, y_pred, sample_weight, total, penalties: bool):
    """The loss as the model's loss computes it, per example, without regularisation penalties, and with
    sample or class weights per unit of weight.

    Keras averages w * loss over the examples, which moves the loss's scale with the
    weights' mean (x1.8 for class weights {0: 1, 1: 9} at 10% positives), while the
    baselines the rules compare it with (ln V, the label entropy, the loss at step 0) are
    unweighted; the weighted mean sum(w * loss) / sum(w) keeps their scale, and is the
    masked mean for 0/1 weights.

    Args:
        total: Keras' loss of the step (penalties included where ``penalties``).
        penalties: whether ``total`` may hold layer penalties: the compiled loss is then computed again.
    """
    loss = total
    if penalties and model._compile_loss is not None and model.loss_info.several:
        # the outputs' weighted losses (Keras' per-output loss trackers, which JAX's fit holds apart, untouched)
        found = output_losses(model._compile_loss, y, y_pred, sample_weight)
        loss = ops.sum(ops.stack([each.value * each.weight for each in found])) if found else loss
    elif penalties and model._compile_loss is not None:
        with keras.StatelessScope():
            loss = model._compile_loss(y, y_pred, sample_weight)
    loss = every_step_ops().cast(loss, "float32")  # (every step: torch's own op on PyTorch)
    loss = loss / model.loss_info.sum_divisor(y_pred) if model.loss_info.summed else loss
    if sample_weight is None:
        return loss
    return ops.divide_no_nan(loss, ops.mean(ops.cast(sample_weight, loss.dtype)))


def _nonfinite(loss, grads):
    o = every_step_ops()  # (torch's own ops on PyTorch, which runs them as they come)
    checks = [o.logical_not(o.all(o.isfinite(g))) for g in grads]
    return o.stack([o.logical_not(o.isfinite(o.cast(loss, "float32"))), *checks])


def _nonfinite_by_norms(loss, grads, grad_norms):
    """What :func:`_nonfinite` gives, read first from the gradients' norms (eager: PyTorch). A finite norm is a
    sum of finite squares, so every entry of its gradient is finite: where every norm is, no gradient is read
    again; where one is not (an entry not finite, or squares past float32's range), each is read entry by entry.
    The norms are the sampled step's own (per-variable figures): the flags cost no pass over the gradients."""
    o = every_step_ops()
    if grads and not bool(o.all(o.isfinite(o.stack(grad_norms)))):
        return _nonfinite(loss, grads)
    return o.concatenate([o.reshape(o.logical_not(o.isfinite(o.cast(loss, "float32"))), (1,)), _all_false(len(grads))])


def every_step(model, y, y_pred, sample_weight, loss, row_loss, grads, sampled: bool, xla: bool, grad_norms=None):
    """The figures taken on every step (loss, accuracy, loss noise), the classifier view (several outputs:
    each classifier output's by name), and the non-finite flags (loss, each gradient): every gradient is
    checked on sampled steps and whenever the loss is not finite (between them a non-finite gradient shows
    in the next step's loss); ``grad_norms`` (eager, sampled steps): the gradients' norms, which check them
    (:func:`_nonfinite_by_norms`)."""
    if model.loss_info.several:  # each output's loss, computed again from the step's targets and outputs
        row, view = output_rows(model, output_losses(model._compile_loss, y, y_pred, sample_weight), row_loss, xla)
    else:
        row = {"loss": row_loss}
        view = classifier_view(y, y_pred, model.loss_info)
        if view is not None:
            row["accuracy"] = view.accuracy(xla=xla)
    row.update(registry.measure(Step(names=model.names, norms=[], loss=row["loss"]), every_step=True)[0])
    if sampled:
        bad = _nonfinite(loss, grads) if grad_norms is None else _nonfinite_by_norms(loss, grads, grad_norms)
    elif not xla:  # PyTorch runs eagerly: the loss read on the host, as Keras' own cond reads its condition there
        o = every_step_ops()
        finite = bool(o.isfinite(o.cast(loss, "float32")))
        bad = _all_false(1 + len(grads)) if finite else _nonfinite(loss, grads)
    else:
        bad = ops.cond(ops.isfinite(ops.cast(loss, "float32")),
                       lambda: ops.zeros((1 + len(grads),), "bool"), lambda: _nonfinite(loss, grads))
    return row, view, bad


def output_rows(model, found, total, xla: bool) -> tuple[dict, dict]:
    """A model with several outputs: the loss (Keras' weighted sum of the outputs' losses, without
    regularisation penalties), each output's own loss and a classifier output's accuracy (``loss/NAME``,
    ``accuracy/NAME``), and the classifier outputs' views by name.

    Args:
        found: each output's loss on the step (:class:`~diagnose.instruments.targets.OutputLoss`), in the
            order Keras sums them; None or empty where the structures could not be matched (the total only).
        total: Keras' total without the layers' penalties, the loss where no output's loss sums over the batch.
            (On TensorFlow, summing the outputs' losses again beside Keras' own sum lets the graph optimizer
            rewrite the two together, and Keras' total can come out an ulp apart from plain fit's.)
    """
    found = list(found or [])
    infos = {name: info for name, info, _ in model.outputs}
    # Per example: an output whose loss sums over the batch (reduction "sum") divided by its rows.
    divisors = {each.name: infos[each.name].sum_divisor(each.y_pred) for each in found
                if infos.get(each.name) is not None and infos[each.name].summed}
    if divisors:
        loss = ops.sum(ops.stack([each.value * each.weight / divisors.get(each.name, 1.0) for each in found]))
    else:
        loss = ops.cast(total, "float32")
    row, views = {"loss": loss}, {}
    for each in found:
        row[f"loss/{each.name}"] = each.value / divisors.get(each.name, 1.0)
    for each in found:
        info = infos.get(each.name)
        view = None if info is None else classifier_view(each.y, each.y_pred, info)
        if view is not None:
            row[f"accuracy/{each.name}"] = view.accuracy(xla=xla)
            views[each.name] = view
    return row, views


def output_health_rows(names, views: dict) -> dict:
    """Several outputs: each classifier output's health (its views by name), as ``COLUMN/NAME``."""
    measured = {}
    for name, each in views.items():
        health = output_health.measure(Step(names=names, norms=[], outputs=each.outputs, labels=each.labels,
                                            row_weights=each.row_weights, output_kind=each.kind))
        measured.update({tuple(f"{c}/{name}" for c in key) if isinstance(key, tuple) else f"{key}/{name}": value
                         for key, value in health.items()})
    return measured


def logged_loss(logs):
    """A model with its own train_step, measured from outside: the ``loss`` its logs report as a row (NaN where
    they report none), and whether it is finite."""
    loss = logs.get("loss") if isinstance(logs, dict) else None
    if loss is None:
        return {"loss": ops.convert_to_tensor(float("nan"), "float32")}, ops.convert_to_tensor(True)
    loss = ops.cast(ops.reshape(loss, ()), "float32")
    return {"loss": loss}, ops.isfinite(loss)


def weight_changes(names, weight_norms, update_norms) -> dict:
    """A model with its own train_step, on a sampled step: the update ratios (and weight norms) from
    ``||w||`` before the step and ``||w after - w before||``, per variable."""
    return update_ratios.measure(Step(names=names, norms=[], weight_norms=weight_norms, update_norms=update_norms))


def sampled_row(model, x, view, row_loss, grads, before, after, sites=((), ()), grad_norms=None) -> tuple:
    """A sampled step's other families, from its gradients (``grad_norms``: their norms, where the step has them
    already), the weights before and after the update, and ``sites``: the attention and branch sites its forward
    pass captured (``Taps.capture``); and the attention family's winning-slot counts (None where it has none), for
    :meth:`HostAccumulator.add`."""
    norms = measures.norms(grads) if grad_norms is None else grad_norms
    mode, threshold = clip_setting(model.optimizer)
    attention, branches = sites
    step = Step(names=model.names, norms=norms, loss=row_loss, clip_mode=mode, clip_norm=threshold,
                weight_norms=measures.norms(before),
                update_norms=measures.norms([a - b for a, b in zip(after, before)]),
                attention=list(attention), branches=list(branches), inputs=model._named_inputs(x))
    if view is not None and not isinstance(view, dict):
        step.outputs, step.labels, step.row_weights, step.output_kind = (
            view.outputs, view.labels, view.row_weights, view.kind)
    measured, histogram = registry.measure(step, every_step=False)
    if isinstance(view, dict):  # several outputs: each classifier output's health
        measured.update(output_health_rows(model.names, view))
    return measured, histogram


def as_vector(row: dict):
    """A row's columns as one float32 vector (blocks as they are), for the host to sum (on PyTorch in torch's
    own ops: this runs at every step)."""
    o = every_step_ops()
    return o.concatenate([o.reshape(o.cast(v, "float32"), (-1,)) for v in row.values()], axis=0)


@functools.lru_cache(maxsize=8)
def _all_false(n: int):
    """(n,) False: no loss or gradient non-finite (made once per length; nothing writes into it)."""
    return ops.zeros((n,), "bool")


class HostAccumulator:
    """The sums of each column over the healthy steps of each interval (a logged row), kept on the host.

    Each step adds its columns' vector, its non-finite flags and its histogram (the
    attention family's winning-slot counts, if any), as backend arrays left unread. An
    interval is closed (:meth:`close`) without reading anything, and read later
    (:meth:`read_closed`, in the order closed): on JAX, whose steps run behind the host,
    the Monitor reads a row while the next row's steps run, so that the host never waits
    for the device mid-epoch. A read gives what
    :meth:`~diagnose.instruments.accumulate.Accumulator.read_and_reset` gives: the
    histogram summed over the same healthy steps, (1,) zeros where no step had one.
    """

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.columns: list[str] | None = None
        self.reset()

    def reset(self) -> None:
        """Drops every interval, the step count and the divergence flag included (a new run)."""
        self._pending, self._closed = [], collections.deque()
        self._step, self._diverged = 0, (0, 0)

    def add(self, columns: list[str], vector, bad, hist=None) -> None:
        """Records one step (host side; nothing is read from the device here); ``hist``: a float array of
        fixed shape summed over the healthy steps, or None."""
        if self.columns is None:
            self.columns = list(columns)
        self._pending.append((vector, bad, hist))

    def close(self) -> None:
        """Ends the interval (host side, nothing read): its steps are read by a later :meth:`read_closed`."""
        self._closed.append(self._pending)
        self._pending = []

    def _fold(self, entries, step: int, diverged: tuple):
        """The sums, healthy count and histogram of ``entries`` (read from the device now), and the step count and
        divergence flag after them: steps after the first non-finite one count for nothing."""
        sums, count, hist = None, 0.0, None
        for vector, bad, counts in entries:
            step += 1
            bad = np.asarray(keras.ops.convert_to_numpy(bad), bool)
            values = np.asarray(keras.ops.convert_to_numpy(vector), np.float64)
            counts = None if counts is None else np.asarray(keras.ops.convert_to_numpy(counts), np.float64)
            sums = np.zeros_like(values) if sums is None else sums
            hist = np.zeros_like(counts) if counts is not None and hist is None else hist
            if not bad.any() and not diverged[0]:
                sums += values
                count += 1.0
                if counts is not None:
                    hist += counts
            elif bad.any() and not diverged[0]:
                diverged = (step, int(np.argmax(bad)) - 1)
        return sums, count, hist, step, diverged

    def peek(self) -> dict:
        """The means of every column over the open interval's steps so far (before any interval is closed:
        the steps since the run began), leaving them to be read."""
        sums, count, _, _, _ = self._fold(self._pending, self._step, self._diverged)
        if self.columns is None or not count:
            return {}
        return {c: float(x) / count for c, x in zip(self.columns, sums)}

    def read_closed(self) -> dict:
        """The oldest closed interval's means of every column (see
        :func:`~diagnose.instruments.accumulate.interval_means`); waits for its steps where they still run."""
        entries = self._closed.popleft()
        sums, count, hist, self._step, self._diverged = self._fold(entries, self._step, self._diverged)
        if self.columns is None:
            return {"row": {}, "histogram": np.zeros((0,)), "steps": 0, "diverged": None}
        sums = sums if sums is not None else np.zeros(len(self.columns))
        hist = hist if hist is not None else np.zeros((1,))
        return interval_means(self.columns, self.names, sums, count, hist, self._diverged)

    def read_and_reset(self) -> dict:
        """Closes the interval and reads it (and any closed before it, whose means are dropped)."""
        self.close()
        while len(self._closed) > 1:
            self.read_closed()
        return self.read_closed()


def check_state(model) -> None:
    """On JAX, a model with its own ``train_step(state, data)``: the state fit hands it is the wrapper's
    variables, which must be the user's model's, in its order (as its own fit would hand them)."""
    user = model.user_model
    for kind in ("trainable_variables", "non_trainable_variables", "metrics_variables"):
        if [id(v) for v in getattr(model, kind)] != [id(v) for v in getattr(user, kind)]:
            raise DiagnoseError(f"diagnose.instrument on JAX cannot hand {user.name}'s own train_step the state "
                                f"its fit would: its {kind} differ from the wrapper's; instrument it on TensorFlow "
                                "(KERAS_BACKEND=tensorflow)")

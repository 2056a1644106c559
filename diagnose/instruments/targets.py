"""What a Keras model's loss says about its targets: the loss's kind, each output's loss, a classifier's rows
and labels (the statistics of the targets that give the baselines: :mod:`.target_stats`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.eager_ops import every_step_ops
from diagnose.instruments.measures import top1_correct

tf = import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["LossInfo", "ClassifierView", "classifier_view", "output_names", "output_losses",
           "per_output", "of_output", "OutputLoss",
           "OutputLossRecorder", "SEVERAL"]

# LossInfo.kind of a model with several outputs: each output's loss is its own (per_output).
SEVERAL = "several"

_KINDS = {
    "categorical": ("categoricalcrossentropy", "categoricalfocalcrossentropy", "crossentropy"),
    "sparse": ("sparsecategoricalcrossentropy",),
    "binary": ("binarycrossentropy", "binaryfocalcrossentropy", "hinge", "squaredhinge"),
    "regression": ("meansquarederror", "mse", "meanabsoluteerror", "mae", "huber", "logcosh",
                   "meansquaredlogarithmicerror", "msle", "meanabsolutepercentageerror", "mape", "poisson"),
}


def _loss_name(loss) -> str:
    """A loss's name with case and punctuation dropped: a string, a Loss's class, a function's name."""
    if isinstance(loss, str):
        name = loss
    elif isinstance(loss, keras.losses.Loss) and type(loss).__name__ != "LossFunctionWrapper":
        name = type(loss).__name__
    else:  # a function, or a wrapper around one
        name = getattr(getattr(loss, "fn", loss), "__name__", "")
    return re.sub(r"[^a-z]", "", str(name).lower())


@dataclass(frozen=True)
class LossInfo:
    """The compiled loss as the instruments need it.

    Attributes:
        name: the loss's normalised name ("categoricalcrossentropy", "mse"...).
        kind: "categorical", "sparse", "binary", "regression" or "other" (a loss of the user's own).
        from_logits: whether the loss reads logits.
        summed: whether it sums over the batch instead of averaging (reduction "sum").
        ignore_class: the label the loss leaves out (a sparse cross-entropy's ``ignore_class``: 255 on a
            segmentation mask's unlabelled pixels), or None.
    """

    name: str
    kind: str
    from_logits: bool
    summed: bool
    ignore_class: int | None = None

    @classmethod
    def of(cls, model) -> "LossInfo":
        """The model's compiled loss; for a model with several outputs, kind :data:`SEVERAL` (see
        :func:`per_output` for each output's)."""
        loss = model._compile_config.config.get("loss")
        several = isinstance(loss, (list, tuple, dict)) and len(loss) > 1  # (a subclassed model's outputs)
        if len(output_names(model)) > 1 or several:
            return cls(name=SEVERAL, kind=SEVERAL, from_logits=False, summed=False)
        if isinstance(loss, (list, tuple)) and len(loss) == 1:
            loss = loss[0]
        if isinstance(loss, dict) and len(loss) == 1:
            loss = next(iter(loss.values()))
        return cls.of_loss(loss)

    @classmethod
    def of_loss(cls, loss) -> "LossInfo":
        """What one loss (a name, a Loss, a function) is."""
        name = _loss_name(loss)
        kind = next((k for k, names in _KINDS.items() if name in names), "other")
        config = {}
        if isinstance(loss, keras.losses.Loss):
            try:
                config = loss.get_config()
            except (NotImplementedError, TypeError):
                config = {}
        ignore = config.get("ignore_class")
        return cls(name=name or "custom", kind=kind, from_logits=bool(config.get("from_logits", False)),
                   summed=config.get("reduction") == "sum",
                   ignore_class=int(ignore) if isinstance(ignore, (int, float)) else None)

    @property
    def several(self) -> bool:
        return self.kind == SEVERAL

    def sum_divisor(self, y_pred):
        """What turns the loss into a per-example mean: the number of prediction rows when it sums, else 1."""
        if not self.summed:
            return ops.ones((), "float32")
        size = ops.cast(ops.size(y_pred), "float32")
        last = y_pred.shape[-1] if _rank(y_pred) and y_pred.shape[-1] else 1
        return ops.maximum(size / float(last), 1.0)


def output_names(model) -> list[str]:
    """The names of a functional model's outputs, in Keras' order (``model.output_names``); [] when unknown."""
    outputs = getattr(model, "outputs", None) or []
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(outputs):
        names = [getattr(getattr(getattr(t, "_keras_history", None), "operation", None), "name", None) or
                 f"output_{i}" for i, t in enumerate(outputs)]
    return names


def per_output(model) -> list[tuple[str, "LossInfo | None", float]]:
    """``(name, LossInfo, loss weight)`` per output, in the order of ``model.outputs``; LossInfo None for an
    output compiled without a loss (it does not train).

    The losses and weights as ``compile`` takes them: one loss for every output, a list
    in the outputs' order, or a dict by output name (likewise the weights).
    """
    config = model._compile_config.config
    out = []
    for i, name in enumerate(output_names(model)):
        each = of_output(config.get("loss"), i, name)
        weight = of_output(config.get("loss_weights"), i, name, 1.0)
        out.append((name, None if each is None else LossInfo.of_loss(each), float(1.0 if weight is None else weight)))
    return out


def of_output(value, index: int, name: str, default=None):
    """One output's entry in what Keras takes per output (losses, loss weights, targets): from a dict by output
    name, from a list by place; a single value is every output's."""
    if isinstance(value, dict):
        return value.get(name, default)
    if isinstance(value, (list, tuple)):
        return value[index] if index < len(value) else default
    return default if value is None else value


@dataclass
class OutputLoss:
    """One output's loss on a step: its name, value (a scalar tensor), loss weight, targets and outputs."""

    name: str
    value: object
    weight: float
    y: object
    y_pred: object


class OutputLossRecorder:
    """Each output's loss as Keras' compiled loss computes it in the step being traced (``values``: a list of
    :class:`OutputLoss`), read from the tensors Keras trains on: nothing is computed twice. (Summing the
    outputs' losses again beside Keras' own sum lets TensorFlow's graph optimizer rewrite the two together,
    and Keras' total can then come out an ulp apart from plain fit's.)"""

    def __init__(self):
        self.values: list = []

    def attach(self, compile_loss) -> None:
        """Clears ``values`` for the step being traced; wraps the compiled loss's functions once, where Keras
        has built them (before that, nothing is recorded)."""
        self.values.clear()
        flat = getattr(compile_loss, "_flat_losses", None)
        if not flat or all(isinstance(entry.loss, _Recorded) for entry in flat):
            return
        compile_loss._flat_losses = [
            entry if isinstance(entry.loss, _Recorded) else
            entry._replace(loss=_Recorded(entry.loss, entry.name, entry.loss_weights, self.values))
            for entry in flat]


class _Recorded:
    """One output's loss function in Keras' compiled loss, unchanged, keeping what it computes on each call."""

    def __init__(self, fn, name: str, weight, store: list):
        self.fn, self.name, self.weight, self.store = fn, name, 1.0 if weight is None else float(weight), store

    def __call__(self, y_true, y_pred, sample_weight=None):
        value = self.fn(y_true, y_pred, sample_weight)
        self.store.append(OutputLoss(self.name, tf.cast(value, tf.float32), self.weight, y_true, y_pred))
        return value

    def __getattr__(self, name):  # everything else is the loss's own (its name, its config)
        return getattr(self.fn, name)


def output_losses(compile_loss, y, y_pred, sample_weight=None) -> list[OutputLoss] | None:
    """Each output's loss on a step as Keras' compiled loss computes it (masks and weights included), unweighted by
    ``loss_weights``, without touching the loss's own trackers (:class:`OutputLoss` each), in the order
    Keras sums them; None where the structures cannot be matched as Keras matches them (or before Keras built
    its loss on a first step).
    """
    flat = getattr(compile_loss, "_flat_losses", None)
    if not flat:
        return None
    tree = keras.tree
    try:
        y, y_pred = _as_built(compile_loss, y, y_pred)
        values = []
        for path, fn, weight, name in flat:
            y_t, y_p = y, y_pred
            for key in path:
                y_t, y_p = y_t[key], y_p[key]
            w = sample_weight
            if w is not None and tree.is_nested(w):
                for key in path:
                    w = w[key]
            values.append(OutputLoss(name, ops.cast(fn(y_t, y_p, w), "float32"),
                                     1.0 if weight is None else float(weight), y_t, y_p))
        return values
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def _as_built(compile_loss, y, y_pred):
    """Targets and outputs in the structures Keras' compiled loss was built on, matched as its ``call`` matches
    them (a dict of targets by output name for a list of outputs, one target for one output...)."""
    tree = keras.tree
    try:
        tree.assert_same_structure(y_pred, y)
    except ValueError:
        if not tree.is_nested(y) and hasattr(y_pred, "__len__") and len(y_pred) == 1:
            y = [y]
        elif isinstance(y_pred, (list, tuple)) and isinstance(y, dict) and compile_loss.output_names \
                and set(compile_loss.output_names) == set(y):
            y = [y[name] for name in compile_loss.output_names]
        y = tree.pack_sequence_as(y_pred, tree.flatten(y))
    for built, value in ((compile_loss._y_pred_build_structure, "pred"), (compile_loss._y_true_build_structure,
                                                                           "true")):
        current = y_pred if value == "pred" else y
        try:
            tree.assert_same_structure(built, current)
        except ValueError:
            current = tree.pack_sequence_as(built, tree.flatten(current))
        if value == "pred":
            y_pred = current
        else:
            y = current
    return y, y_pred


@dataclass
class ClassifierView:
    """A classifier's output as rows of class scores with their labels (every leading axis folded)."""

    outputs: object  # (N, C)
    labels: object  # (N,) int32
    row_weights: object  # (N,) float, or None: 0 where a mask drops the row
    kind: str | None  # "logits", "probabilities", "unnormalized", or None (unknown: accuracy only)
    classes: int

    def accuracy(self, xla: bool = False):
        """Top-1 accuracy over the rows (weighted by the mask); XLA lowers argmax to a sort, so there a max."""
        o = every_step_ops()
        if xla:
            correct = top1_correct(self.outputs, self.labels)
        else:
            correct = o.cast(o.equal(o.argmax(self.outputs, axis=-1), self.labels), "float32")
        if self.row_weights is None:
            return o.mean(correct)
        return o.sum(correct * self.row_weights) / o.maximum(o.sum(self.row_weights), 1e-12)


def _rank(t) -> int | None:
    """A tensor's number of axes (None where TensorFlow does not know it)."""
    shape = t.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)


def _mask(y_pred):
    ops = every_step_ops()
    mask = getattr(y_pred, "_keras_mask", None)
    return None if mask is None else ops.reshape(ops.cast(mask, "float32"), (-1,))


def classifier_view(y, y_pred, info: LossInfo) -> ClassifierView | None:
    """The rows and labels of a classifier's step, or None for a regression (or shapes we cannot read)."""
    ops = every_step_ops()  # (runs on every step: torch's own ops on PyTorch)
    if y is None or not ops.is_tensor(y_pred) or _rank(y_pred) is None or _rank(y_pred) < 1:
        return None
    y = ops.convert_to_tensor(y)
    mask = _mask(y_pred)
    if info.kind == "binary":
        p = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        if info.from_logits:
            p = ops.sigmoid(p)
        labels = ops.cast(ops.reshape(ops.cast(y, "float32"), (-1,)) > 0.5, "int32")
        if p.shape[0] is not None and labels.shape[0] is not None and p.shape[0] != labels.shape[0]:
            return None
        weights = mask if mask is not None and tuple(mask.shape) == tuple(p.shape) else None
        return ClassifierView(ops.stack([1.0 - p, p], axis=-1), labels, weights, "probabilities", 2)
    classes = y_pred.shape[-1]
    if classes is None or classes < 2 or info.kind == "regression":
        return None
    integer = keras.backend.standardize_dtype(y.dtype).startswith(("int", "uint"))
    if info.kind == "other" and not (integer and _rank(y_pred) in (_rank(y), _rank(y) + 1)):
        return None
    outputs = ops.reshape(y_pred, (-1, classes))
    if _rank(y) == _rank(y_pred) and y.shape[-1] == classes and not (info.kind == "sparse"):
        labels = ops.reshape(ops.cast(ops.argmax(y, axis=-1), "int32"), (-1,))
    else:
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
    if mask is not None and _rank(mask) == 1 and mask.shape[0] is not None and outputs.shape[0] is not None \
            and mask.shape[0] != outputs.shape[0]:
        mask = None
    if labels.shape[0] is not None and outputs.shape[0] is not None and labels.shape[0] != outputs.shape[0]:
        return None
    # Labels outside the classes (a loss's ignore_class, 255 in a segmentation mask) are no rows to
    # measure: weighted out, and read as class 0 so that no gather goes out of range.
    inside = ops.logical_and(labels >= 0, labels < int(classes))
    weights = ops.cast(inside, "float32") if mask is None else mask * ops.cast(inside, mask.dtype)
    labels = ops.where(inside, labels, ops.zeros_like(labels))
    mask = weights
    if info.kind == "other":
        kind = None
    else:
        kind = "logits" if info.from_logits else "unnormalized"
    return ClassifierView(outputs, labels, mask, kind, int(classes))

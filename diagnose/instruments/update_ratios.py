"""Update-to-weight ratios: how far each step moves each variable, relative to its size.

``||dw||`` is the change the optimizer made to the variable in the step. For plain
SGD (no momentum, no weight decay, no per-value clipping) that change is exactly
``lr * ||g as applied||``, which both train steps use because it needs no copy of
the weights; for any other optimizer it is measured as ``||w after - w before||``.
:func:`delta_norms` makes that choice in one place.
"""

from __future__ import annotations

from keras import ops

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.family import Column, Family, Step
from diagnose.instruments.measures import block, norms, vector

tf = import_tensorflow_quietly()


def plain_sgd(optimizer) -> bool:
    """True when the optimizer's update is exactly ``-lr * g`` (after norm clipping)."""
    import keras

    if type(optimizer) is not keras.optimizers.SGD:
        return False
    return (not float(getattr(optimizer, "momentum", 0.0) or 0.0) and not getattr(optimizer, "nesterov", False)
            and not getattr(optimizer, "weight_decay", None) and not getattr(optimizer, "clipvalue", None)
            and not getattr(optimizer, "use_ema", False) and not getattr(optimizer, "loss_scale_factor", None)
            and not getattr(optimizer, "gradient_accumulation_steps", None))


def sgd_delta_norms(learning_rate, norms, scales, finite) -> list:
    """``lr * ||g applied||`` per variable: the gradient norm times its clip scale (zero on a skipped step)."""
    lr = ops.cast(learning_rate, "float32")
    live = ops.cast(finite, "float32")
    return [lr * ops.cast(n, "float32") * sc * live for n, sc in zip(norms, scales)]


class Snapshot:
    """A copy of the weights taken before a step, to measure how far the step moved them (any optimizer).

    The copies are variables of the weights' shapes, created on first use (lifted out
    of the step's graph) and kept apart from the model's own weights.
    """

    def __init__(self):
        self._copies = None

    def prepare(self, variables) -> None:
        """Makes the copies now (host side), so that the step creates no variable when first traced."""
        if self._copies is None:
            with tf.init_scope():
                self._copies = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in variables]

    def take(self, variables) -> None:
        """In-graph, before the update: copies every variable."""
        if self._copies is None:
            with tf.init_scope():
                self._copies = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in variables]
        for copy, v in zip(self._copies, variables):
            copy.assign(v)

    def changes(self, variables, grouped: bool = False) -> list:
        """In-graph, after the update: ``||w after - w before||`` per variable (``grouped``: see :func:`norms`)."""
        return norms([tf.convert_to_tensor(v) - c for v, c in zip(variables, self._copies)], grouped)


def measure(step: Step) -> dict:
    delta, weights = vector(step.update_norms), vector(step.weight_norms)  # (n,) each
    return {**block([f"update_ratio/{n}" for n in step.names], delta / ops.maximum(weights, 1e-12)),
            **block([f"weight_norm/{n}" for n in step.names], weights)}


FAMILY = Family(
    name="updates",
    reads="each variable's change in the step and its norm before the step",
    columns=(
        Column("update_ratio/NAME", "||dw|| / ||w|| of the step: the change the optimizer made to the variable "
                                    "(lr * ||g as applied|| for plain SGD, ||w after - w before|| otherwise) over "
                                    "its norm before the step"),
        Column("weight_norm/NAME", "||w|| before the step (the MemN2N path reads it at the start of its in-graph "
                                   "chunk of at most log_every steps)"),
    ),
    measure=measure,
)

"""The forward passes outside training on every backend: the probes' three passes, and any pass compiled the way
the running backend compiles a predict step (:func:`inference_function`).

A probe runs the model without dropout on a fixed batch with real, shuffled and zeroed
inputs (:func:`~diagnose.instruments.probes.variants`) and compares their data losses, in
one compiled call; on JAX during fit it runs on the state fit trains on, behind the
steps, without writing it into the variables or waiting for them.
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.probes import variants
from diagnose.instruments.targets import output_losses

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402

BACKEND_NAME = keras.backend.backend()

__all__ = ["sync_state", "probe_loss", "probe_losses", "inference_function"]


def sync_state(model) -> None:
    """On JAX, the model's variables from the state fit trains on (Keras purges them during fit): before
    the host reads a weight or the learning rate, or runs the model (a probe)."""
    if getattr(model, "_jax_state", None) and not getattr(model, "_jax_state_synced", True):
        model.jax_state_sync()


def probe_loss(model, y, y_pred):
    """The data loss of outputs ``y_pred`` on targets ``y``, as the probes compare it: several outputs' weighted
    sum (NaN where the structures cannot be matched), read without Keras' per-output trackers."""
    if model.loss_info.several:
        found = output_losses(model._compile_loss, y, y_pred)
        return ops.convert_to_tensor(float("nan"), "float32") if found is None else \
            ops.sum(ops.stack([each.value * each.weight for each in found]))
    return model._compile_loss(y, y_pred) / model.loss_info.sum_divisor(y_pred)


def probe_losses(model, x, y, unread: bool = False):
    """The data loss on ``(x, y)`` with real, shuffled and zeroed inputs (see ``Instrumented.probe_losses``),
    the outputs on the real and shuffled inputs kept as the TensorFlow path keeps them.

    ``unread`` (JAX, during fit): the passes run on the state fit trains on, as it stands after the
    last step dispatched, without writing it into the model's variables or waiting for the step; a
    call is returned that reads the losses (and keeps the outputs) when made, later. The
    stateless pass hands back the seed generators it moved, and they are dropped: the probe
    draws nothing training would draw.
    """
    x = keras.tree.map_structure(ops.convert_to_tensor, x)
    y = keras.tree.map_structure(ops.convert_to_tensor, y)
    if model._probe_fn is None:
        object.__setattr__(model, "_probe_fn", _probe_function(model))
    weights = _fit_weights(model) if unread else None
    if weights is None:
        sync_state(model)
    found = model._probe_fn(x, y, weights)

    def read():
        losses, real, shuffled = found
        real, shuffled = keras.tree.map_structure(ops.convert_to_numpy, (real, shuffled))
        object.__setattr__(model, "probe_outputs", real)
        object.__setattr__(model, "probe_shuffled_outputs", shuffled)
        return [float(v) for v in ops.convert_to_numpy(losses)]

    return read if unread else read()


def _fit_weights(model):
    """On JAX during fit, the user's model's trainable and non-trainable weights as the state fit holds them
    (not yet written into the variables), in the model's own order; None elsewhere, or where the state
    is written in already or does not hold every weight."""
    state = getattr(model, "_jax_state", None)
    if not state or getattr(model, "_jax_state_synced", True):
        return None
    user, weights = model.user_model, []
    for kind in ("trainable_variables", "non_trainable_variables"):
        values = state.get(kind)
        at = {id(v): i for i, v in enumerate(getattr(model, kind))}
        if values is None or any(id(v) not in at for v in getattr(user, kind)):
            return None
        weights.append([values[at[id(v)]] for v in getattr(user, kind)])
    return weights


def _probe_function(model):
    """``(x, y, weights) -> (losses, outputs, shuffled outputs)``: the model's forward passes without dropout on
    the probe's variants of ``x`` and their losses, in one compiled call (an eager pass on JAX costs ~1 ms an
    op), unread; ``weights`` (JAX): the trainable and non-trainable weights to run on, else the variables'."""
    def probe(forward, x, y):
        outputs = [forward(v) for v in variants(x)]
        with keras.StatelessScope():  # Keras' own loss trackers stay where training left them
            losses = ops.stack([ops.cast(probe_loss(model, y, p), "float32") for p in outputs])
        return losses, outputs[0], outputs[1]

    probe = inference_function(model.user_model, probe)
    return lambda x, y, weights=None: probe(x, y) if weights is None else probe.on_weights(*weights, x, y)


def inference_function(model, fn):
    """``fn(forward, *args)`` compiled the way the running backend compiles a predict step: ``forward(x)``
    is ``model``'s forward pass without dropout on its weights as they are at each call.

    TensorFlow: a ``tf.function``; JAX: jitted, the weights passed in (a jitted function would keep the
    weights it was traced with) through ``stateless_call``; PyTorch: eager, under ``torch.no_grad``.
    ``fn`` is written in ``keras.ops``.
    """
    if BACKEND_NAME == "jax":
        import jax

        @jax.jit
        def stateless(trainable, non_trainable, *args):
            return fn(lambda x: model.stateless_call(trainable, non_trainable, x, training=False)[0], *args)

        def call(*args):
            return stateless([v.value for v in model.trainable_variables],
                             [v.value for v in model.non_trainable_variables], *args)

        call.on_weights = stateless  # (trainable, non_trainable, *args): on weights held apart (fit's state)
        return call
    if BACKEND_NAME == "torch":
        import torch

        def eager(*args):
            with torch.no_grad():
                return fn(lambda x: model(x, training=False), *args)

        return eager
    import tensorflow as tf

    return tf.function(lambda *args: fn(lambda x: model(x, training=False), *args), reduce_retracing=True)

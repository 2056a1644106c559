"""The instrumented train step where Keras runs on PyTorch: Keras' own PyTorch step, with the instruments.

As Keras' ``TorchTrainer.train_step``: the forward pass, ``zero_grad``, the loss,
``loss.backward()`` for the gradients, ``optimizer.apply`` under ``torch.no_grad``,
the metrics. The instruments read the same gradients, the loss and the outputs
without recording anything for autograd; on the steps the schedule samples (picked
on the host, as the step runs eagerly) they also read the weights before and after
the update, and the attention and branch sites the taps capture in the forward pass. A
model with its own ``train_step(data)`` is trained by it, unchanged, and measured from
outside (:func:`own_train_step`).
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from diagnose.instruments.backends.common import (as_vector, data_loss, every_step, logged_loss, sampled_row,
                                                  weight_changes)
from diagnose.instruments.measures import column_names, norms

import keras  # noqa: E402  (after the TensorFlow import the modules above make quietly)

__all__ = ["train_step", "own_train_step"]


def train_step(model, data):
    """Keras' PyTorch train step with the instruments recorded in the wrapper's host accumulators."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    sampled = model.schedule.next_due()
    with model.taps.capture() if sampled else contextlib.nullcontext() as captured:  # (sampled steps only)
        y_pred = model.user_model(x, training=True)
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model._loss_tracker.update_state(loss, sample_weight=next(i for i in keras.tree.flatten(x)
                                                                if i is not None).shape[0])
    scaled = model.optimizer.scale_loss(loss) if model.optimizer is not None else loss
    variables = model.trainable_weights[:]
    grads = []
    if variables:
        scaled.backward()
        grads = [v.value.grad for v in variables]
    with torch.no_grad():
        dense = [torch.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]
        outputs = _detached(y_pred)
        row_loss = data_loss(model, y, outputs, sample_weight, loss.detach(), penalties=bool(model.losses))
        grad_norms = norms(dense) if sampled else None  # (they check the gradients' finiteness too)
        row, view, bad = every_step(model, y, outputs, sample_weight, loss.detach(), row_loss, dense, sampled,
                                    xla=False, grad_norms=grad_norms)
        before = [v.value.detach().clone() for v in variables] if sampled else None
        if variables:
            model.optimizer.apply(grads, variables)
        else:  # every weight frozen: nothing to update, as Keras' own train step says
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        if sampled:  # (Keras' PyTorch optimizers update the weights in place, never the gradients)
            found, histogram = sampled_row(model, x, view, row_loss, dense, before, [v.value for v in variables],
                                           captured.sites(), grad_norms)
            model.sampled_acc.add(column_names(found), as_vector(found), bad, histogram)
        model.acc.add(column_names(row), as_vector(row), bad)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def own_train_step(model, data):
    """The user's own ``train_step(data)``, unchanged, measured from outside: the loss its logs report, and on
    sampled steps the weights' change (a copy taken before the step)."""
    sampled = model.schedule.next_due()
    variables = model.user_model.trainable_variables
    before = [v.value.detach().clone() for v in variables] if sampled else None
    logs = model.user_model.train_step(data)
    with torch.no_grad():
        row, finite = logged_loss(_detached(logs))
        bad = torch.cat([torch.logical_not(finite).reshape(1), torch.zeros(len(variables), dtype=torch.bool,
                                                                           device=finite.device)])
        if sampled:
            after = [v.value for v in variables]
            found = weight_changes(model.names, norms(before), norms([a - b for a, b in zip(after, before)]))
            model.sampled_acc.add(column_names(found), as_vector(found), bad)
        model.acc.add(column_names(row), as_vector(row), bad)
    return logs


def _detached(t):
    return keras.tree.map_structure(lambda v: v.detach() if hasattr(v, "detach") else v, t)

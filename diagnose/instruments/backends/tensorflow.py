"""The instrumented train step where Keras runs on TensorFlow: Keras' own TensorFlow step, with the instruments.

As Keras' ``TensorFlowTrainer.train_step``: the forward pass and ``compute_loss`` under a
``GradientTape``, the gradients, ``optimizer.apply_gradients``, the metrics; compiled by
Keras as its own is (``tf.function``, XLA where the model asks for it). The instruments
read the same gradients, the loss and the outputs, and on the steps the schedule samples
the weights before and after the update and the attention and branch sites the taps
capture in the forward pass. Their sums are kept in variables
(:class:`~diagnose.instruments.accumulate.Accumulator`), read once a row. With one step a
call the host picks which steps are sampled (the wrapper compiles both steps); with
several a call, one graph, the schedule picks in-graph. A model with its own
``train_step(data)`` is trained by it, unchanged, and measured from outside
(:func:`own_train_step`).
"""

from __future__ import annotations

import warnings

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments import measures, registry
from diagnose.instruments.backends.common import (clip_setting, data_loss, logged_loss, output_health_rows,
                                                  output_rows, weight_changes)
from diagnose.instruments.family import Step
from diagnose.instruments.gradients import clip_scales, dedupe_slices
from diagnose.instruments.targets import classifier_view, output_losses
from diagnose.instruments.update_ratios import plain_sgd, sgd_delta_norms

tf = import_tensorflow_quietly()
import keras  # noqa: E402
from keras.src.losses.loss import unscale_loss_for_distribution  # noqa: E402  (as Keras' own train step)

__all__ = ["train_step", "own_train_step"]


def train_step(model, data, sampled=None):
    """Keras' TensorFlow train step with the instruments; ``sampled``: the host's choice (a Python bool), else
    the schedule's in-graph."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if not model._ready:  # a model fit could not build before (its data a generator): built by this call
        model.user_model(x, training=False)
        model.setup()
    if model.loss_info.several:  # each output's loss, as Keras' compiled loss computes it in this step
        model.recorder.attach(model._compile_loss)
    # Keras' own train step, with the layers' tensors captured on the way.
    with model.taps.capture() as captured, tf.GradientTape() as tape:
        y_pred = model.user_model(x, training=True)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        model._loss_tracker.update_state(
            unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0])
        scaled = model.optimizer.scale_loss(loss) if model.optimizer is not None else loss
    variables = model.trainable_weights
    grads = tape.gradient(scaled, variables)
    sampled = model.schedule.due() if sampled is None else sampled
    row, view, bad, finite = _every_step(model, x, y, y_pred, sample_weight, loss, grads, sampled)
    # Before the weights move, on sampled steps: their norms (and, to measure the change, a copy).
    weight_norms = _when(sampled, lambda: _before_update(model, variables), lambda: tf.zeros(len(variables)))
    # The rate this step applies (a schedule moves it on); plain SGD's update ratios read it.
    lr = None if sampled is False else tf.identity(model.optimizer.learning_rate)
    if variables:
        model.optimizer.apply_gradients(zip(grads, variables))  # as Keras applies them, non-finite values too
    else:  # every weight frozen: nothing to update, as Keras' own train step says
        warnings.warn("The model does not have any trainable weights.", stacklevel=2)
    _when(sampled, lambda: _measure(model, x, y, view, lr, row["loss"], grads, variables, weight_norms, finite,
                                    captured, bad, in_graph=not isinstance(sampled, bool)),
          lambda: tf.constant(False))
    model.acc.add(row, None, bad)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def own_train_step(model, data, sampled=None):
    """The user's own train step, unchanged; measured from outside: its loss, and the weights' change."""
    model.setup()
    variables = model.user_model.trainable_variables
    sampled = model.schedule.due() if sampled is None else sampled
    weight_norms = _when(sampled, lambda: _before_update(model, variables, snapshot=True),
                         lambda: tf.zeros(len(variables)))
    logs = model.user_model.train_step(data)
    row, finite = logged_loss(logs)

    def measure():
        model.sampled_acc.add(weight_changes(model.names, tf.unstack(weight_norms, num=len(variables)),
                                             model.snapshot.changes(variables, grouped=not model.jit_compile)),
                              None, tf.zeros(1 + len(variables), tf.bool))
        if not isinstance(sampled, bool):
            model.schedule.measured()
        return tf.constant(True)

    _when(sampled, measure, lambda: tf.constant(False))
    bad = tf.concat([[tf.logical_not(finite)], tf.zeros(len(variables), tf.bool)], 0)
    model.acc.add(row, None, bad)
    return logs


def _every_step(model, x, y, y_pred, sample_weight, loss, grads, sampled):
    """The figures taken on every step: loss, accuracy, loss noise, and whether anything went non-finite.

    Every gradient is checked on sampled steps and whenever the loss is not finite;
    between them a non-finite gradient shows as a non-finite loss one step later
    (it makes the weights, hence the next loss, non-finite).
    """
    if model.loss_info.several:
        row, views = _output_rows(model, y, y_pred, sample_weight, loss)
    else:
        row = {"loss": data_loss(model, y, y_pred, sample_weight, loss, penalties=bool(model.losses))}
    # several outputs: each classifier output's view by name, for its accuracy (above) and health (sampled)
    view = views if model.loss_info.several else classifier_view(y, y_pred, model.loss_info)
    if view is not None and not model.loss_info.several:
        row["accuracy"] = view.accuracy(xla=bool(model.jit_compile))
    row.update(registry.measure(Step(names=model.names, norms=[], loss=row["loss"]), every_step=True)[0])
    loss_ok = tf.math.is_finite(tf.cast(loss, tf.float32))
    checked = loss_ok if sampled is False else tf.logical_and(loss_ok, tf.logical_not(sampled))
    bad = (_nonfinite(loss, grads) if sampled is True else
           tf.cond(checked, lambda: tf.zeros(1 + len(grads), tf.bool), lambda: _nonfinite(loss, grads)))
    return row, view, bad, tf.logical_not(tf.reduce_any(bad))


def _output_rows(model, y, y_pred, sample_weight, total) -> tuple[dict, dict]:
    """A model with several outputs: the loss (Keras' weighted sum of the outputs' losses, without
    regularisation penalties), and each output's own loss and a classifier output's accuracy
    (``loss/NAME``, ``accuracy/NAME``), read without moving Keras' own per-output trackers; and the
    classifier outputs' views by name."""
    # The values Keras' compiled loss computed in this step, else the same losses computed again (Keras
    # built its loss inside this trace: nothing could be recorded; the values are the same, though the
    # graph optimizer may then order the total's float sums otherwise, by an ulp).
    found = list(model.recorder.values) or output_losses(model._compile_loss, y, y_pred, sample_weight)
    # The loss: Keras' total without the layers' penalties.
    loss = tf.cast(total, tf.float32)
    if model.losses:
        loss -= tf.cast(tf.add_n([tf.cast(penalty, tf.float32) for penalty in model.losses]), tf.float32)
    return output_rows(model, found, loss, xla=bool(model.jit_compile))


def _nonfinite(loss, grads):
    checks = [tf.constant(False) if g is None else
              tf.logical_not(tf.reduce_all(tf.math.is_finite(measures.values(g)))) for g in grads]
    return tf.stack([tf.logical_not(tf.math.is_finite(tf.cast(loss, tf.float32))), *checks])


def _before_update(model, variables, snapshot: bool = False):
    """||w|| per variable before the step (sampled steps); keeps a copy where the change must be measured."""
    if snapshot or not plain_sgd(model.optimizer):
        model.snapshot.take(variables)
    return tf.stack(measures.norms(variables, grouped=not model.jit_compile))


def _measure(model, x, y, view, lr, loss, grads, variables, weight_norms, finite, captured, bad, in_graph=True):
    """A sampled step: every other family, from the step's gradients, weights and captured sites."""
    # Norms of the dense gradient (an embedding's rows looked up twice summed first).
    dense = [tf.zeros_like(v) if g is None else dedupe_slices(g) for g, v in zip(grads, variables)]
    norms = measures.gradient_norms(dense, grouped=not model.jit_compile)
    mode, threshold = clip_setting(model.optimizer)
    if plain_sgd(model.optimizer):  # the change is lr * ||g applied||: no copy of the weights needed
        update_norms = sgd_delta_norms(lr, norms, clip_scales(norms, mode, threshold), finite)
    else:
        update_norms = model.snapshot.changes(variables, grouped=not model.jit_compile)
    attention, branches = captured.sites()
    step = Step(names=model.names, norms=norms, loss=loss, clip_mode=mode, clip_norm=threshold,
                weight_norms=tf.unstack(weight_norms, num=len(variables)), update_norms=update_norms,
                attention=attention, branches=branches, inputs=model._named_inputs(x))
    if view is not None and not isinstance(view, dict):
        step.outputs, step.labels, step.row_weights, step.output_kind = (
            view.outputs, view.labels, view.row_weights, view.kind)
        if not model.targets.exact:  # data fit read as a stream: sampled batches suffice
            model.targets.add_classes(view.labels, view.row_weights, view.classes)
    elif model.loss_info.kind == "regression" and not model.targets.exact:
        model.targets.add_values(y)
    measured, hist = registry.measure(step, every_step=False)
    if isinstance(view, dict):  # several outputs: each classifier output's health, as COLUMN/NAME
        measured.update(output_health_rows(model.names, view))
    model.sampled_acc.add(measured, hist, bad)
    if in_graph:  # the host's schedule knows already
        model.schedule.measured()
    return tf.constant(True)


def _when(pred, then, otherwise):
    """``tf.cond``, or just the branch taken when ``pred`` is a Python bool (the host's schedule)."""
    if isinstance(pred, bool):
        return then() if pred else otherwise()
    return tf.cond(pred, then, otherwise)

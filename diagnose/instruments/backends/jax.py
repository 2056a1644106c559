"""The instrumented train step where Keras runs on JAX: Keras' own JAX step, with the instruments beside it.

As Keras' ``JAXTrainer.train_step``: ``compute_loss_and_updates`` (a stateless call
of the model and the loss) under ``jax.value_and_grad``, ``optimizer.stateless_apply``,
the metrics updated in a stateless scope, the whole jitted with the state donated. The
instruments read the same gradients, the loss and the outputs, and, on the steps the
schedule samples, the weights before and after the update (so the update ratios need
no copy of the weights whatever the optimizer) and the attention and branch sites the
taps capture in the differentiated forward pass (out through ``has_aux``). Two jitted
steps, sampled or not, the host picking between them before each step (as on TensorFlow with
one step per call; several steps per call are run as Keras' JAX trainer runs them, one jitted
step after another from the host: :func:`make_train_function`). A model with its
own ``train_step(state, data)`` is trained by it, unchanged, on the state its own fit
would hand it, and measured from outside (:func:`own_train_step`).
"""

from __future__ import annotations

import functools
import weakref

import jax
import keras

from diagnose.instruments.backends.common import (as_vector, check_state, data_loss, every_step, logged_loss,
                                                  sampled_row, weight_changes)
from diagnose.instruments.measures import column_names, norms
from diagnose.instruments.taps import site_arrays

from keras.src.trainers.data_adapters import data_adapter_utils  # noqa: E402  (as Keras' own JAX step)

__all__ = ["make_train_function", "train_step", "own_train_step", "learning_rate"]


def train_step(model, state, data, sampled: bool):
    """Keras' JAX train step with the instruments: ``(logs, state, (every, bad, sampled, histogram))``, the
    last two None on a step not sampled (the histogram also where the attention family has none)."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    loss_fn, sites = _capturing(model) if sampled else (model.compute_loss_and_updates, None)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, aux), grads = grad_fn(trainable, non_trainable, metrics_variables, x, y, sample_weight, training=True,
                              optimizer_variables=optimizer_variables)
    if sampled:  # the attention and branch sites the forward pass captured, outside the differentiation now
        aux, arrays = aux
        sites = sites(arrays)
    unscaled, y_pred, non_trainable, metrics_variables = aux
    new_trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, grads, trainable)
    logs, metrics_variables = model._update_metrics_variables(metrics_variables, unscaled, x, y, y_pred,
                                                              sample_weight)
    # The instruments read what the step computed through a barrier: without it XLA fuses their ops with the
    # step's own, and the gradients and the update come out of other kernels than plain fit's (a conv net's
    # weights 3e-8 apart after 5 steps, which training grows); behind it the step is the plain one.
    grads, y_pred, unscaled, after = jax.lax.optimization_barrier((grads, y_pred, unscaled, new_trainable))
    row_loss = data_loss(model, y, y_pred, sample_weight, unscaled, penalties=True)
    row, view, bad = every_step(model, y, y_pred, sample_weight, unscaled, row_loss, grads, sampled, xla=True)
    columns = {"every": column_names(row)}
    measured = histogram = None
    if sampled:
        found, histogram = sampled_row(model, x, view, row_loss, grads, trainable, after, sites)
        columns["sampled"] = column_names(found)
        measured = as_vector(found)
    model.step_columns = columns  # read when traced: the same on every call of this step
    state = (new_trainable, non_trainable, optimizer_variables, metrics_variables)
    return logs, state, (as_vector(row), bad, measured, histogram)


def own_train_step(model, state, data, sampled: bool):
    """The user's own ``train_step(state, data)``, unchanged, measured from outside: the loss its logs report, and
    on sampled steps the weights' change (the trainable part of the state before and after)."""
    logs, new_state = model.user_model.train_step(state, data)
    row, finite = logged_loss(logs)
    bad = jax.numpy.concatenate([jax.numpy.logical_not(finite)[None], jax.numpy.zeros(len(state[0]), bool)])
    columns = {"every": column_names(row)}
    measured = None
    if sampled:
        before, after = state[0], new_state[0]
        found = weight_changes(model.names, norms(before), norms([a - b for a, b in zip(after, before)]))
        columns["sampled"] = column_names(found)
        measured = as_vector(found)
    model.step_columns = columns
    return logs, new_state, (as_vector(row), bad, measured, None)


def _capturing(model):
    """Keras' ``compute_loss_and_updates`` with the taps capturing its forward pass, and the function that
    makes the sites from what it hands out.

    The sites' tensors are built inside the differentiated function (outside it they
    would be leaked tracers) with their gradients stopped, and leave it through
    ``has_aux`` beside Keras' own outputs.
    """
    rebuild = []

    def loss_fn(*args, **kwargs):
        with model.taps.capture() as captured:
            loss, aux = model.compute_loss_and_updates(*args, **kwargs)
            arrays, sites = site_arrays(*captured.sites())
        rebuild.append(sites)
        return loss, (aux, arrays)

    return loss_fn, lambda arrays: rebuild[-1](arrays)


def make_train_function(model, force: bool = False):
    """Keras' JAX train function, on one of two jitted steps the host's schedule picks before each step.

    With ``steps_per_execution`` above 1 it is built as Keras' own
    (``JAXTrainer._make_function``): one call runs that many jitted steps in turn from
    the host, each on the next batch and the state the last one returned, ends early
    where the epoch's data runs out (only a first batch missing ends the epoch), and
    returns the last step's logs. Each step is thus picked, recorded and hooked as with
    one step per call: the schedule samples the same steps, the rows' means are the
    same, no third step is compiled, and the Monitor's rows land on their own steps
    (on TensorFlow, where a call is one graph, at the end of the call that crosses them).
    """
    if model.train_function is not None and not force:
        return model.train_function
    if model._custom_step:  # the state the user's step reads must be what its own fit would hand it
        check_state(model)
    jit = not model.run_eagerly and model.jit_compile
    steps, columns = {}, {}
    for sampled in (True, False):
        step = functools.partial(own_train_step if model._custom_step else train_step, model, sampled=sampled)
        steps[sampled] = jax.jit(step, donate_argnums=0) if jit else step

    def one_step(state, data):
        sampled = model.schedule.next_due()
        logs, state, (every, bad, measured, histogram) = steps[sampled](state, data)
        columns.setdefault(sampled, model.step_columns)
        model.acc.add(columns[sampled]["every"], every, bad)
        if measured is not None:
            model.sampled_acc.add(columns[sampled]["sampled"], measured, bad, histogram)
        if model.step_hooks:  # a Monitor's work after each step, here on fit's thread (see Monitor.async_safe)
            # as Keras' loop sets it after a call: a hook that reads a weight syncs the variables from it
            # (set past Keras' attribute tracking, which would walk every array of the state)
            object.__setattr__(model, "_jax_state", dict(zip(_STATE, state)))
            object.__setattr__(model, "_jax_state_synced", False)
            for hook in model.step_hooks:
                hook()
        return logs, state

    def train_function(state, iterator):
        logs, state = one_step(state, next(iterator))
        try:
            for _ in range(model.steps_per_execution - 1):
                data = next(iterator)
                if model._jax_state_synced:  # a hook wrote the state into the variables: taken back as
                    # Keras' fit takes it at a call's start (the variables purged, the arrays donated on)
                    state = model._get_jax_state(**dict.fromkeys(_STATE, True), purge_model_variables=True)
                    object.__setattr__(model, "_jax_state_synced", False)
                logs, state = one_step(state, data)
        except StopIteration:  # the epoch's last call, short of data
            pass
        return logs, state

    model.train_function = train_function
    return train_function


# The parts of the state fit threads through the train function, in its order (Keras' ``_jax_state`` keys).
_STATE = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


def learning_rate(optimizer, values, unread: bool):
    """The rate ``optimizer`` applies at its next step, from ``values`` (the state fit holds for its variables, in
    order; None: the variables themselves): an array computed behind the steps (``unread``), else a float.

    Where the rate is held in a variable or is a schedule of the step count (functions of
    the optimizer's variables alone), one jitted call a row on the optimizer's scalar
    variables: the same read through a scope over them, op by op, cost ~0.25 ms of the
    host a row on a small Transformer. A rate given as a Python callable may read what
    no variable holds, so it is called through the scope at each read.
    """
    variables = optimizer.variables
    found = _rate_readers.get(optimizer)
    if found is None or found[0] != len(variables):
        found = _rate_readers[optimizer] = (len(variables), *_rate_reader(optimizer))
    _, scalars, read = found
    rate = read([variables[i].value for i in scalars] if values is None else [values[i] for i in scalars])
    return rate if unread else float(rate)


# Per optimizer: its variables' count when its reader was made, and the reader (weakly held: nothing outlives it).
_rate_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rate_reader(optimizer) -> tuple:
    """The indices of ``optimizer``'s scalar variables (the step count a schedule reads, a rate held in a variable,
    a wrapping optimizer's own; none of the per-weight slots), and a call from their values to its rate, as a
    fresh array."""
    scalars = [i for i, v in enumerate(optimizer.variables) if len(v.shape) == 0]
    inner = optimizer
    while getattr(inner, "inner_optimizer", None) is not None:  # a LossScaleOptimizer's rate is its inner one's
        inner = inner.inner_optimizer
    traced = isinstance(inner._learning_rate, (keras.Variable, keras.optimizers.schedules.LearningRateSchedule))
    ref = weakref.ref(optimizer)  # the table above is keyed on the optimizer: its reader holds it weakly

    def rate(values):
        variables = ref().variables
        with keras.StatelessScope(state_mapping=[(variables[i], v) for i, v in zip(scalars, values)]):
            return keras.ops.copy(ref().learning_rate)

    return scalars, jax.jit(rate) if traced else rate

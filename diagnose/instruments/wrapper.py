"""``instrument(model)``: any compiled Keras 3 model, trained as its own ``fit`` would, with the instruments.

The wrapper holds the user's model as its only layer (training it trains theirs)
and is compiled with the user's own compile arguments: loss, loss weights, metrics,
weighted metrics, XLA setting and steps per execution, with the same optimizer
object. Its train step is Keras' own, op for op (forward pass, ``compute_loss``
with masks and sample or class weights, ``optimizer.apply_gradients``,
``compute_metrics``), with the instruments read beside it; its test step is
Keras' unchanged. So the losses, weights and ``History`` are those of
``model.fit`` for the same seed.

    model = diagnose.instrument(model)          # after model.compile(...)
    model.fit(x, y, callbacks=[diagnose.Monitor("runs/mine")])
"""

from __future__ import annotations

import functools

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError
from diagnose.instruments import measures
from diagnose.instruments.accumulate import Accumulator, read_and_reset
from diagnose.instruments.backends import BACKEND, backend_step
from diagnose.instruments.describe import input_names
from diagnose.instruments.monitor import Monitor
from diagnose.instruments.probe_data import probe_batch
from diagnose.instruments.schedule import Schedule
from diagnose.instruments.taps import Taps
from diagnose.instruments.target_stats import TargetStats
from diagnose.instruments.targets import LossInfo, OutputLossRecorder, per_output
from diagnose.instruments.backends.common import HostAccumulator
from diagnose.instruments.backends.inference import probe_losses
from diagnose.instruments.update_ratios import Snapshot

tf = import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["instrument", "Instrumented"]


# Room made ahead in the accumulators (a column is one float64): what the families
# record, every step (loss, accuracy, the loss's square) and on sampled steps (about
# three columns per variable, a few per attention or branch site, the output's health,
# the inputs), with a margin; a model that records more gets variables of its size, at
# the cost of tracing its first step twice.
_EVERY_STEP_COLUMNS = 16
_COLUMNS_PER_VARIABLE = 8
_COLUMNS_PER_SITE = 64


class Instrumented(keras.Model):
    """A user's model, trained exactly as its ``fit`` trains it, with the instruments recorded.

    Build it with :func:`instrument`.
    """

    instrumented = True  # what a Monitor checks its model for (monitor.py cannot import this module)

    def __init__(self, user_model, **kwargs):
        super().__init__(name=f"{user_model.name}_instrumented", **kwargs)
        self.user_model = user_model
        self.loss_info = LossInfo.of(user_model)
        # A model with a train step of its own (a GAN, a VAE...) is trained by that step.
        self._custom_step = type(user_model).train_step is not keras.Model.train_step
        self._custom_test = type(user_model).test_step is not keras.Model.test_step
        self._probe_fn = None
        # On JAX and PyTorch, what runs on fit's thread after each step (a Monitor's rows: see Monitor.async_safe)
        object.__setattr__(self, "step_hooks", [])
        # the model's outputs on the last probe batch, real and shuffled (see probe_losses)
        self.probe_outputs = self.probe_shuffled_outputs = None
        self._ready = False
        if user_model.built:
            self.setup()
            self.built = True
        # Otherwise fit builds the user's model from its first batch (as its own fit would), then setup().

    def setup(self) -> None:
        """Finds what to measure and makes the accumulators; needs the user's model built (idempotent)."""
        if self._ready:
            return
        self.loss_info = LossInfo.of(self.user_model)  # built now: a model's outputs are known
        # A model with several outputs: each output's loss and accuracy are columns of their own.
        self.outputs = per_output(self.user_model) if self.loss_info.several else []
        self.recorder = OutputLossRecorder()
        self.taps = Taps(self.user_model)
        self.names = measures.variable_names([v.path for v in self.user_model.trainable_variables])
        # Room for every column, made before the first trace so that it traces once:
        # the families record a few columns per variable and per tapped site.
        room = _COLUMNS_PER_VARIABLE * len(self.names) + _COLUMNS_PER_SITE * (len(self.taps.found) + 1)
        if BACKEND == "tensorflow":
            self.acc = Accumulator(self.names, capacity=_EVERY_STEP_COLUMNS + 2 * len(self.outputs),
                                   growable=True)  # every step
            self.sampled_acc = Accumulator(self.names, capacity=room, growable=True)  # the steps the schedule samples
        else:  # JAX, PyTorch: each step hands its columns back, summed on the host (backends.common)
            self.acc, self.sampled_acc = HostAccumulator(self.names), HostAccumulator(self.names)
        self.schedule = Schedule()
        self.snapshot = Snapshot()
        self.targets = TargetStats()
        self._ready = True

    def call(self, inputs, training=None):
        return self.user_model(inputs, training=training)

    # Saving saves the user's model, loadable without diagnose: ModelCheckpoint, BackupAndRestore and
    # model.save on the wrapper all come here.
    def save(self, filepath, *args, **kwargs):
        return self.user_model.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        return self.user_model.save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        return self.user_model.load_weights(filepath, *args, **kwargs)

    def get_config(self):
        return self.user_model.get_config()

    def restart(self, fresh) -> bool:
        """Another run on these traced steps, with ``fresh``'s weights: see
        :func:`~diagnose.instruments.preparation.restart`."""
        from diagnose.instruments.preparation import restart

        return restart(self, fresh)

    def make_train_function(self, force=False):
        """Keras' train function; with one step per call, two compiled steps the host picks between.

        The schedule's choice made on the host leaves the unsampled steps' graph
        without the sampled families' ops (a ``tf.cond`` still walks its untaken
        branch); with several steps per call (one graph on TensorFlow) the choice is made
        in-graph, on JAX before each of them (:func:`~diagnose.instruments.backends.jax.make_train_function`).
        """
        if self.train_function is not None and not force:
            return self.train_function
        if BACKEND == "jax":
            return backend_step().make_train_function(self, force)
        if BACKEND == "torch":
            super().make_train_function(force)  # (Keras' PyTorch trainer sets it, returning nothing)
            step = self.train_function

            def train_function(data):
                logs = step(data)
                for hook in self.step_hooks:
                    hook()
                return logs

            self.train_function = train_function
            return train_function
        if self.steps_per_execution != 1 or not hasattr(self, "_make_function"):
            return super().make_train_function(force)
        steps = {sampled: self._make_function(functools.partial(self.train_step, sampled=sampled))
                 for sampled in (True, False)}

        def train_function(iterator):
            return steps[self.schedule.next_due()](iterator)

        self.train_function = train_function
        return train_function

    def train_step(self, data, sampled=None):
        """Keras' train step with the instruments, the running backend's (:mod:`~diagnose.instruments.backends`;
        on JAX the train function calls its steps itself); ``sampled`` (TensorFlow): the host's choice, else the
        schedule's in-graph."""
        step = backend_step()
        if BACKEND == "torch":
            return (step.own_train_step if self._custom_step else step.train_step)(self, data)
        return (step.own_train_step if self._custom_step else step.train_step)(self, data, sampled)

    def test_step(self, *args):
        """Keras' test step (or the user's own), with the arguments of the backend's (JAX: state, data)."""
        return self.user_model.test_step(*args) if self._custom_test else super().test_step(*args)

    @property
    def metrics(self):
        """Keras' metrics of the step that trains: the user's own trackers for a model with its own train_step
        (fit reports and resets what ``metrics`` lists)."""
        if getattr(self, "_custom_step", False):
            return self.user_model.metrics
        return super().metrics

    def reset_metrics(self):
        """Keras' reset at each epoch and before validation, of the user's own trackers too (a model with its
        own train_step keeps its losses in them: unreset, History would show a mean since the first step)."""
        super().reset_metrics()
        if self._custom_step or self._custom_test:
            self.user_model.reset_metrics()

    def peek_row(self) -> dict:
        """The means of every column since the last read, leaving them to be read (host call)."""
        return {**self.acc.peek(), **self.sampled_acc.peek()}

    def read_row(self) -> dict:
        """The interval's means of every column (every-step and sampled ones), and resets them (host call)."""
        if BACKEND == "tensorflow":
            every, sampled = read_and_reset(self.acc, self.sampled_acc)
        else:
            every, sampled = self.acc.read_and_reset(), self.sampled_acc.read_and_reset()
        self.schedule.reset()
        return self._merged(every, sampled)

    def close_row(self):
        """Ends the row's interval and returns a call that reads it (what :meth:`read_row` gives), made in the
        order the rows were closed (host call). On JAX the steps run behind the host, and the read waits for
        the row's last one: the call is made while later steps run, so the host need not wait mid-epoch
        (:attr:`reads_behind`). Elsewhere the row is read now."""
        if BACKEND != "jax":
            read = self.read_row()
            return lambda: read
        self.acc.close()
        self.sampled_acc.close()
        self.schedule.reset()
        return lambda: self._merged(self.acc.read_closed(), self.sampled_acc.read_closed())

    @property
    def reads_behind(self) -> bool:
        """Whether :meth:`close_row`'s reads are best made a row later: the steps run behind the host (JAX)."""
        return BACKEND == "jax"

    @staticmethod
    def _merged(every: dict, sampled: dict) -> dict:
        return {**every, "row": {**every["row"], **sampled["row"]}, "histogram": sampled["histogram"]}

    def learning_rate(self, unread: bool = False):
        """The rate the optimizer applies at the next step (a schedule's at its step count), read on JAX from
        the state fit trains on without writing it back into the model's variables (host call). ``unread``:
        the backend's scalar, not waited for (JAX: the step that makes it may still run), for ``float`` later
        (a copy: fit hands the state's own arrays on to the next step, which frees them)."""
        if BACKEND == "jax":
            state = getattr(self, "_jax_state", None)
            held = bool(state) and not getattr(self, "_jax_state_synced", True) and state.get("optimizer_variables")
            return backend_step().learning_rate(self.optimizer, state["optimizer_variables"] if held else None,
                                                unread)
        return keras.ops.copy(self.optimizer.learning_rate) if unread else float(self.optimizer.learning_rate)

    def _named_inputs(self, x) -> list:
        """``(name, tensor)`` per input: dict keys, else the model's input names, else in0, in1..."""
        if isinstance(x, dict):
            return sorted(x.items())
        flat = keras.tree.flatten(x)
        names = input_names(self.user_model)
        if len(names) != len(flat) or len(set(names)) != len(names):
            names = [f"in{i}" for i in range(len(flat))]
        return list(zip(names, flat))

    def probe_losses(self, x, y, unread: bool = False):
        """The data loss on (x, y) with real, batch-shuffled and zeroed inputs (one host read); the outputs on
        the real inputs are kept in ``probe_outputs`` (numpy, the model's output structure) for the task's error,
        which then needs no forward pass of its own, and those on the shuffled inputs (the batch rolled by one
        example) in ``probe_shuffled_outputs``, for the contract's affine fact at the start.

        ``unread``: a call that reads them later is returned instead; on JAX during fit the passes then run on
        fit's state behind the steps, neither waiting for them nor writing the state into the variables (see
        :func:`~diagnose.instruments.backends.inference.probe_losses`); elsewhere they are read now.
        """
        for name in ("probe_outputs", "probe_shuffled_outputs"):
            object.__setattr__(self, name, None)
        if self._compile_loss is None:  # compiled without a loss: nothing to compare inputs by
            losses = [float("nan")] * 3
            return (lambda: losses) if unread else losses
        found = probe_losses(self, x, y, unread=unread and self.reads_behind)  # compiled as a predict step
        return (lambda: found) if unread and not self.reads_behind else found

    def fit(self, x=None, y=None, *args, callbacks=None, validation_data=None, validation_split=0.0, **kwargs):
        """Keras' ``fit``; a :class:`~diagnose.Monitor` without a probe batch gets one from the data."""
        from diagnose.instruments.preparation import (contract_targets, fit_batch_size, held_out_targets,
                                                      prepare_fit, training_sample)

        prepare_fit(self, x, y, kwargs.get("sample_weight"), validation_split)
        monitors = [c for c in callbacks or [] if isinstance(c, Monitor)]
        targets = contract_targets(y, validation_data, validation_split)
        batch_size = fit_batch_size(x, y, kwargs.get("batch_size"))
        for monitor in monitors:
            monitor.contract_inputs = {"y": targets, "batch_size": batch_size, "epochs": kwargs.get("epochs", 1),
                                       "y_valid": held_out_targets(y, validation_data, validation_split),
                                       "x_sample": training_sample(x),
                                       # Keras' val_loss, summed per batch where the loss sums (None: fit
                                       # validates nothing; a callback may put a per-example loss there)
                                       "validation_batch_size": (kwargs.get("validation_batch_size") or batch_size)
                                       if validation_data is not None or validation_split else None,
                                       "weighted": kwargs.get("sample_weight") is not None
                                       or kwargs.get("class_weight") is not None}
            if monitor.probe is None:
                monitor.auto_probe = probe_batch(x, y, validation_data, validation_split)
                # Training data as a dataset, nothing held out: a batch read before fit would move a
                # reshuffling dataset on (see preparation.build_from), so the probe waits for the end of training.
                monitor.probe_after = x if validation_data is None and isinstance(x, tf.data.Dataset) else None
        try:
            return super().fit(x, y, *args, callbacks=callbacks, validation_data=validation_data,
                               validation_split=validation_split, **kwargs)
        except BaseException as exc:  # the record says the run crashed, then the error goes on to the caller
            for monitor in monitors:
                monitor.record_failure(exc)
            raise


def instrument(model: keras.Model) -> Instrumented:
    """Wraps a compiled Keras 3 model so that training it records the instruments.

    The wrapper shares the model's layers and weights (training it trains the
    user's model), and is compiled with the model's own compile arguments and
    optimizer, so it trains exactly as ``model.fit`` would.

    A model not built yet (a ``Sequential`` without an input shape) is built by
    ``fit`` from its first batch, as its own ``fit`` would. A model compiled without
    a loss trains on the losses its layers add (``add_loss``), as in Keras.

    A model instrumented already is returned as it is.

    Raises:
        DiagnoseError: the model is not a compiled Keras model.
    """
    if isinstance(model, Instrumented):
        return model  # instrumented already: the same wrapper (twice would measure the wrapper's own step)
    if not isinstance(model, keras.Model):
        raise DiagnoseError(f"diagnose.instrument takes a keras.Model, got {type(model).__name__}")
    if getattr(model, "optimizer", None) is None or getattr(model, "_compile_config", None) is None:
        raise DiagnoseError("compile the model (optimizer and loss) before diagnose.instrument(model)")
    config = dict(model._compile_config.config)
    wrapper = Instrumented(model)
    if getattr(model, "output_names", None):  # losses and metrics given by output name find their outputs
        wrapper.output_names = list(model.output_names)
    config["optimizer"] = model.optimizer
    config["jit_compile"] = model.jit_compile  # as resolved for the user's model ("auto" -> its choice)
    # Compiled again without a loss or metrics: Keras keeps those of the compile before, and so does its fit.
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is not None and config.get("metrics") is None and config.get("weighted_metrics") is None:
        config["metrics"], config["weighted_metrics"] = compiled._user_metrics, compiled._user_weighted_metrics
    compiled = getattr(model, "_compile_loss", None)
    if compiled is not None and config.get("loss") is None:
        config["loss"], config["loss_weights"] = compiled._user_loss, compiled._user_loss_weights
    wrapper.compile(**config)
    return wrapper


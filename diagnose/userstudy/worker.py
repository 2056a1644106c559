"""Trains one run of a user study: build, change, instrument, fit, and the outcome on the validation data.

The same steps, in the same order, for every run (and so for every seed):
``keras.backend.clear_session()``, ``keras.utils.set_random_seed(seed)``, the
builder, the mechanical changes, ``diagnose.instrument``, the seed set again, then
``fit`` with a :class:`~diagnose.Monitor` that records the run and how to train it
again. Validation is not left to Keras: at each epoch's end the model's own loss is
taken per example over the validation data (:func:`~diagnose.userstudy.data.validation_loss`),
so runs whose loss sums over the batch and runs whose loss averages compare in one
unit, and that is the ``val_loss`` the record and the verdict see; a classifier's top-1
accuracy on its outputs is its ``val_accuracy``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from diagnose import refs, runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError
from diagnose.instruments.monitor import Monitor
from diagnose.instruments.probe_data import probe_batch
from diagnose.instruments.wrapper import instrument
from diagnose.rebuild import UserRunConfig
from diagnose.userstudy.data import call_user, fit_arguments, loss_step, validation_loss
from diagnose.userstudy.transforms import apply_changes

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["train_task", "train_run"]

# Data functions' results kept per worker process, by (reference, settings): the base
# and its counterfactuals usually share data, and loading it is often the slow part.
_DATA_CACHE: dict = {}
_DATA_CACHE_SIZE = 2
# Instrumented models kept per worker process, by everything of a run but its seed:
# the next seed of the same variant restarts one (Instrumented.restart) instead of
# tracing its train step again, about half of a small model's run. Each holds one
# model, its optimizer and its traced steps.
_MODELS: OrderedDict = OrderedDict()
_MODELS_SIZE = 4


def train_task(config: dict, run_dir: Path, reuse: bool = True) -> dict:
    """The executors' entry point: trains ``UserRunConfig.to_dict()`` into ``run_dir``; returns its summary.

    ``reuse``: restart a model this worker traced for another seed of the same run
    (:meth:`UserRunConfig.group`), as the built-in model's runs share traced steps; False builds
    and traces afresh and keeps nothing.
    """
    return train_run(UserRunConfig.from_dict(config), run_dir, reuse=reuse)


def _data(config: UserRunConfig):
    key = (config.data, json.dumps(config.settings, sort_keys=True))
    if key not in _DATA_CACHE:
        while len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = call_user(refs.resolve(config.data, "data"), config.settings, "data")
    return _DATA_CACHE[key]


def train_run(config: UserRunConfig, run_dir: str | Path, reuse: bool = False) -> dict:
    """Builds, changes, instruments and fits one run; returns its summary.

    ``reuse``: where this process trained a run equal but for the seed, that run's
    instrumented model takes this one's weights and optimizer state and trains
    without tracing again; the record is the one the run writes alone (tested).

    Raises:
        DiagnoseError: the builder does not return a compiled Keras model, or a change
            does not apply (before anything is written); anything the user's code raises.
    """
    keras.backend.clear_session()  # the same layer and variable names in every run of a process
    keras.utils.set_random_seed(config.seed)
    model = call_user(refs.resolve(config.builder, "builder"), config.settings, "builder")
    if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None:
        raise DiagnoseError(f"builder '{config.builder}' must return a compiled keras.Model, got "
                            f"{type(model).__name__}; call model.compile(...) before returning it")
    fit = fit_arguments(_data(config), config.fit, config.data)
    model, fit = apply_changes(model, fit, config.changes)
    valid = fit.pop("validation_data")
    probe = fit.pop("probe", None)
    if probe is None:
        probe = probe_batch(fit.get("x"), fit.get("y"), valid)
    batch = fit.pop("validation_batch_size", None) or fit.get("batch_size") or 32
    key = config.group()
    kept = _MODELS.pop(key, None) if reuse else None
    if kept is None or not kept[0].restart(model):
        kept = (instrument(model), loss_step(model))
    wrapped, step = kept
    monitor = Monitor(run_dir, probe=probe, rebuild=config.to_dict(), overwrite=True, **config.monitor)
    keras.utils.set_random_seed(config.seed)  # the same shuffles and dropout masks whatever the changes drew
    wrapped.fit(**fit, callbacks=[_Validation(step, valid, batch), monitor], verbose=0)  # a crash drops the model
    if reuse:
        _MODELS[key] = kept  # most recently used last
        while len(_MODELS) > _MODELS_SIZE:
            _MODELS.popitem(last=False)
    return runrecord.read_summary(run_dir)


class _Validation(keras.callbacks.Callback):
    """Ahead of the Monitor: the per-example validation loss in ``logs["val_loss"]`` at each epoch's end."""

    def __init__(self, step, valid, batch_size: int):
        super().__init__()
        self.step, self.valid, self.batch_size = step, valid, batch_size  # step: the model's loss_step

    def on_epoch_end(self, epoch, logs=None):
        # A run stopped for diverging keeps its last validation before (or none): what it
        # computes after the blow-up measures the blow-up, not what it learned.
        if logs is not None and not self.model.stop_training:
            logs["val_loss"], accuracy = validation_loss(self.step, self.valid, self.batch_size)
            if accuracy is not None:
                logs["val_accuracy"] = accuracy

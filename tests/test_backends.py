"""instrument + Monitor + check on the Keras backend this process runs on (KERAS_BACKEND), and the same
instrument values across backends.

Keras picks its backend at import, so each backend is tested by its own pytest run:
``KERAS_BACKEND=jax python -m pytest -q tests/test_backends.py`` (and ``torch``); the
default run tests TensorFlow, and (with the slow tests) compares the three backends' figures on
reference models, each backend in a subprocess of its own.
"""

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import ops  # noqa: E402
from test_instrument_use import TinyVAE  # noqa: E402  (its own train_step, a GradientTape: TensorFlow's convention)

BACKEND = keras.backend.backend()
N = 128  # 96 trained on, 6 steps of 16 per epoch
STEPS = 2 * 6


def _data(conv=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6, 6, 1) if conv else (N, 6)).astype("float32")
    flat = x.reshape(N, -1)
    return x, ((flat[:, 0] > 0).astype("int32") + (flat[:, 1] > 1)).astype("int32")


def _model(conv=False, lr=0.01, steps_per_execution=1):
    keras.utils.set_random_seed(1)
    layers = ([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten()]
              if conv else [keras.Input((6,)), keras.layers.Dense(12, activation="relu")])
    model = keras.Sequential([*layers, keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)
    return model


def _fit(conv, instrumented, run_dir=None, lr=0.01):
    x, y = _data(conv)
    model = _model(conv, lr)
    keras.utils.set_random_seed(2)
    fitter = diagnose.instrument(model) if instrumented else model
    callbacks = [diagnose.Monitor(run_dir, log_every=2)] if instrumented else []
    history = fitter.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
                         callbacks=callbacks).history
    return history, model.get_weights()


@pytest.mark.parametrize("conv", [False, True], ids=["mlp", "conv"])
def test_trains_as_plain_fit_and_writes_the_record(conv, tmp_path):
    plain, plain_weights = _fit(conv, False)
    ours, weights = _fit(conv, True, tmp_path / "run")
    assert ours == plain  # same losses, same floats, as the model's own fit on this backend
    for a, b in zip(weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    metrics = runrecord.read_metrics(tmp_path / "run")
    names = [n.split("/")[0] for n in metrics.columns]
    for column in ("loss", "accuracy", "loss_sd", "grad_norm", "update_ratio", "weight_norm", "max_prob",
                   "input_rms", "probe_loss_real", "probe_loss_shuffled", "val_loss"):
        assert column in names, column
    assert len(metrics) == STEPS // 2  # log_every=2
    ratios = [c for c in metrics.columns if c.startswith("update_ratio/")]
    assert len(ratios) == 4 and (metrics["grad_norm/global"] > 0).all() and (metrics[ratios] > 0).all().all()
    summary = runrecord.read_summary(tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    versions = summary["versions"]  # the backend the record was written on, and its library's version
    assert versions["keras_backend"] == BACKEND and versions["keras"] == keras.__version__
    assert BACKEND == "tensorflow" or versions[BACKEND] == importlib.import_module(BACKEND).__version__
    assert "error" not in summary["contract"] and summary["contract"]["constant_loss"] > 0
    # the ReLU layer bends the map from inputs to logits: the contract's affine fact, from a compiled forward pass
    assert summary["contract"]["affine"]["deviation"] > 1e-3
    assert isinstance(str(diagnose.check(tmp_path / "run")), str)


def _fcn():
    """A time-series FCN (three Conv1D blocks with BatchNormalization) at sizes where, on JAX, XLA fused the
    instruments' ops with the step's own and the weights left plain fit's by 1e-4 within four steps."""
    keras.utils.set_random_seed(1)
    blocks = [layer for filters, kernel in ((32, 8), (64, 5), (32, 3)) for layer in (
        keras.layers.Conv1D(filters, kernel, padding="same"), keras.layers.BatchNormalization(), keras.layers.ReLU())]
    model = keras.Sequential([keras.Input((128, 1)), *blocks, keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow  # (on TensorFlow; the other backends' runs take every test of this file)
def test_a_batchnorm_conv_net_trains_bit_for_bit_as_plain_fit(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 128, 1)).astype("float32")
    y = (x[:, :4, 0].sum(1) > 0).astype("int32") + (x[:, 4:8, 0].sum(1) > 1)
    found = []
    for instrumented in (False, True):
        model = _fcn()
        keras.utils.set_random_seed(2)
        fitter = diagnose.instrument(model) if instrumented else model
        callbacks = [diagnose.Monitor(tmp_path / "run", log_every=2)] if instrumented else []
        history = fitter.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks).history
        found.append((history, model.get_weights()))
    (plain, plain_weights), (ours, weights) = found
    assert ours == plain
    for a, b in zip(weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_does_not_wait_for_each_step_on_a_monitor(tmp_path):
    # On JAX and PyTorch Keras overlaps the next step with the last one's logs unless a callback's batch hook
    # must run in turn; the Monitor's runs on fit's thread from the train function, and rows land on their steps.
    from keras.src.callbacks.callback_list import CallbackList

    callbacks = CallbackList([diagnose.Monitor(tmp_path / "run")])
    assert callbacks._async_train == (BACKEND != "tensorflow")
    _fit(False, True, tmp_path / "run")
    assert list(runrecord.read_metrics(tmp_path / "run")["step"]) == list(range(2, STEPS + 1, 2))


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX's fit trains on a state apart from the model's variables")
def test_the_monitor_never_copies_jaxs_state_into_the_variables(tmp_path, monkeypatch):
    # Keras' Callback.model copies every weight into the variables at each read; fit then takes them back out at
    # its next step. The Monitor reads rows, the learning rate and the accumulators without them, and its probes
    # run on the state fit holds.
    x, y = _data()
    wrapper = diagnose.instrument(_model())
    copies, sync = [], type(wrapper).jax_state_sync

    def counted(self):
        copies.append(bool(getattr(self, "_jax_state", None)) and not self._jax_state_synced)
        sync(self)

    monkeypatch.setattr(type(wrapper), "jax_state_sync", counted)
    monkeypatch.setattr(keras.Model, "jax_state_sync", counted)
    plain = _model()
    plain.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    fits_own = sum(copies)  # at each epoch's end and after each validation
    assert fits_own >= 2
    for probe_every in (0, 4):  # (probes at steps 4 and 8 mid-epoch; 12 is an epoch's end)
        copies.clear()
        wrapper.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
                    callbacks=[diagnose.Monitor(tmp_path / f"run{probe_every}", log_every=1, probe_every=probe_every,
                                                probe=(x[:16], y[:16]))])
        assert len(runrecord.read_metrics(tmp_path / f"run{probe_every}")) == STEPS
        assert sum(copies) == fits_own, (probe_every, copies)


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX's probes run on the state fit holds")
def test_a_probe_on_fits_state_reads_what_a_probe_on_the_variables_reads(tmp_path, monkeypatch):
    from diagnose.instruments.backends import inference

    x, y = _data()
    found = []
    for on_state in (True, False):
        if not on_state:  # the state written into the variables first, as Keras' Callback.model would
            monkeypatch.setattr(inference, "_fit_weights", lambda model: None)
        keras.utils.set_random_seed(3)
        run = tmp_path / f"run{on_state}"
        diagnose.instrument(_model()).fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[
            diagnose.Monitor(run, log_every=2, probe_every=4, probe=(x[:16], y[:16]))])
        found.append(runrecord.read_metrics(run).filter(regex="^probe_").dropna(how="all"))
    assert len(found[0]) >= 3 and {"probe_loss_real", "probe_task_error"} <= set(found[0].columns)
    pd.testing.assert_frame_equal(found[0], found[1])


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX's steps run behind the host")
def test_rows_read_a_row_late_are_the_rows_read_at_once(tmp_path, monkeypatch):
    # On JAX a row is read while the next row's steps run; each row must hold its own steps' means all the same.
    from diagnose.instruments.wrapper import Instrumented

    found = {}
    for behind in (True, False):
        monkeypatch.setattr(Instrumented, "reads_behind", property(lambda self, b=behind: b))
        x, y = _data()
        keras.utils.set_random_seed(2)
        diagnose.instrument(_model()).fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
                                          callbacks=[diagnose.Monitor(tmp_path / str(behind), log_every=1)])
        found[behind] = runrecord.read_metrics(tmp_path / str(behind))
    assert len(found[True]) == STEPS and found[True]["loss"].nunique() == STEPS
    # (the second model's layers are numbered on: its columns' names differ, in the same order)
    pd.testing.assert_frame_equal(found[True], found[False].set_axis(found[True].columns, axis=1))


def test_a_diverging_run_is_recorded_where_it_diverged(tmp_path):
    ours, _ = _fit(False, True, tmp_path / "run", lr=1e6)
    summary = runrecord.read_summary(tmp_path / "run")
    assert summary["status"] == "diverged" and 1 <= summary["diverged_at"]["step"] <= summary["steps"]
    assert not math.isfinite(ours["loss"][-1]) or summary["diverged_at"]["variable"]


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "torch", reason="Keras' PyTorch trainer runs one step per call")
def test_several_steps_per_call_train_as_plain_fit_and_record_every_step(tmp_path):
    # 4 steps a call, 6 steps an epoch: each epoch's second call runs short (2 steps)
    x, y = _data()
    several = functools.partial(_model, steps_per_execution=4)
    _assert_as_plain_fit(ours := _fit_model(several, x, y, tmp_path / "four", validation_split=0.25),
                         _fit_model(several, x, y, validation_split=0.25))
    _fit_model(_model, x, y, tmp_path / "one", validation_split=0.25)
    assert ours[0] == _fit_model(_model, x, y, validation_split=0.25)[0]  # the same run, one step a call
    four, one = (runrecord.read_metrics(tmp_path / run) for run in ("four", "one"))
    assert runrecord.read_summary(tmp_path / "four")["steps"] == STEPS and four["step"].iloc[-1] == STEPS

    def step_mean(metrics):  # each row the mean of its steps' losses
        return np.average(metrics["loss"], weights=np.diff(metrics["step"], prepend=0))

    # every step's loss counted once, whichever calls ran it
    np.testing.assert_allclose(step_mean(four), step_mean(one), rtol=1e-5)
    if BACKEND == "jax":  # steps run one by one from the host: rows on their own steps, each as one step a call
        assert list(four["step"]) == list(range(2, STEPS + 1, 2))
        assert four.shape == one.shape  # (the layers' names differ, numbered by Keras at each build)
        np.testing.assert_allclose(four.to_numpy(float), one.to_numpy(float), rtol=1e-5)


def _two_outputs():
    """A classifier head and a regression head on one trunk, weighted losses by output name."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(12, activation="relu")(inputs)
    outputs = {"kind": keras.layers.Dense(3, activation="softmax", name="kind")(hidden),
               "size": keras.layers.Dense(1, name="size")(hidden)}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"kind": "sparse_categorical_crossentropy",
                                                               "size": "mse"},
                  loss_weights={"kind": 1.0, "size": 0.5}, metrics={"kind": ["accuracy"]})
    return model


def _fit_model(build, x, y, run_dir=None, **kwargs):
    model = build()
    keras.utils.set_random_seed(2)
    fitter = diagnose.instrument(model) if run_dir else model
    callbacks = [diagnose.Monitor(run_dir, log_every=2)] if run_dir else []
    history = fitter.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks, **kwargs).history
    return history, model.get_weights()


def _assert_as_plain_fit(ours, plain):
    (history, weights), (plain_history, plain_weights) = ours, plain
    assert history == plain_history
    for a, b in zip(weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_with_several_outputs_trains_as_plain_fit_and_records_each_output(tmp_path):
    x, labels = _data()
    y = {"kind": labels, "size": (x[:, :1] * 2.0 + x[:, 1:2]).astype("float32")}
    plain = _fit_model(_two_outputs, x, y, validation_split=0.25)
    ours = _fit_model(_two_outputs, x, y, tmp_path / "run", validation_split=0.25)
    _assert_as_plain_fit(ours, plain)
    metrics = runrecord.read_metrics(tmp_path / "run")
    for column in ("loss", "loss/kind", "loss/size", "accuracy/kind", "max_prob/kind", "target_prob/kind"):
        assert column in metrics.columns and metrics[column].notna().all(), column
    assert "accuracy/size" not in metrics.columns and "max_prob/size" not in metrics.columns
    # the loss is Keras' weighted sum of the outputs' losses
    np.testing.assert_allclose(metrics["loss"], metrics["loss/kind"] + 0.5 * metrics["loss/size"], rtol=1e-5)
    assert runrecord.read_summary(tmp_path / "run")["status"] == "completed"


class OwnStepVAE(TinyVAE):
    """The small VAE with its own train_step (and test_step), written as Keras' guide "customizing what happens
    in fit()" writes them on the backend this process runs on: stateless ``train_step(state, data) ->
    (logs, state)`` on JAX, eager with ``zero_grad``/``backward``/``optimizer.apply`` on PyTorch, TinyVAE's
    own ``GradientTape`` on TensorFlow."""

    if BACKEND == "jax":
        def train_step(self, state, data):
            import jax

            trainable, non_trainable, optimizer_variables, metrics_variables = state
            x = data[0] if isinstance(data, tuple) else data

            def loss_of(trainable):
                out, updated = self.stateless_call(trainable, non_trainable, x, training=True)
                return ops.mean(ops.square(out - x)), updated

            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
            trainable, optimizer_variables = self.optimizer.stateless_apply(optimizer_variables, grads, trainable)
            metrics_variables = self.total.stateless_update_state(metrics_variables, loss)
            logs = {"loss": self.total.stateless_result(metrics_variables)}
            return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

        def test_step(self, state, data):
            trainable, non_trainable, metrics_variables = state
            x = data[0] if isinstance(data, tuple) else data
            out, non_trainable = self.stateless_call(trainable, non_trainable, x)
            metrics_variables = self.total.stateless_update_state(metrics_variables, ops.mean(ops.square(out - x)))
            return {"loss": self.total.stateless_result(metrics_variables)}, (trainable, non_trainable,
                                                                               metrics_variables)
    elif BACKEND == "torch":
        def train_step(self, data):
            import torch

            x = data[0] if isinstance(data, tuple) else data
            self.zero_grad()
            loss = ops.mean(ops.square(self(x, training=True) - x))
            loss.backward()
            grads = [v.value.grad for v in self.trainable_weights]
            with torch.no_grad():
                self.optimizer.apply(grads, self.trainable_weights)
            self.total.update_state(loss)
            return {"loss": self.total.result()}


def _own_step(steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = OwnStepVAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=steps_per_execution)
    model(np.zeros((2, 6), "float32"))
    return model


@pytest.mark.parametrize("steps_per_execution", [
    1, pytest.param(4, marks=pytest.mark.skipif(BACKEND == "torch", reason="Keras' PyTorch trainer: one step a call"))])
def test_a_model_with_its_own_train_step_trains_as_plain_fit_and_is_measured_from_outside(steps_per_execution,
                                                                                           tmp_path):
    x, _ = _data()
    build = functools.partial(_own_step, steps_per_execution)
    plain = _fit_model(build, x, x, validation_data=(x[:32], x[:32]))
    ours = _fit_model(build, x, x, tmp_path / "run", validation_data=(x[:32], x[:32]))
    _assert_as_plain_fit(ours, plain)
    metrics = runrecord.read_metrics(tmp_path / "run")
    ratios = [c for c in metrics.columns if c.startswith("update_ratio/")]
    assert len(ratios) == 8 and (metrics[ratios] > 0).all().all()  # 4 layers' kernel and bias
    assert metrics["loss"].notna().all() and (metrics["loss"] > 0).all() and "val_loss" in metrics.columns
    assert runrecord.read_summary(tmp_path / "run")["status"] == "completed"


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's own steps take the state fit hands them")
def test_an_own_jax_step_whose_state_would_differ_from_its_own_fits_is_refused(monkeypatch):
    x, _ = _data()
    wrapper = diagnose.instrument(_own_step())
    extra = keras.Variable(0.0, trainable=False)
    monkeypatch.setattr(type(wrapper), "non_trainable_variables",
                        property(lambda self: [*self.user_model.non_trainable_variables, extra]))
    with pytest.raises(DiagnoseError, match="non_trainable_variables differ"):
        wrapper.fit(x, x, batch_size=16, epochs=1, verbose=0)



def test_attention_and_branches_are_measured_on_this_backend(tmp_path):
    from backend_reference import attention_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, size=(64, 6)).astype("int32")
    keras.utils.set_random_seed(0)
    model = attention_model()
    table = model.get_layer("pos_table").table.numpy()
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped = diagnose.instrument(model)
    assert wrapped.taps.found == {"table": 1, "mha": 1, "add": 1, "softmax": 1}
    wrapped.fit(x, x[:, 0] % 3, batch_size=32, epochs=1, shuffle=False, verbose=0,
                callbacks=[diagnose.Monitor(tmp_path, log_every=1, tensorboard=False)])
    row = runrecord.read_metrics(tmp_path).iloc[0]
    # The table as it stood in the first step, and a causal mask over 6 keys forbidding 15 of 36 slots.
    assert row["rms/pos_table/position"] == pytest.approx(np.sqrt(np.mean(table ** 2)), rel=1e-5)
    assert row["attn_masked/hop1"] == pytest.approx(15 / 36) and row["attn_masked/hop2"] == 0
    for column in ("attn_entropy/hop1", "attn_entropy/hop2", "rms/pos_table/content", "rms/residual/pos_table",
                   "rms/residual/mha"):
        assert 0 < row[column] < 10, column
    assert 0 < row["attn_pad_mass/hop2"] < 1  # id 0 read as padding from the integer input of 6 ids
    # Its two sites differ in shape (heads and queries against steps): no winning-slot counts to write.
    assert not (tmp_path / runrecord.ATTENTION).exists()


def test_attention_csv_counts_the_winning_slots_on_this_backend(tmp_path):
    from backend_reference import stacked_attention_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, size=(64, 6)).astype("int32")
    keras.utils.set_random_seed(0)
    model = stacked_attention_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    diagnose.instrument(model).fit(x, x[:, 0] % 3, batch_size=32, epochs=1, shuffle=False, verbose=0,
                                   callbacks=[diagnose.Monitor(tmp_path, log_every=1, tensorboard=False)])
    counts = pd.read_csv(tmp_path / runrecord.ATTENTION)
    slots = [f"pos{i}" for i in range(6)]
    assert list(counts.columns) == ["step", "hop", *slots]
    assert sorted(zip(counts["step"], counts["hop"])) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # Each step's rows: 32 examples x 2 heads x 6 queries per site, each won by one slot.
    assert (counts[slots].sum(axis=1) == 32 * 2 * 6).all()
    # The first layer is causal: the first query of each example and head sees slot 0 alone.
    assert (counts.loc[counts["hop"] == 1, "pos0"] >= 32 * 2).all()


# The columns the reference run compares: every instrument read on both steps; on the attention model, also
# the attention and branch-balance columns (its loss_sd, the spread of a one-step interval, is 0 up to a
# float32 rounding that sqrt blows up to ~1e-4: not compared).
_COMPARED = ("loss", "loss_sd", "grad_norm/", "update_ratio/", "weight_norm/", "max_prob", "target_prob",
             "target_at_floor", "input_rms/", "probe_loss_")
_TAPPED = ("attn_entropy/hop1", "attn_top1/hop1", "attn_pad_mass/hop1", "attn_masked/hop1", "attn_entropy/hop2",
           "attn_top1/hop2", "attn_pad_mass/hop2", "attn_masked/hop2", "rms/pos_table/content",
           "rms/pos_table/position", "rms/residual/pos_table", "rms/residual/mha")


@pytest.mark.slow  # (each other backend trains four reference runs in a process of its own: ~40 s)
@pytest.mark.skipif(BACKEND != "tensorflow", reason="run once, from the default (TensorFlow) run")
def test_the_same_model_gives_the_same_instrument_values_on_every_backend(tmp_path):
    backends = ["tensorflow"] + [b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None]
    if len(backends) == 1:
        pytest.skip("neither jax nor torch is installed (pip install '.[jax]' or '.[torch]')")
    script = Path(__file__).with_name("backend_reference.py")
    found = {}
    for backend in backends:
        out = tmp_path / f"{backend}.json"
        env = {**os.environ, "KERAS_BACKEND": backend}
        subprocess.run([sys.executable, str(script), str(out)], env=env, check=True, timeout=600)
        found[backend] = json.loads(out.read_text())
        assert found[backend]["backend"] == backend
    reference = found["tensorflow"]["runs"]
    for backend in backends:  # the stacked run's winning-slot counts: two steps of two hops
        assert len(found[backend]["attention"]["stacked"]) == 4, backend
    for backend in backends[1:]:
        # attention.csv as TensorFlow writes it (where it writes one: the stacked run), the same counts
        assert found[backend]["attention"] == found["tensorflow"]["attention"], backend
        for optimizer, rows in found[backend]["runs"].items():
            assert len(rows) == len(reference[optimizer]) == 2
            for ours, theirs in zip(rows, reference[optimizer]):
                columns = [c for c in theirs if c.startswith(_COMPARED)]
                if optimizer == "attention":
                    assert set(_TAPPED) <= set(theirs), set(_TAPPED) - set(theirs)
                    columns = [c for c in columns if c != "loss_sd"] + list(_TAPPED)
                elif optimizer == "stacked":
                    tapped = [c for c in theirs if c.startswith(("attn_entropy/", "attn_top1/"))]
                    assert len(tapped) == 4, tapped  # two hops
                    columns = [c for c in columns if c != "loss_sd"] + tapped
                else:
                    assert len([c for c in columns if c.startswith("grad_norm/")]) == 5  # 4 variables and global
                assert set(columns) <= set(ours), set(columns) - set(ours)
                for column in columns:
                    if theirs[column] is None or math.isnan(theirs[column]):  # a row without a probe on both
                        assert ours[column] is None or math.isnan(ours[column]), (backend, optimizer, column)
                        continue
                    assert ours[column] == pytest.approx(theirs[column], rel=1e-4, abs=1e-6), \
                        (backend, optimizer, column)


@pytest.mark.slow
def test_a_study_and_a_proof_run_on_this_backend(tmp_path):
    # A user's model studied and proven on the backend this process runs on (the runs in spawned workers,
    # which take the backend from KERAS_BACKEND as this process did): the same seed gives the same record
    # twice, and a proof trains the fix of the cause the rules name.
    from diagnose import studydir

    builder, data = "userstudy_models:build", "userstudy_models:data"
    runs = []
    for out in ("a", "b"):
        result = diagnose.study(builder, data, seeds=[3], fit={"epochs": 1}, monitor={"log_every": 4}, name="one",
                                out=tmp_path / out, jobs=1, verbose=0)
        (run,) = (tmp_path / out / studydir.RUNS).iterdir()
        runs.append((run.name, (run / runrecord.METRICS).read_text()))
        assert result.verdict.mode == "effects"
    assert runs[0] == runs[1] and len(runs[0][1].splitlines()) > 2
    assert json.loads((run / "config.json").read_text())  # the record as every backend writes it
    # SGD at 1e-4: steps far too small; raising the rate helps on every backend (2 seeds of 2 epochs do not
    # always make the interval exclude zero, so the sign of the mean effect is what is asserted)
    proof = diagnose.prove(builder, data, {"optimizer": "sgd", "lr": 1e-4}, fit={"epochs": 2, "batch_size": 32},
                           monitor={"log_every": 4}, seeds=2, max_seeds=2, out=tmp_path / "proof", jobs=1)
    assert proof.findings and proof.findings[0]["id"] == "tiny-steps"
    assert proof.status("tiny-steps") in ("proven", "inconclusive") and proof.findings[0]["effect"] < 0


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the built-in MemN2N trains on TensorFlow")
@pytest.mark.parametrize("command", [["run-ablation", "--seeds", "1"], ["train"]])
def test_the_built_in_memn2n_is_refused_in_one_line_off_tensorflow(command, tmp_path, capsys):
    from diagnose.cli import main

    with pytest.raises(SystemExit) as done:
        main([*command, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and "KERAS_BACKEND=tensorflow" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_a_model_with_every_weight_frozen_trains_as_plain_fit(tmp_path):
    # Nothing to update: Keras trains nothing; the gradient and update families have no variable.
    def frozen():
        model = _model()
        for layer in model.layers:
            layer.trainable = False
        model.compile(optimizer="sgd")  # compiled again: Keras keeps the loss and metrics of the first compile
        return model

    x, y = _data()
    ours = _fit_model(frozen, x, y, tmp_path / "run")
    _assert_as_plain_fit(ours, _fit_model(frozen, x, y))
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert metrics["loss"].notna().all() and not [c for c in metrics.columns if c.startswith("grad_norm/d")]
    assert runrecord.read_summary(tmp_path / "run")["status"] == "completed"


def test_the_learning_rate_logged_is_the_schedules_at_each_row(tmp_path):
    # Read from the optimizer's state as fit holds it (on JAX without writing the state back into the model).
    def scheduled():
        model = _model()
        model.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.9)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    x, y = _data()
    ours = _fit_model(scheduled, x, y, tmp_path / "run")
    _assert_as_plain_fit(ours, _fit_model(scheduled, x, y))
    metrics = runrecord.read_metrics(tmp_path / "run")
    np.testing.assert_allclose(metrics["learning_rate"], 0.01 * 0.9 ** metrics["step"], rtol=1e-5)


def test_the_learning_rate_a_callback_sets_is_the_one_logged(tmp_path):
    # A rate held in a variable that a callback moves between epochs (on JAX read from fit's state, jitted)
    x, y = _data()
    steps = -(-len(x) // 16)
    callbacks = [keras.callbacks.LearningRateScheduler(lambda epoch: 0.01 / (epoch + 1)),
                 diagnose.Monitor(tmp_path / "run", log_every=3)]
    model = diagnose.instrument(_model())
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks)
    metrics = runrecord.read_metrics(tmp_path / "run")
    epoch = (metrics["step"].to_numpy() - 1) // steps
    np.testing.assert_allclose(metrics["learning_rate"], 0.01 / (epoch + 1), rtol=1e-6)
    assert set(epoch) == {0, 1, 2}


def test_the_every_step_ops_are_keras_ops_on_this_backend():
    # On PyTorch the classifier's view and accuracy run in torch's own ops (keras.ops elsewhere): the same values
    # and dtypes as keras.ops for the arguments they are given, the first maximum winning argmax's ties.
    from diagnose.instruments.eager_ops import every_step_ops

    fast, rng = every_step_ops(), np.random.default_rng(0)
    scores = ops.convert_to_tensor(np.concatenate([rng.normal(size=(6, 4)), np.ones((2, 4))]).astype("float32"))
    labels = ops.convert_to_tensor(np.array([0, 3, 2, 255, -1, 1, 0, 2], "int64"))
    mask = ops.convert_to_tensor(np.array([1, 0, 1, 1, 1, 1, 0, 1], bool))
    for name, args in [("argmax", (scores,)), ("cast", (labels, "int32")), ("cast", (mask, "float32")),
                       ("reshape", (scores, (-1, 2))), ("equal", (labels, labels)), ("logical_and", (mask, mask)),
                       ("where", (mask, labels, ops.zeros_like(labels))), ("zeros_like", (labels,)),
                       ("sigmoid", (scores,)), ("stack", ([scores, scores], -1)), ("sum", (scores,)),
                       ("mean", (scores,)), ("maximum", (ops.sum(scores), 1e-12)), ("convert_to_tensor", (labels,)),
                       ("isfinite", (ops.log(scores),)), ("all", (mask,)), ("logical_not", (mask,)),
                       ("concatenate", ([ops.reshape(scores, (-1,)), ops.cast(labels, "float32")], 0))]:
        kwargs = {"axis": -1} if name == "argmax" else {}
        got, want = getattr(fast, name)(*args, **kwargs), getattr(ops, name)(*args, **kwargs)
        assert keras.backend.standardize_dtype(got.dtype) == keras.backend.standardize_dtype(want.dtype), name
        np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(want), err_msg=name)
    assert list(ops.convert_to_numpy(fast.argmax(scores, axis=-1))[-2:]) == [0, 0]


def test_attention_figures_read_each_mask_in_its_own_shape_as_if_broadcast():
    # A MultiHeadAttention's (B, heads, queries, S) weights with padding read from the batch (B, 1, 1, S) and
    # a causal mask given as (queries, S): the figures those masks give broadcast to the weights' size; two
    # sites of one shape count their winning slots site by site, the first maximum winning ties.
    from diagnose.instruments import attention
    from diagnose.instruments.family import HISTOGRAM, AttentionSite, Step
    from diagnose.instruments.measures import argmax_histogram, scalars

    rng = np.random.default_rng(7)
    b, h, q, s = 3, 2, 4, 5
    ids = rng.integers(0, 4, size=(b, s)).astype("int32")
    causal = np.triu(np.ones((q, s), bool), 1)
    p = np.round(rng.random((2, b, h, q, s)), 1).astype("float32") + 1e-3
    p /= p.sum(-1, keepdims=True)
    step = Step(names=[], norms=[], inputs=[("tokens", ops.convert_to_tensor(ids))],
                attention=[AttentionSite(ops.convert_to_tensor(p[0]), masked=ops.convert_to_tensor(causal)),
                           AttentionSite(ops.convert_to_tensor(p[1]))])
    row = attention.measure(step)
    counts = ops.convert_to_numpy(row.pop(HISTOGRAM))
    got = {k: float(v) for k, v in scalars(row).items()}
    pad = np.broadcast_to((ids == 0)[:, None, None, :], p[0].shape)
    mask = np.broadcast_to(causal, p[0].shape)
    allowed = (~mask).sum(-1)
    entropy = -(p[0] * np.log(p[0])).sum(-1) / np.log(np.maximum(allowed, 2))
    assert got["attn_entropy/hop1"] == pytest.approx(entropy.mean(), rel=1e-5)
    assert got["attn_entropy/hop2"] == pytest.approx((-(p[1] * np.log(p[1])).sum(-1) / np.log(s)).mean(), rel=1e-5)
    assert got["attn_masked/hop1"] == pytest.approx(mask.mean()) and got["attn_masked/hop2"] == 0
    for k in range(2):
        assert got[f"attn_pad_mass/hop{k + 1}"] == pytest.approx((p[k] * pad).sum(-1).mean(), rel=1e-5)
        assert got[f"attn_top1/hop{k + 1}"] == pytest.approx(p[k].max(-1).mean(), rel=1e-5)
    expected = np.stack([np.bincount(p[k].reshape(-1, s).argmax(-1), minlength=s) for k in range(2)])
    np.testing.assert_array_equal(counts, expected)
    one = p[0].reshape(-1, s)
    np.testing.assert_array_equal(ops.convert_to_numpy(argmax_histogram(ops.convert_to_tensor(one))),
                                  np.bincount(one.argmax(-1), minlength=s))


def test_a_sampled_step_reads_its_gradients_finiteness_from_their_norms_as_entry_by_entry():
    # Eager steps take the non-finite flags from the gradients' norms where every norm is finite, and read the
    # entries only where one is not: the flags are those of the entry-by-entry check in every case, a gradient
    # whose squares pass float32's range (its norm infinite, its entries finite) included.
    from diagnose.instruments.backends.common import _nonfinite, _nonfinite_by_norms
    from diagnose.instruments.measures import norms

    def grads(*special):
        out = [np.ones((3, 4), "float32"), np.arange(5, dtype="float32"), np.full((2,), 0.5, "float32")]
        for at, value in special:
            out[at] = out[at].copy()
            out[at].flat[1] = value
        return [ops.convert_to_tensor(g) for g in out]

    cases = {"finite": grads(), "nan": grads((1, np.nan)), "inf": grads((0, -np.inf)),
             "squares past float32": grads((2, 1e30)), "two": grads((0, np.nan), (2, np.inf))}
    for loss in (1.5, float("nan")):
        loss = ops.convert_to_tensor(loss, "float32")
        for name, gs in cases.items():
            read = ops.convert_to_numpy(_nonfinite_by_norms(loss, gs, norms(gs))).tolist()
            assert read == ops.convert_to_numpy(_nonfinite(loss, gs)).tolist(), name
        assert ops.convert_to_numpy(_nonfinite_by_norms(loss, [], [])).tolist() == [not np.isfinite(
            float(ops.convert_to_numpy(loss)))]
    assert ops.convert_to_numpy(_nonfinite_by_norms(ops.convert_to_tensor(1.0), cases["squares past float32"],
                                                    norms(cases["squares past float32"]))).tolist() == [False] * 4

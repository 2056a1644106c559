"""What instrument and Monitor accept and refuse, saving an instrumented model, and losses with options."""

from __future__ import annotations

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError

import_tensorflow_quietly()
import keras  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 6)).astype("float32")
Y = (X[:, 0] > 0).astype("int32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_instrumenting_twice_returns_the_same_wrapper_and_trains_as_once(tmp_path):
    once = diagnose.instrument(_model())
    assert diagnose.instrument(once) is once
    history = once.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=[diagnose.Monitor(tmp_path)])
    plain = _model().fit(X, Y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(history.history["loss"], plain.history["loss"], rtol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    ({"log_every": 0}, "log_every=0 is not a positive integer"),
    ({"log_every": "10"}, "log_every='10' is not a positive integer"),
    ({"log_every": -1}, "log_every=-1"),
    ({"probe_every": -1}, "probe_every=-1 is not a positive integer, or 0"),
    ({"probe": X[:8]}, "probe must be an (x, y) pair"),
])
def test_monitor_refuses_bad_settings_at_the_call_in_one_line(tmp_path, kwargs, words):
    with pytest.raises(DiagnoseError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        diagnose.Monitor(tmp_path / "run", **kwargs)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("probe_rows, probed", [(64, [12]), (4, [8, 12]), (1, [2, 4, 8, 12])])
def test_the_default_probes_skip_the_rows_the_training_since_the_last_probe_cannot_pay_for(tmp_path, probe_rows,
                                                                                             probed):
    # Rows 1, 2, 4, 8 and the last of 12 one-step rows of 16 examples: a probe of P examples costs about P / 16
    # steps, taken once the steps since the last probe (the first before step 1) number 20 times that.
    monitor = diagnose.Monitor(tmp_path, log_every=1, probe=(X[:probe_rows], Y[:probe_rows]), tensorboard=False)
    diagnose.instrument(_model()).fit(X[:64], Y[:64], epochs=3, batch_size=16, verbose=0, callbacks=[monitor])
    metrics = runrecord.read_metrics(tmp_path)
    assert list(metrics.loc[metrics["probe_loss_real"].notna(), "step"]) == probed


def test_a_probe_that_does_not_fit_the_model_is_refused_before_anything_traces(tmp_path):
    model = diagnose.instrument(_model())
    monitor = diagnose.Monitor(tmp_path, probe=(np.zeros((8, 5), "float32"), Y[:8]))
    with pytest.raises(DiagnoseError, match="do not fit the model's inputs"):
        model.fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[monitor])


def test_saving_an_instrumented_model_saves_the_user_s_model_loadable_without_diagnose(tmp_path):
    model = _model()
    wrapped = diagnose.instrument(model)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ck.keras"))
    wrapped.fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[checkpoint, diagnose.Monitor(tmp_path / "r")])
    wrapped.save(tmp_path / "model.keras")
    wrapped.save_weights(tmp_path / "w.weights.h5")
    for path in ("ck.keras", "model.keras"):
        loaded = keras.models.load_model(tmp_path / path)
        assert type(loaded).__name__ == "Sequential"
        np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)
    fresh = _model()
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(fresh.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_a_loss_that_ignores_a_class_trains_as_plain_fit(tmp_path):
    # A segmentation-like mask with an 'ignore' label of 255 outside the classes.
    labels = np.where(RNG.random((96, 4)) < 0.2, 255, RNG.integers(0, 3, (96, 4))).astype("int32")

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        out = keras.layers.Reshape((4, 3))(keras.layers.Dense(12)(inputs))
        model = keras.Model(inputs, keras.layers.Softmax()(out))
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=255))
        return model

    history = diagnose.instrument(build()).fit(X, labels, epochs=2, batch_size=16, verbose=0,
                                               callbacks=[diagnose.Monitor(tmp_path)])
    plain = build().fit(X, labels, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(history.history["loss"], plain.history["loss"], rtol=1e-6)
    assert runrecord.read_summary(tmp_path)["status"] == "completed"
    assert runrecord.read_metrics(tmp_path)["target_prob"].notna().any()  # measured on the labelled rows
    # The ignored label is no target: the contract counts the labelled ones only, so 255 with 3 units is not
    # read as labels beyond the classes (labels-not-class-indices).
    from diagnose.findings import check_run

    contract = runrecord.read_summary(tmp_path)["contract"]
    targets = contract["targets"]
    assert contract["loss"]["ignore_class"] == 255 and targets["max"] <= 2
    assert targets["ignored_share"] == pytest.approx(float(np.mean(labels == 255)), abs=1e-6)
    assert "labels-not-class-indices" not in [f.id for f in check_run(tmp_path)]


def test_a_model_with_every_layer_frozen_trains_as_plain_fit_and_is_named_frozen(tmp_path):
    from diagnose.findings import check_run

    def build():
        model = _model()
        for layer in model.layers:
            layer.trainable = False
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        history = diagnose.instrument(build()).fit(X, Y, epochs=2, batch_size=16, verbose=0,
                                                   callbacks=[diagnose.Monitor(tmp_path)])
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        plain = build().fit(X, Y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(history.history["loss"], plain.history["loss"], rtol=1e-6)
    assert runrecord.read_summary(tmp_path)["status"] == "completed"
    assert "frozen-layers" in [f.id for f in check_run(tmp_path)]


class Sampling(keras.layers.Layer):
    """Draws z = mean + sd * eps in every call, training or not (as a VAE's sampling layer does)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        mean, log_var = inputs
        return mean + keras.ops.exp(0.5 * log_var) * keras.random.normal(keras.ops.shape(mean),
                                                                         seed=self.seed_generator)


class TinyVAE(keras.Model):
    """A model with its own train_step and loss trackers, compiled with an optimizer only."""

    def __init__(self):
        super().__init__()
        self.encoder, self.mean, self.log_var = (keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2),
                                                 keras.layers.Dense(2))
        self.sample, self.decoder = Sampling(), keras.layers.Dense(6)
        self.total = keras.metrics.Mean(name="loss")

    def call(self, x, training=None):
        h = self.encoder(x)
        return self.decoder(self.sample([self.mean(h), self.log_var(h)]))

    @property
    def metrics(self):
        return [self.total]

    def train_step(self, data):
        import tensorflow as tf

        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(self(x, training=True) - x))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.total.update_state(loss)
        return {"loss": self.total.result()}

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        self.total.update_state(keras.ops.mean(keras.ops.square(self(x) - x)))
        return {"loss": self.total.result()}


def _vae():
    keras.utils.set_random_seed(0)
    model = TinyVAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model(X[:2])
    return model


def test_a_model_with_its_own_train_step_trains_as_plain_fit_history_and_weights(tmp_path):
    plain_model = _vae()
    keras.utils.set_random_seed(1)
    plain = plain_model.fit(X, X, validation_data=(X[:32], X[:32]), epochs=3, batch_size=16, verbose=0)
    ours_model = _vae()
    keras.utils.set_random_seed(1)
    ours = diagnose.instrument(ours_model).fit(X, X, validation_data=(X[:32], X[:32]), epochs=3, batch_size=16,
                                               verbose=0, callbacks=[diagnose.Monitor(tmp_path)])
    for key in ("loss", "val_loss"):  # reset each epoch and before validation, as Keras does
        np.testing.assert_allclose(ours.history[key], plain.history[key], rtol=1e-5, err_msg=key)
    for a, b in zip(plain_model.get_weights(), ours_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)  # the probes drew nothing from the sampling layer

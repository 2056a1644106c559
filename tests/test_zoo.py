"""A zoo of models and Keras training features: each trains under instrument + Monitor exactly as under its own
fit (History and final weights), and BackupAndRestore resumes an instrumented fit."""

from __future__ import annotations

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402
from test_instrument_use import Sampling  # noqa: E402  (the reparameterisation draw, a SeedGenerator of its own)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(256, 12)).astype("float32")
Y = np.argmax(X[:, :3], axis=1).astype("int32")
TOKENS = RNG.integers(1, 50, size=(256, 10)).astype("int32")
TOKENS[:, 7:] = 0  # padding
Y_TOKENS = (TOKENS[:, 0] > 25).astype("float32")
IMAGES = RNG.normal(size=(128, 8, 8, 3)).astype("float32")
Y_IMAGES = (IMAGES[:, :4, :4, 0].mean(axis=(1, 2)) > 0).astype("int32")


def _mlp(optimizer=None, **compile_kwargs):
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], **compile_kwargs)
    return model


def _encoder():
    """A one-block BERT-like encoder: embeddings with a padding mask, self-attention, LayerNorm, pooling."""
    tokens = keras.Input((10,), dtype="int32")
    h = keras.layers.Embedding(50, 16, mask_zero=True)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    h = keras.layers.LayerNormalization()(h + attended)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(16, activation="gelu")(h))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(tokens, out)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _masked_lstm():
    model = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(50, 8, mask_zero=True),
                              keras.layers.LSTM(8), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def _resnet():
    """Two residual blocks of Conv-BatchNorm-ReLU with an Add, then pooling (Adam: no momentum drift)."""
    images = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(images)
    for _ in range(2):
        skip = h
        h = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(h)))
        h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(h))
        h = keras.layers.ReLU()(keras.layers.Add()([h, skip]))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(images, out)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class VAE(keras.Model):
    """A variational autoencoder with its own train_step and test_step and loss trackers of its own (the
    Keras guide's pattern): compiled without a loss, reporting loss, reconstruction and KL means."""

    def __init__(self):
        super().__init__()
        self.encode, self.mean, self.log_var = (keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2),
                                                keras.layers.Dense(2))
        self.sample, self.decode = Sampling(), keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                                                  keras.layers.Dense(12, activation="sigmoid")])
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")]

    @property
    def metrics(self):
        return self.loss_trackers

    def call(self, x):
        h = self.encode(x)
        mean, log_var = self.mean(h), self.log_var(h)
        return self.decode(self.sample([mean, log_var])), mean, log_var

    def vae_losses(self, x):
        out, mean, log_var = self(x)
        reconstruction = keras.ops.mean(keras.ops.sum(keras.ops.square(x - out), axis=-1))
        kl = keras.ops.mean(keras.ops.sum(-0.5 * (1 + log_var - keras.ops.square(mean) - keras.ops.exp(log_var)),
                                          axis=1))
        return reconstruction + kl, reconstruction, kl

    def _track(self, losses):
        for tracker, value in zip(self.loss_trackers, losses):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.loss_trackers}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.vae_losses(data[0] if isinstance(data, tuple) else data)
        grads = tape.gradient(losses[0], self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._track(losses)

    def test_step(self, data):
        return self._track(self.vae_losses(data[0] if isinstance(data, tuple) else data))


def _vae():
    model = VAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model(X[:1])
    return model


def _preprocessing():
    """Preprocessing inside the model: a Normalization adapted to the data, and on the images Rescaling and
    random flips and translations (augmentation draws from the layers' own SeedGenerators, in training only)."""
    table = keras.Input((12,))
    normalization = keras.layers.Normalization()
    normalization.adapt(X)
    images = keras.Input((8, 8, 3))
    h = keras.layers.Rescaling(0.5)(images)
    h = keras.layers.RandomFlip("horizontal")(h)
    h = keras.layers.RandomTranslation(0.1, 0.1)(h)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(h))
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(normalization(table)), h])
    model = keras.Model([table, images], keras.layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _dataset():
    return tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(256, seed=3).batch(32)


# name -> (build, data as fit's positional arguments (or a function making the dataset), keyword arguments)
ZOO = {
    "jit_compile": (lambda: _mlp(jit_compile=True), (X, Y), {"batch_size": 32}),
    "steps_per_execution": (lambda: _mlp(steps_per_execution=4), (X, Y), {"batch_size": 32}),
    "tf_data": (_mlp, _dataset, {}),  # made afresh for each fit: a dataset's reshuffles go on across fits
    "gradient_accumulation": (lambda: _mlp(keras.optimizers.Adam(0.01, gradient_accumulation_steps=2)), (X, Y),
                              {"batch_size": 32}),
    "ema": (lambda: _mlp(keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.9)), (X, Y), {"batch_size": 32}),
    "masked_lstm": (_masked_lstm, (TOKENS, Y_TOKENS), {"batch_size": 32}),
    "bert_like_encoder": (_encoder, (TOKENS, Y_TOKENS), {"batch_size": 32}),
    "resnet_stack": (_resnet, (IMAGES, Y_IMAGES), {"batch_size": 16}),
    "preprocessing_layers": (_preprocessing, ([X[:128], IMAGES], Y_IMAGES), {"batch_size": 16}),
    # Its own train_step and test_step: trackers reset where Keras resets them (each epoch, before
    # validation), and the sampling layer's SeedGenerator drawn from by the user's step only.
    "vae_own_train_step": (_vae, (X,), {"batch_size": 32, "validation_data": (X[:64],)}),
}


def _train(name, instrumented, run_dir=None):
    build, args, kwargs = ZOO[name]
    args = (args(),) if callable(args) else args
    keras.utils.set_random_seed(0)
    model = build()
    trained = diagnose.instrument(model) if instrumented else model
    callbacks = [diagnose.Monitor(run_dir, log_every=2)] if instrumented else []
    keras.utils.set_random_seed(1)
    history = trained.fit(*args, epochs=2, verbose=0, callbacks=callbacks, **kwargs).history
    return history, model.get_weights()


@pytest.fixture
def bitwise(request):
    """TensorFlow's graph optimizer (its arithmetic rewrites) can order plain fit's float operations otherwise
    than the instrumented step's, whose graph holds more ops: the documented ulp drift. BatchNormalization
    after a biased layer makes it visible in the weights (the bias's gradient is float noise that Adam scales
    to full steps); the VAE's loss tracker shows it in the last digit of one epoch's mean (its sum of three
    terms regrouped). Without those rewrites both agree to the bit, which is what the instrumented step
    promises (same ops, same order)."""
    if request.node.callspec.params.get("name") not in ("resnet_stack", "vae_own_train_step"):
        yield
        return
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": True})


# The larger models of the zoo train for several seconds each: with the slow tests.
_SLOW_ZOO = {"resnet_stack", "bert_like_encoder", "masked_lstm", "vae_own_train_step", "preprocessing_layers"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_ZOO else n for n in ZOO])
def test_the_zoo_trains_under_instrument_as_under_fit(tmp_path, name, bitwise):
    plain_history, plain_weights = _train(name, False)
    history, weights = _train(name, True, tmp_path / "run")
    assert history == plain_history
    assert all(np.array_equal(a, b) for a, b in zip(plain_weights, weights))
    summary = runrecord.read_summary(tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 16  # 8 batches an epoch


@pytest.mark.slow
def test_mixed_precision_trains_under_instrument_as_under_fit(tmp_path):
    # A mixed_float16 policy: float16 activations, a LossScaleOptimizer, the loss scaled before the gradient.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        plain_history, plain_weights = _train("jit_compile", False)
        history, weights = _train("jit_compile", True, tmp_path / "run")
    finally:
        keras.config.set_dtype_policy(previous)
    assert history == plain_history
    assert all(np.array_equal(a, b) for a, b in zip(plain_weights, weights))
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert np.isfinite(metrics["loss"]).all()


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_an_instrumented_fit(tmp_path):
    keras.utils.set_random_seed(0)
    plain = _mlp(keras.optimizers.SGD(0.05))
    keras.utils.set_random_seed(1)
    expected = plain.fit(X, Y, batch_size=32, epochs=4, verbose=0, shuffle=False).history

    keras.utils.set_random_seed(0)
    model = diagnose.instrument(_mlp(keras.optimizers.SGD(0.05)))
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    keras.utils.set_random_seed(1)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(X, Y, batch_size=32, epochs=4, verbose=0, shuffle=False,
                  callbacks=[backup, _Interrupt(), diagnose.Monitor(tmp_path / "first")])
    assert runrecord.read_summary(tmp_path / "first")["status"] == "failed"
    resumed = model.fit(X, Y, batch_size=32, epochs=4, verbose=0, shuffle=False,
                        callbacks=[backup, diagnose.Monitor(tmp_path / "second")]).history
    # The second fit starts from the backup of epoch 1 (the first two epochs), as Keras' own resume does;
    # dropout draws differ after the restart, so the losses are close, not equal.
    assert len(resumed["loss"]) == 2
    np.testing.assert_allclose(resumed["loss"], expected["loss"][2:], rtol=0.1)
    assert runrecord.read_summary(tmp_path / "second")["status"] == "completed"

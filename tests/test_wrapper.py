"""instrument() on the models people bring: it trains them exactly as their own fit, and finds what to measure.

Each model here is tiny; every equality is against plain ``model.fit`` from the same
seed, in the same process, with op determinism on.
"""

import math

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError

tf = import_tensorflow_quietly()
import keras  # noqa: E402

pytestmark = pytest.mark.slow  # every test trains a model, most twice

N, FEATURES, CLASSES = 96, 6, 3


@pytest.fixture(autouse=True, scope="module")
def _deterministic():
    tf.config.experimental.enable_op_determinism()
    yield
    keras.backend.clear_session()  # layer names come from global counters; other modules expect fresh ones


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    labels = x[:, :CLASSES].argmax(axis=1).astype(np.int32)
    return x, labels


@keras.saving.register_keras_serializable(package="tests")
class ScaledDense(keras.layers.Layer):
    """A custom layer taking an initializer object, whose config Keras cannot read (get_config raises)."""

    def __init__(self, units, init, **kwargs):
        super().__init__(**kwargs)
        self.units, self.init = units, init

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], self.units), initializer=self.init)

    def call(self, x):
        return x @ self.kernel

    def get_config(self):
        raise NotImplementedError


class TwoLayer(keras.Model):
    """A subclassed model: no graph to read, only layers."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(CLASSES)

    def call(self, x, training=False):
        return self.out(self.hidden(x))


def _mlp(out_units=CLASSES, activation=None, extra=None):
    inp = keras.Input((FEATURES,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    if extra == "bn-dropout":
        h = keras.layers.Dropout(0.3)(keras.layers.BatchNormalization()(h))
    if extra == "custom":
        h = ScaledDense(8, keras.initializers.RandomNormal(stddev=0.3))(h)
    return keras.Model(inp, keras.layers.Dense(out_units, activation=activation)(h))


def _case(name):
    """(build, x, y, fit kwargs) for each form of target and loss Keras accepts."""
    x, labels = _data()
    onehot = np.eye(CLASSES, dtype=np.float32)[labels]
    binary = (labels == 0).astype(np.float32)
    weights = np.where(labels == 1, 3.0, 0.5).astype(np.float32)
    cases = {
        "sparse-logits-object": (lambda: _mlp(), x, labels,
                                 keras.losses.SparseCategoricalCrossentropy(from_logits=True), {}),
        "onehot-softmax-string": (lambda: _mlp(activation="softmax"), x, onehot, "categorical_crossentropy", {}),
        "onehot-softmax-function-bn": (lambda: _mlp(activation="softmax", extra="bn-dropout"), x, onehot,
                                 keras.losses.categorical_crossentropy, {}),
        "binary-(N,)-sigmoid": (lambda: _mlp(1, "sigmoid"), x, binary, "binary_crossentropy",
                                {"sample_weight": weights}),
        "binary-(N,1)-logits": (lambda: _mlp(1), x, binary[:, None], keras.losses.BinaryCrossentropy(from_logits=True),
                                {"class_weight": {0: 1.0, 1: 4.0}}),
        "regression-custom-scalar-loss": (lambda: _mlp(1, extra="custom"), x, x[:, :1] * 2.0,
                                          lambda y, p: keras.ops.mean(keras.ops.square(y - p)), {}),
        "subclassed": (TwoLayer, x, labels, keras.losses.SparseCategoricalCrossentropy(from_logits=True), {}),
    }
    build, x, y, loss, fit = cases[name]
    return build, x, y, loss, fit


def _train(build, x, y, loss, fit, instrumented, run_dir=None, metrics=("accuracy",)):
    keras.utils.set_random_seed(7)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss,
                  metrics=list(metrics) if y.ndim == 1 or y.shape[-1] > 1 or metrics else None)
    model(x[:2])  # built (a subclassed model has weights only once called)
    fitter = diagnose.instrument(model) if instrumented else model
    callbacks = [diagnose.Monitor(run_dir, log_every=3)] if instrumented else []
    history = fitter.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x[:32], y[:32]),
                         callbacks=callbacks, **fit)
    return history.history, model.get_weights()


@pytest.mark.parametrize("name", ["sparse-logits-object", "onehot-softmax-string", "onehot-softmax-function-bn",
                                  "binary-(N,)-sigmoid", "binary-(N,1)-logits", "regression-custom-scalar-loss",
                                  "subclassed"])
def test_trains_exactly_as_the_models_own_fit(name, tmp_path):
    build, x, y, loss, fit = _case(name)
    metrics = () if name.startswith("regression") else ("accuracy",)
    plain_history, plain_weights = _train(build, x, y, loss, fit, False, metrics=metrics)
    ours_history, ours_weights = _train(build, x, y, loss, fit, True, tmp_path, metrics=metrics)
    assert ours_history.keys() == plain_history.keys()
    for key in plain_history:
        np.testing.assert_array_equal(ours_history[key], plain_history[key], err_msg=key)
    for a, b in zip(plain_weights, ours_weights):
        np.testing.assert_array_equal(a, b)
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 2 * N // 16
    assert runrecord.read_metrics(tmp_path)["grad_norm/global"].notna().all()


def test_the_instrumented_steps_are_traced_once(tmp_path, monkeypatch):
    # A trace that creates variables (Keras' optimizer slots and metric totals, the
    # instruments' sums) makes TensorFlow trace the step a second time.
    from diagnose.instruments.wrapper import Instrumented

    traces = []
    step = Instrumented.train_step
    monkeypatch.setattr(Instrumented, "train_step",
                        lambda self, data, **kw: traces.append(kw.get("sampled")) or step(self, data, **kw))
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    # Rows of 20 steps (a fit this short would log every step by default, every step then sampled).
    diagnose.instrument(model).fit(x, y, epochs=2, batch_size=16, verbose=0,
                                   callbacks=[diagnose.Monitor(tmp_path, log_every=20, tensorboard=False)])
    assert sorted(traces) == [False, True]  # each of its two steps (with the sampled families, without) once
    metrics = runrecord.read_metrics(tmp_path)
    ratio = next(c for c in metrics.columns if c.startswith("update_ratio/"))
    assert metrics[ratio].notna().all()  # the sampled families ran
    # The first step alone, as the model was built, beside the rows (the first row averages 6 steps).
    start = runrecord.read_summary(tmp_path)["at_start"]
    assert {"loss", "grad_norm/global", ratio} <= set(start)
    assert start["loss"] != pytest.approx(float(metrics["loss"].iloc[0]))


def test_a_reshuffling_dataset_feeds_the_same_batches_as_plain_fit(tmp_path):
    # An unbuilt model and no held-out data: reading a batch before fit (to build the model, or for the
    # probe) would start the dataset's next shuffle, and fit would train on other batches.
    x, y = _data()

    def run(instrumented):
        keras.utils.set_random_seed(3)
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(N).batch(16)
        model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(CLASSES)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        fitter = diagnose.instrument(model) if instrumented else model
        callbacks = [diagnose.Monitor(tmp_path, tensorboard=False)] if instrumented else []
        history = fitter.fit(data, epochs=3, verbose=0, callbacks=callbacks)
        return history.history["loss"], model.get_weights()

    (plain_loss, plain_weights), (ours_loss, ours_weights) = run(False), run(True)
    np.testing.assert_array_equal(ours_loss, plain_loss)
    for a, b in zip(plain_weights, ours_weights):
        np.testing.assert_array_equal(a, b)
    assert not math.isnan(runrecord.read_metrics(tmp_path)["probe_loss_shuffled"].iloc[-1])  # probed at the end


def test_a_class_weighted_loss_is_logged_per_unit_of_weight(tmp_path):
    # Keras averages w * loss over the examples (x3.7 here: mean weight of {0: 1, 1: 9, 2: 1} at these
    # labels); the record keeps the baselines' scale, sum(w * loss) / sum(w).
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_example = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True).numpy()
    weights = np.where(y == 1, 9.0, 1.0)
    history = diagnose.instrument(model).fit(x, y, epochs=1, batch_size=N, shuffle=False, verbose=0,
                                             class_weight={0: 1.0, 1: 9.0, 2: 1.0},
                                             callbacks=[diagnose.Monitor(tmp_path, tensorboard=False)])
    logged = runrecord.read_summary(tmp_path)["at_start"]["loss"]  # the one step, from the initial weights
    assert logged == pytest.approx(float((weights * per_example).sum() / weights.sum()), rel=1e-5)
    assert history.history["loss"][0] == pytest.approx(float((weights * per_example).mean()), rel=1e-5)  # Keras'


def test_a_mask_from_embedding_reaches_the_loss_as_in_fit(tmp_path):
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 20, size=(N, 7)).astype(np.int32)
    tokens[:, 5:] = 0  # padding, masked out of the loss by Embedding(mask_zero=True)
    targets = np.roll(tokens, -1, axis=1)

    def build():
        inp = keras.Input((7,), dtype="int32")
        h = keras.layers.Embedding(20, 8, mask_zero=True)(inp)
        h = keras.layers.GRU(8, return_sequences=True)(h)
        return keras.Model(inp, keras.layers.Dense(20)(h))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain, plain_w = _train(build, tokens, targets, loss, {}, False)
    ours, ours_w = _train(build, tokens, targets, loss, {}, True, tmp_path)
    np.testing.assert_array_equal(ours["loss"], plain["loss"])
    for a, b in zip(plain_w, ours_w):
        np.testing.assert_array_equal(a, b)
    # The record's accuracy leaves masked positions out, as Keras' masked metric does.
    record = runrecord.read_metrics(tmp_path)
    assert record["accuracy"].notna().all()


def test_baselines_come_from_the_targets_without_asking(tmp_path):
    build, x, y, loss, fit = _case("sparse-logits-object")
    _train(build, x, y, loss, fit, True, tmp_path)
    baselines = runrecord.read_summary(tmp_path)["baselines"]
    counts = np.bincount(y, minlength=CLASSES) / len(y)
    assert baselines["ln_vocab"] == pytest.approx(math.log(CLASSES))
    assert baselines["unigram_entropy"] == pytest.approx(-(counts * np.log(counts)).sum(), rel=1e-6)
    assert baselines["loss_at_step0"] > 0
    # A probe batch was picked from the validation data: the run ends with a probe.
    assert np.isfinite(runrecord.read_metrics(tmp_path)["probe_loss_shuffled"].iloc[-1])


def test_regression_baseline_is_the_target_variance(tmp_path):
    build, x, y, loss, fit = _case("regression-custom-scalar-loss")
    _train(build, x, y, "mse", fit, True, tmp_path, metrics=())
    baselines = runrecord.read_summary(tmp_path)["baselines"]
    # Every epoch's targets are counted: the variance of y, twice over.
    assert baselines["target_variance"] == pytest.approx(float(np.var(y)), rel=1e-5)
    assert "unigram_entropy" not in baselines


class TokenAndPositionEmbedding(keras.layers.Layer):
    """keras-io's layer: tokens embedded, plus a position embedding added inside the layer."""

    def __init__(self, maxlen, vocab, dim, position_init="uniform", **kwargs):
        super().__init__(**kwargs)
        self.token = keras.layers.Embedding(vocab, dim)
        self.position = keras.layers.Embedding(maxlen, dim, embeddings_initializer=position_init)

    def call(self, x):
        positions = keras.ops.arange(0, keras.ops.shape(x)[-1])
        return self.token(x) + self.position(positions)


class Block(keras.layers.Layer):
    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=dim)
        self.norm = keras.layers.LayerNormalization()

    def call(self, x):
        return self.norm(x + self.attention(x, x))


def _transformer(position_init):
    inp = keras.Input((10,), dtype="int32")
    h = TokenAndPositionEmbedding(10, 30, 8, position_init)(inp)
    h = keras.layers.GlobalAveragePooling1D()(Block(8)(h))
    return keras.Model(inp, keras.layers.Dense(2)(h))


@pytest.mark.parametrize("position_init", ["uniform", "ones"])
def test_attention_and_a_position_table_are_found_inside_custom_layers(position_init, tmp_path):
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 30, size=(64, 10)).astype(np.int32)
    labels = (tokens[:, 0] < 15).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = _transformer(position_init)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped = diagnose.instrument(model)
    assert wrapped.taps.found == {"mha": 1, "table": 1}
    table = model.layers[1].position.embeddings.numpy()
    wrapped.fit(tokens, labels, batch_size=64, epochs=1, verbose=0,
                callbacks=[diagnose.Monitor(tmp_path, log_every=1)])
    row = runrecord.read_metrics(tmp_path).iloc[0]
    site = model.layers[1].name
    # The position table's RMS as it stood in the step, and the token embeddings as the rest of the output.
    assert row[f"rms/{site}/position"] == pytest.approx(np.sqrt(np.mean(table ** 2)), rel=1e-5)
    token_rows = model.layers[1].token.embeddings.numpy()  # after one Adam step of 0.001: close enough
    assert row[f"rms/{site}/content"] == pytest.approx(
        np.sqrt(np.mean(token_rows[tokens] ** 2)), rel=0.05)
    # The attention of two heads over 10 keys: a distribution per (example, head, query).
    assert 0 < row["attn_entropy/hop1"] <= 1.0 + 1e-6 and 0.1 <= row["attn_top1/hop1"] <= 1.0
    from diagnose.findings import check_run

    dominates = [f for f in check_run(tmp_path) if f.id == "temporal-encoding-dominates"]
    assert bool(dominates) == (position_init == "ones")  # ones: RMS 1 against embeddings of ~0.03


def test_a_crash_in_training_is_recorded_as_failed(tmp_path):
    keras.utils.set_random_seed(0)  # op determinism is on: random ops need a seed
    x, labels = _data()
    model = _mlp()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped = diagnose.instrument(model)

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("the data pipeline broke")

    with pytest.raises(RuntimeError):
        wrapped.fit(x, labels, batch_size=16, epochs=1, verbose=0,
                    callbacks=[diagnose.Monitor(tmp_path, log_every=1), Boom()])
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "failed" and "data pipeline broke" in summary["error"]
    from click.testing import CliRunner

    from diagnose.cli import cli

    said = CliRunner().invoke(cli, ["check", str(tmp_path)])
    assert "crashed" in said.output and "data pipeline broke" in said.output
    assert "nothing in this run looks wrong" not in said.output


def test_instrument_names_what_is_missing():
    with pytest.raises(DiagnoseError, match="keras.Model"):
        diagnose.instrument(object())
    with pytest.raises(DiagnoseError, match="compile"):
        diagnose.instrument(TwoLayer())


def test_a_diverging_run_goes_on_as_fit_does_and_the_record_says_where(tmp_path):
    # SGD at a rate that blows the loss up to NaN: the Monitor observes, it does not intervene.
    x, labels = _data()

    def build():
        return _mlp()

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train(instrumented):
        keras.utils.set_random_seed(7)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(1e4), loss=loss)
        fitter = diagnose.instrument(model) if instrumented else model
        callbacks = [diagnose.Monitor(tmp_path, log_every=2)] if instrumented else []
        return fitter.fit(x, labels, batch_size=16, epochs=3, verbose=0, callbacks=callbacks).history["loss"]

    plain, ours = train(False), train(True)
    np.testing.assert_array_equal(ours, plain)  # NaN where fit has NaN
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "diverged" and summary["steps"] == 3 * N // 16
    assert summary["diverged_at"]["step"] <= summary["steps"]


class OwnStep(keras.Model):
    """A model with a train step of its own (here: the loss doubled): the wrapper must run that step."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(CLASSES)

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = 2.0 * tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, self(x, training=True),
                                                                                     from_logits=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return {"loss": loss}


class AddLossOnly(keras.Model):
    """Compiled without a loss: trains on what its layers add (an autoencoder's reconstruction error)."""

    def __init__(self):
        super().__init__()
        self.code = keras.layers.Dense(3)
        self.back = keras.layers.Dense(FEATURES)

    def call(self, x):
        out = self.back(self.code(x))
        self.add_loss(keras.ops.mean(keras.ops.square(out - x)))
        return out


@pytest.mark.parametrize("name", ["sequential-built-by-fit", "own-train-step", "add-loss-only"])
def test_models_keras_trains_in_other_ways_train_the_same(name, tmp_path):
    x, labels = _data()

    def train(instrumented):
        keras.utils.set_random_seed(5)
        if name == "sequential-built-by-fit":  # no input shape: built from the first batch
            model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.3),
                                      keras.layers.Dense(CLASSES)])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            y = labels
        elif name == "own-train-step":
            model = OwnStep()
            model.compile(optimizer="adam")
            model(x[:1])
            y = labels
        else:
            model = AddLossOnly()
            model.compile(optimizer="adam")
            y = None
        fitter = diagnose.instrument(model) if instrumented else model
        callbacks = [diagnose.Monitor(tmp_path, log_every=3, overwrite=True)] if instrumented else []
        history = fitter.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks).history
        return history, model.get_weights()

    (plain, plain_w), (ours, ours_w) = train(False), train(True)
    assert ours.keys() == plain.keys()
    for key in plain:
        np.testing.assert_array_equal(ours[key], plain[key])
    for a, b in zip(plain_w, ours_w):
        np.testing.assert_array_equal(a, b)
    record = runrecord.read_metrics(tmp_path)
    assert runrecord.read_summary(tmp_path)["status"] == "completed"
    assert record["loss"].notna().all() and any(c.startswith("update_ratio/") for c in record.columns)

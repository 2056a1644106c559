"""The instruments on a Keras 3 functional model we did not write: the question's, as posted."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import DiagnoseError

tf = import_tensorflow_quietly()
import keras  # noqa: E402

from diagnose.models.question import build_question_model  # noqa: E402

QUESTION = Path(__file__).resolve().parents[2] / "shared" / "seed" / "question.txt"
L, D, LAYERS = 8, 8, 3


@pytest.fixture(scope="module")
def data(small_corpus):
    from diagnose.memn2n.data import windows

    pos = np.arange(0, 1024)
    w, t = windows(small_corpus.train, L, pos)
    q = np.full((len(pos), D), 0.1, np.float32)
    y = np.eye(small_corpus.vocab_size, dtype=np.float32)[t]
    return [w, q], y


@pytest.fixture(scope="module")
def run(small_corpus, data, tmp_path_factory):
    keras.backend.clear_session()  # the layer names the tests read (dense_1), whatever ran before in this process
    keras.utils.set_random_seed(0)
    model = build_question_model(small_corpus.vocab_size, L, D, LAYERS)
    weights_before = [w.copy() for w in model.get_weights()]
    wrapped = diagnose.instrument(model)
    (w, q), y = data
    out = tmp_path_factory.mktemp("question")
    wrapped.fit([w, q], y, batch_size=32, epochs=2, verbose=0, validation_data=([w[:256], q[:256]], y[:256]),
                callbacks=[diagnose.Monitor(out, log_every=8, probe=([w[:32], q[:32]], y[:32]), probe_every=16)])
    return model, weights_before, out


def test_the_users_model_is_trained_in_place_and_unchanged_in_structure(run):
    model, before, _ = run
    assert len(model.outputs) == 1 and model.layers[-1].get_config()["activation"] == "relu"
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(after, before))  # its own weights moved


def test_attention_found_from_layer_classes_one_per_hop(run):
    _, _, out = run
    metrics = runrecord.read_metrics(out)
    hops = sorted(int(m.group(1)) for c in metrics.columns if (m := re.fullmatch(r"attn_entropy/hop(\d+)", c)))
    assert hops == list(range(1, LAYERS))  # the posted loop runs NUM_LAYERS - 1 hops
    assert metrics["attn_entropy/hop1"].dropna().between(0, 1.0001).all()
    hist = runrecord.read_json  # noqa: F841  (attention.csv is plain CSV)
    rows = (out / "attention.csv").read_text().splitlines()
    assert rows[0].startswith("step,hop,pos0") and rows[0].count("pos") == L


def test_gradients_per_variable_and_relu_output_health(run):
    model, _, out = run
    metrics = runrecord.read_metrics(out)
    for name in ("Emb_A", "Emb_C", "dense_1", "dense_1/bias"):
        assert f"grad_norm/{name}" in metrics.columns and f"update_ratio/{name}" in metrics.columns
    # A ReLU output layer leaves units at exactly zero; softmax would leave none.
    assert metrics["out_zero_frac"].dropna().iloc[-1] > 0.05
    # Both inputs of each of the NUM_LAYERS - 1 Add layers are measured, named by the layer producing them.
    adds = {}
    for column in metrics.columns:
        if (m := re.fullmatch(r"rms/(add(?:_\d+)?)/(.+)", column)):
            adds.setdefault(m.group(1), set()).add(m.group(2))
    assert len(adds) == LAYERS - 1 and all(len(branches) == 2 for branches in adds.values())
    assert all(any(b.startswith("dense") for b in branches) for branches in adds.values())  # the H term
    # T_A and T_C add a table of their own to the embeddings: content and position at each.
    tables = {m.group(1) for c in metrics.columns if (m := re.fullmatch(r"rms/(.+)/position", c))}
    assert len(tables) == 2 and all(f"rms/{t}/content" in metrics.columns for t in tables)
    assert metrics["probe_loss_real"].notna().any() and metrics["val_loss"].notna().sum() == 2


def test_update_ratio_matches_weights_read_around_one_step(small_corpus, data):
    keras.utils.set_random_seed(1)
    model = build_question_model(small_corpus.vocab_size, L, D, LAYERS, DROPOUT_R=0.0)
    wrapped = diagnose.instrument(model)
    (w, q), y = data
    before = {v.path: v.numpy().copy() for v in wrapped.trainable_variables}
    wrapped.train_on_batch([w[:32], q[:32]], y[:32])
    row = wrapped.read_row()["row"]  # the first step is always a sampled one
    for name, v in zip(wrapped.names, wrapped.trainable_variables):
        b = before[v.path]
        if not np.linalg.norm(b):
            continue  # a zero-initialised bias has no ratio
        expected = np.linalg.norm(v.numpy() - b) / np.linalg.norm(b)
        assert row[f"update_ratio/{name}"] == pytest.approx(expected, rel=1e-3, abs=1e-9), name


def test_summary_and_config_describe_the_users_model(run):
    _, _, out = run
    summary = runrecord.read_summary(out)
    config = json.loads((out / "config.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 64
    classes = [layer["class"] for layer in config["model"]["layers"]]
    assert classes.count("Softmax") == LAYERS - 1 and "AddedWeights" in classes
    assert config["model"]["loss"] == "categorical_crossentropy"


def _mlp(out_activation, loss, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, activation=out_activation, name="out")(hidden)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return model


def _separable(n=512):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    return x, x[:, :3].argmax(axis=1).astype(np.int32)  # the class is where the first three features peak


def test_a_model_with_nothing_but_its_prediction_to_record(tmp_path):
    # No softmax inside and no Add: the wrapper has one output, which Keras returns bare.
    model = _mlp(None, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _separable()
    wrapped = diagnose.instrument(model)
    wrapped.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[diagnose.Monitor(tmp_path, log_every=4)])
    metrics = runrecord.read_metrics(tmp_path)
    assert runrecord.read_summary(tmp_path)["status"] == "completed"
    assert {"grad_norm/hidden", "grad_norm/out", "grad_norm/out/bias", "update_ratio/out"} <= set(metrics.columns)
    assert not any(c.startswith(("attn_", "rms/add")) for c in metrics.columns)
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]  # it learns: the instruments did not break the step
    assert metrics["accuracy"].iloc[-1] > 0.6


def test_relu_output_with_crossentropy_is_named_as_the_cause_of_a_nan_first_step(tmp_path):
    # An all-zero input (padding, say) gives all-zero ReLU outputs at the initial
    # (zero) biases, and Keras' categorical cross-entropy divides by their sum: NaN.
    from diagnose.findings import check_run

    model = _mlp("relu", "categorical_crossentropy")
    x, y = _separable()
    x[::8] = 0.0
    wrapped = diagnose.instrument(model)
    wrapped.fit(x, np.eye(3, dtype=np.float32)[y], batch_size=64, epochs=1, verbose=0, shuffle=False,
                callbacks=[diagnose.Monitor(tmp_path, log_every=2)])
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "diverged" and summary["diverged_at"]["step"] == 1
    findings = {f.id: f for f in check_run(tmp_path)}
    assert findings["relu-output-crossentropy"].kind == "root-cause"
    assert "first step" in findings["diverged"].title


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_classifier_accuracy_is_keras_binary_accuracy(tmp_path, from_logits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1, activation=None if from_logits else "sigmoid")])
    threshold = 0.0 if from_logits else 0.5
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.BinaryCrossentropy(from_logits=from_logits),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy")])
    x, y = _separable(256)
    target = (y == 0).astype(np.float32)  # shaped (N,): Keras takes it against a (N, 1) output
    wrapped = diagnose.instrument(model)
    history = wrapped.fit(x, target, batch_size=256, epochs=3, verbose=0, validation_data=(x, target),
                          callbacks=[diagnose.Monitor(tmp_path, log_every=1)])
    metrics = runrecord.read_metrics(tmp_path)
    # One full batch per epoch: the record's accuracy is Keras' own on the same forward pass.
    np.testing.assert_allclose(metrics["accuracy"].to_numpy(), history.history["accuracy"], atol=1e-6)
    np.testing.assert_allclose(metrics["val_accuracy"].to_numpy(), history.history["val_accuracy"], atol=1e-6)
    summary = runrecord.read_summary(tmp_path)
    assert summary["baselines"]["ln_vocab"] == pytest.approx(np.log(2))
    p = target.mean()
    assert summary["baselines"]["unigram_entropy"] == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def test_probe_takes_inputs_by_name(tmp_path):
    # A model whose inputs are a dict: the probe shuffles and zeroes each of them.
    keras.utils.set_random_seed(0)
    a, b = keras.Input((5,), name="a"), keras.Input((5,), name="b")
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _separable(256)
    inputs = {"a": x[:, :5], "b": x[:, 5:]}
    diagnose.instrument(model).fit(inputs, y, batch_size=32, epochs=4, verbose=0, callbacks=[diagnose.Monitor(
        tmp_path, log_every=8, probe=({"a": x[:64, :5], "b": x[:64, 5:]}, y[:64]), probe_every=8)])
    metrics = runrecord.read_metrics(tmp_path)
    probed = metrics.dropna(subset=["probe_loss_real"])
    assert len(probed) == 4
    # The classes follow from input "a": once learned, its shuffled copy costs more than the real one.
    assert probed["probe_loss_shuffled"].iloc[-1] > probed["probe_loss_real"].iloc[-1]


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_sample_weights_train_the_model_as_keras_does(loss):
    # Weights of zero on every other example: ignoring them changes every update.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype(np.float32)
    y = (x[:, :1] * 2.0 + 0.5).astype(np.float32)  # a regression: one output column
    w = np.tile([1.0, 0.0], 128).astype(np.float32)
    loss_arg = keras.losses.Huber() if loss == "huber" else loss

    def fresh():
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss_arg)
        return model

    plain, ours = fresh(), fresh()
    plain.fit(x, y, sample_weight=w, batch_size=32, epochs=2, shuffle=False, verbose=0)
    diagnose.instrument(ours).fit(x, y, sample_weight=w, batch_size=32, epochs=2, shuffle=False, verbose=0)
    unweighted = fresh()
    diagnose.instrument(unweighted).fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(a, c, rtol=1e-3) for a, c in zip(plain.get_weights(), unweighted.get_weights()))


def test_instrument_rejects_uncompiled_models():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(DiagnoseError, match="compile"):
        diagnose.instrument(model)


@pytest.mark.skipif(not QUESTION.is_file(), reason="the question text is not beside the checkout")
def test_our_copy_is_the_posted_code():
    """Every code line of models/question.py's builder appears in the question (modulo Keras 3 fixes)."""
    posted = re.sub(r"\s+", "", QUESTION.read_text(encoding="utf-8"))
    source = (Path(__file__).resolve().parents[1] / "models" / "question.py").read_text()
    body = source.split("layer_output = query", 1)[1].split("prediction = final_output", 1)[0]
    for line in body.splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            assert re.sub(r"\s+", "", code) in posted, code

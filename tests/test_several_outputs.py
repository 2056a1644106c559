"""Models with several outputs: trained under instrument as under fit, recorded per output, diagnosed per output,
and fixed on the output a finding names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import diagnose
from diagnose import runrecord
from diagnose._tf import import_tensorflow_quietly
from diagnose.findings import check_run
from diagnose.findings.base import Evidence, Finding, RunView
from diagnose.findings.outputs import of_output, output_views
from diagnose.findings.fixes import remedy_for
from diagnose.userstudy.transforms import apply_changes

import_tensorflow_quietly()
import keras  # noqa: E402

N, FEATURES, TAGS = 768, 8, 4


def _data():
    """Features; an age-like value (standardised), 3 classes, 4 multi-hot tags, all from the features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    age = (x[:, :1] * 1.5 + x[:, 1:2] ** 2).astype("float32")
    age = (age - age.mean()) / age.std()
    kind = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(N, 3)), axis=1).astype("int32")
    tags = (x[:, 3:7] + 0.3 * rng.normal(size=(N, TAGS)) > 0.3).astype("float32")
    return x, {"age": age, "kind": kind, "tags": tags}


def _model(tags_loss="binary_crossentropy", tags_activation="sigmoid", by_name=True):
    """A shared trunk (with an L2 penalty and dropout) and three heads, losses weighted."""
    keras.utils.set_random_seed(0)
    features = keras.Input((FEATURES,), name="features")
    trunk = keras.layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4))(features)
    trunk = keras.layers.Dropout(0.1)(trunk)
    outputs = [keras.layers.Dense(1, name="age")(trunk),
               keras.layers.Dense(3, activation="softmax", name="kind")(trunk),
               keras.layers.Dense(TAGS, activation=tags_activation, name="tags")(trunk)]
    model = keras.Model(features, outputs)
    losses = {"age": "mse", "kind": "sparse_categorical_crossentropy", "tags": tags_loss}
    weights = {"age": 1.0, "kind": 0.5, "tags": 2.0}
    if by_name:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses, loss_weights=weights,
                      metrics={"kind": ["accuracy"]})
    else:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=list(losses.values()),
                      loss_weights=list(weights.values()), metrics=[[], ["accuracy"], []])
    return model


def _fit(model, run_dir=None, epochs=2, by_name=True):
    x, y = _data()
    targets = y if by_name else [y["age"], y["kind"], y["tags"]]
    callbacks = [diagnose.Monitor(run_dir)] if run_dir is not None else []
    keras.utils.set_random_seed(1)
    return model.fit(x, targets, epochs=epochs, batch_size=64, validation_split=0.25, verbose=0,
                     callbacks=callbacks).history


@pytest.mark.parametrize("by_name", [True, False], ids=["dict", "list"])
def test_several_outputs_train_as_under_fit_and_are_recorded_per_output(tmp_path, by_name):
    plain = _model(by_name=by_name)
    expected = _fit(plain, by_name=by_name)
    model = _model(by_name=by_name)
    history = _fit(diagnose.instrument(model), tmp_path / "run", by_name=by_name)
    assert history == expected  # Keras' own per-output losses and metrics too (kind_loss, val_kind_accuracy...)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), model.get_weights()))

    metrics = runrecord.read_metrics(tmp_path / "run")
    for name in ("age", "kind", "tags"):
        assert metrics[f"loss/{name}"].notna().all() and metrics[f"val_loss/{name}"].notna().any()
        assert metrics[f"probe_task_error/{name}"].notna().any()
    assert "accuracy/kind" in metrics and "accuracy/age" not in metrics
    # The loss is the loss_weights' sum of the outputs' losses (without the L2 penalty), row by row.
    weighted = metrics["loss/age"] * 1.0 + metrics["loss/kind"] * 0.5 + metrics["loss/tags"] * 2.0
    np.testing.assert_allclose(metrics["loss"], weighted, rtol=1e-5)
    last = metrics.dropna(subset=["val_loss/kind"]).iloc[-1]
    assert last["val_loss/kind"] == pytest.approx(history["val_kind_loss"][-1], rel=1e-6)

    contract = runrecord.read_summary(tmp_path / "run")["contract"]
    outputs = {o["name"]: o for o in contract["outputs"]}
    assert [o["name"] for o in contract["outputs"]] == ["age", "kind", "tags"]
    assert outputs["tags"]["targets"]["structure"] == "multi-hot"
    assert outputs["kind"]["targets"]["structure"] == "class-indices"
    assert outputs["age"]["loss"]["kind"] == "regression" and outputs["age"]["output"]["activation"] == "linear"
    assert outputs["age"]["constant_loss"] == pytest.approx(1.0, abs=0.1)  # the variance of standardised targets
    assert contract["constant_loss"] == pytest.approx(
        sum(o["weight"] * o["constant_loss"] for o in contract["outputs"]), rel=1e-9)


@pytest.mark.slow
def test_a_fault_in_one_output_is_named_on_that_output(tmp_path):
    _fit(diagnose.instrument(_model(tags_loss="categorical_crossentropy", tags_activation="softmax")),
         tmp_path / "bad", epochs=4)
    findings = check_run(tmp_path / "bad")
    first = findings[0]
    assert (first.id, first.kind) == ("loss-target-mismatch", "root-cause")
    assert first.title.startswith("Output 'tags': ")
    assert any(e.metric == "summary.contract.outputs[tags].targets.structure" for e in first.evidence)
    assert not any(f.title.startswith(("Output 'age'", "Output 'kind'")) for f in findings)

    _fit(diagnose.instrument(_model()), tmp_path / "good", epochs=4)
    assert not [f.id for f in check_run(tmp_path / "good") if f.kind in ("root-cause", "unexplained")]


def _view(**outputs_metrics) -> RunView:
    """A hand-made record of a two-output model: 'a' a regression at chance, 'b' a classifier that learned."""
    steps = np.arange(1, 41)
    metrics = pd.DataFrame({"step": steps, "loss": 1.0 + 0.2 * np.exp(-steps / 5),
                            "loss/a": np.full(40, 1.0), "loss/b": 0.2 * np.exp(-steps / 5),
                            "accuracy/b": np.linspace(0.4, 0.95, 40), **outputs_metrics})
    facts = {"a": {"loss": {"name": "mse", "kind": "regression"}, "output": {"activation": "sigmoid", "units": 1,
                                                                           "shape": [1], "range": [0.0, 1.0]},
                   "targets": {"structure": "continuous", "min": 20.0, "max": 90.0, "rms": 55.0},
                   "constant_loss": 1.0, "range_floor": 2900.0, "range_floor_share": 1.0},
             "b": {"loss": {"name": "sparsecategoricalcrossentropy", "kind": "sparse"},
                   "output": {"activation": "softmax", "units": 3, "shape": [3], "range": [0.0, 1.0]},
                   "targets": {"structure": "class-indices", "min": 0.0, "max": 2.0}, "constant_loss": 1.09}}
    contract = {"loss": {"name": "several", "kind": "several"}, "constant_loss": 2.09, "batch_size": 32,
                "outputs": [{"name": n, "weight": 1.0, **f} for n, f in facts.items()]}
    config = {"model": {"kind": "keras", "loss": "dict", "outputs": ["a", "b"], "layers": []}}
    return RunView(config, {"contract": contract, "baselines": {"constant_loss": 2.09}, "status": "completed"},
                   metrics)


def test_each_output_is_seen_as_if_it_were_the_only_one():
    views = dict(output_views(_view()))
    assert list(views) == ["a", "b"]
    a = views["a"]
    assert a.model["outputs"] == ["a"] and a.model["loss"] == "mse"
    assert a.summary["contract"]["targets"]["max"] == 90.0 and a.summary["contract"]["batch_size"] == 32
    assert a.baseline("constant_loss") == 1.0
    assert a.metrics["loss"].tolist() == [1.0] * 40 and "loss/b" not in a.metrics and "accuracy" not in a.metrics
    assert views["b"].metrics["accuracy"].iloc[-1] == pytest.approx(0.95)
    assert output_views(RunView({"model": {"kind": "keras"}}, {"contract": {"targets": {}}})) == []


def test_a_finding_of_one_output_names_it_and_its_columns():
    finding = Finding("plateau", "symptom", "medium", "The loss is flat", (
        Evidence("loss (late mean)", 1.0, 0.9, (1, 2)), Evidence("summary.contract.targets.rms", 55.0),
        Evidence("loss_sd", 0.1)), "why", "fix")
    named = of_output(finding, "a")
    assert named.title == "Output 'a': the loss is flat"
    assert [e.metric for e in named.evidence] == ["loss/a (late mean)", "summary.contract.outputs[a].targets.rms",
                                                  "loss_sd"]


def test_a_fix_of_one_output_changes_that_output_only():
    view = _view()
    remedy = remedy_for("output-range-mismatch", view)
    assert remedy.change == {"op": "output_activation", "activation": "linear", "output": "a"}
    assert "(output 'a')" in remedy.text

    x, y = _data()
    model = _model(tags_loss="categorical_crossentropy", tags_activation="softmax")
    fit = {"x": x, "y": dict(y)}
    model, fit = apply_changes(model, fit, [{"op": "all", "changes": [
        {"op": "output_activation", "activation": "sigmoid", "output": "tags"},
        {"op": "loss", "loss": "binary_crossentropy", "output": "tags"},
        {"op": "standardize_targets", "output": "age"}]}])
    losses = model._compile_config.config["loss"]
    assert losses == {"age": "mse", "kind": "sparse_categorical_crossentropy", "tags": "binary_crossentropy"}
    assert model.get_layer("tags").activation is keras.activations.sigmoid
    assert model.get_layer("kind").activation is keras.activations.softmax
    assert abs(float(np.mean(fit["y"]["age"]))) < 1e-5 and fit["y"]["kind"] is y["kind"]
    with pytest.raises(Exception, match="no output named 'ages'"):
        apply_changes(model, fit, [{"op": "standardize_targets", "output": "ages"}])


def test_a_probe_with_a_target_per_output_is_accepted(tmp_path):
    x, y = _data()
    model = diagnose.instrument(_model())
    keras.utils.set_random_seed(1)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0,
              callbacks=[diagnose.Monitor(tmp_path / "run", probe=(x[:64], {k: v[:64] for k, v in y.items()}))])
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert metrics["probe_task_error/tags"].notna().any()
    assert json.loads((tmp_path / "run" / runrecord.SUMMARY).read_text())["status"] == "completed"


@pytest.mark.slow
def test_each_output_s_loss_options_and_sample_weights_train_as_under_fit(tmp_path):
    # A summed Huber loss, ignore_class on logits, label smoothing, and sample weights per output.
    def build():
        keras.utils.set_random_seed(0)
        features = keras.Input((FEATURES,), name="features")
        trunk = keras.layers.Dense(16, activation="relu")(features)
        model = keras.Model(features, [keras.layers.Dense(1, name="age")(trunk),
                                       keras.layers.Dense(3, name="kind")(trunk),
                                       keras.layers.Dense(TAGS, activation="sigmoid", name="tags")(trunk)])
        model.compile(optimizer="adam", loss={
            "age": keras.losses.Huber(reduction="sum"),
            "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2),
            "tags": keras.losses.BinaryCrossentropy(label_smoothing=0.1)}, metrics={"kind": ["accuracy"]})
        return model

    x, y = _data()
    targets = [y["age"], y["kind"], y["tags"]]  # (Keras takes per-output sample weights with targets as a list)
    weights = [np.ones(N, "float32"), (np.arange(N) % 2).astype("float32"), np.full(N, 2.0, "float32")]

    def fit(model, callbacks=()):
        keras.utils.set_random_seed(1)
        return model.fit(x, targets, sample_weight=weights, epochs=2, batch_size=64, validation_split=0.25,
                         verbose=0, callbacks=list(callbacks)).history

    plain = build()
    expected = fit(plain)
    model = build()
    assert fit(diagnose.instrument(model), [diagnose.Monitor(tmp_path / "run")]) == expected
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), model.get_weights()))
    metrics = runrecord.read_metrics(tmp_path / "run")
    last = metrics.dropna(subset=["val_loss"]).iloc[-1]
    # The summed loss per example, as the others: Keras' val_age_loss is summed over a batch of 64.
    assert last["val_loss/age"] == pytest.approx(expected["val_age_loss"][-1] / 64, rel=1e-6)
    assert last["val_loss"] == pytest.approx(last["val_loss/age"] + last["val_loss/kind"]
                                               + last["val_loss/tags"], rel=1e-6)
    assert metrics["loss/age"].max() < 10 * metrics["loss/tags"].max()


class TwoHeads(keras.Model):
    """A subclassed model with two outputs (Keras knows no output names for it) and an L2 penalty."""

    def __init__(self):
        super().__init__()
        self.trunk = keras.layers.Dense(16, activation="relu", kernel_regularizer="l2")
        self.age = keras.layers.Dense(1)
        self.kind = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        h = self.trunk(x)
        return self.age(h), self.kind(h)


def test_a_subclassed_model_with_two_outputs_trains_as_under_fit(tmp_path):
    x, y = _data()

    def run(instrumented):
        keras.utils.set_random_seed(0)
        model = TwoHeads()
        model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5])
        trained = diagnose.instrument(model) if instrumented else model
        keras.utils.set_random_seed(1)
        history = trained.fit(x, (y["age"], y["kind"]), epochs=2, batch_size=64, validation_split=0.25, verbose=0,
                              callbacks=[diagnose.Monitor(tmp_path / "run")] if instrumented else []).history
        return history, model.get_weights()

    (expected, plain), (history, weights) = run(False), run(True)
    assert history == expected  # the loss computed once: Keras' per-output trackers moved once a step
    assert all(np.array_equal(a, b) for a, b in zip(plain, weights))
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert len([c for c in metrics.columns if c.startswith("loss/")]) == 2


def test_each_classifier_output_s_health_is_measured_and_read_on_that_output(tmp_path):
    # A ReLU head under a cross-entropy that reads probabilities, beside a healthy regression head.
    x, y = _data()
    keras.utils.set_random_seed(0)
    features = keras.Input((FEATURES,))
    trunk = keras.layers.Dense(32, activation="relu")(features)
    model = keras.Model(features, [keras.layers.Dense(1, name="age")(trunk),
                                   keras.layers.Dense(3, activation="relu", name="kind")(trunk)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"age": "mse", "kind": "sparse_categorical_crossentropy"})
    keras.utils.set_random_seed(1)
    diagnose.instrument(model).fit(x, {"age": y["age"], "kind": y["kind"]}, epochs=6, batch_size=32,
                                   validation_split=0.25, verbose=0, callbacks=[diagnose.Monitor(tmp_path / "run")])
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert metrics["target_at_floor/kind"].notna().any() and "target_at_floor/age" not in metrics
    assert "target_at_floor" not in metrics  # no column of the whole model's for what only an output has
    first = check_run(tmp_path / "run")[0]
    assert first.id == "relu-output-crossentropy" and first.title.startswith("Output 'kind': ReLU")

"""The model-task contract: its facts from real (untrained) Keras models and arrays, the rules that judge them
on hand-built records, and ``unexplained`` for a failure no root cause explains."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from diagnose._tf import import_tensorflow_quietly
from diagnose.findings import RULES, RunView, check_view
from diagnose.findings.rules_contract_layers import AFFINE_DEVIATION
from diagnose.findings.rules_inputs import INPUT_RMS_LOW
from diagnose.instruments.constants import constant_loss, range_floor
from diagnose.instruments.contract import loss_function, target_facts, task_contract
from diagnose.instruments.task_error import task_error
from diagnose.instruments.targets import LossInfo

import_tensorflow_quietly()
import keras  # noqa: E402

VARIABLES = {"dense": [6, 16], "dense/bias": [16], "out": [16, 3], "out/bias": [3]}
RNG = np.random.default_rng(0)


def rule(rule_id: str):
    return next(r for r in RULES if r.spec.id == rule_id)


def record(n: int = 40, loss=None, ratio: float = 1e-3, grad: float = 0.2, **columns) -> pd.DataFrame:
    step = np.arange(1, n + 1) * 10
    cols = {"step": step, "loss": 0.05 + 1.05 * np.exp(-step / 80) if loss is None else loss(step)}
    cols["grad_norm/global"] = np.full(n, 0.5)
    for name in VARIABLES:
        cols[f"grad_norm/{name}"] = np.full(n, grad)
        cols[f"update_ratio/{name}"] = np.full(n, ratio)
        cols[f"weight_norm/{name}"] = np.full(n, 2.0)
    cols.update(columns)
    return pd.DataFrame(cols)


def stuck(step):
    """A loss that stays at the label entropy (1.09 nats): the run learned nothing."""
    return np.full(len(step), 1.09)


def view(metrics=None, contract=None, layers=None, summary=None, loss="categorical_crossentropy") -> RunView:
    model = {"kind": "keras", "layers": layers or [], "outputs": ["out"] if layers else [], "loss": loss}
    return RunView({"model": model, "data": {}, "train": {}},
                   {"status": "completed", "variables": VARIABLES, "contract": contract or {},
                    "baselines": {"ln_vocab": math.log(3), "unigram_entropy": 1.09, "loss_at_step0": 1.1},
                    **(summary or {})},
                   record() if metrics is None else metrics)


def contract(kind="categorical", name="categoricalcrossentropy", activation="softmax", units=3, **targets):
    low, high = {"sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "relu": (0.0, None)}.get(activation, (None, None))
    return {"loss": {"name": name, "kind": kind, "from_logits": False},
            "output": {"activation": activation, "units": units, "range": [low, high]},
            "targets": {"structure": "one-hot", "min": 0.0, "max": 1.0, "non_integer_share": 0.0, **targets},
            "batch_size": 32}


def ids(found) -> list[str]:
    return [f.id for f in found]


# --- the facts ------------------------------------------------------------------------------------


def test_target_facts_tell_each_structure_apart():
    labels = RNG.integers(0, 4, 500)
    assert target_facts(labels, 4)["structure"] == "class-indices"
    assert target_facts(np.eye(4)[labels], 4)["structure"] == "one-hot"
    multi = (RNG.random((500, 4)) < 0.4).astype("float32")
    facts = target_facts(multi, 4)
    assert facts["structure"] == "multi-hot" and facts["multi_hot_share"] > 0.3
    assert target_facts((labels == 1).astype("float32")[:, None], 1)["structure"] == "binary"
    fractions = target_facts(labels / 255.0, 4)
    assert fractions["structure"] == "continuous" and fractions["non_integer_share"] > 0.5
    soft = RNG.dirichlet(np.ones(4), 500)
    assert target_facts(soft, 4)["structure"] == "soft-labels"
    assert target_facts(labels, 4)["majority_share"] == pytest.approx(np.bincount(labels).max() / 500)


def _model(units, activation, loss):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss)
    return model


def test_the_constant_loss_is_the_best_constant_prediction_under_the_compiled_loss():
    y = RNG.normal(3.0, 2.0, (2000, 1)).astype("float32")
    for loss, expected in (("mse", float(np.var(y))), ("mae", float(np.mean(np.abs(y - np.median(y)))))):
        model = _model(1, None, loss)
        info = LossInfo.of(model)
        assert constant_loss(loss_function(model), y, [1], loss_name=info.name, kind=info.kind, from_logits=False,
                             activation="linear") == pytest.approx(expected, rel=1e-6)
    # Numerically, for a loss with no closed form: the cross-entropy's is the labels' entropy ...
    labels = RNG.integers(0, 3, 3000)
    p = np.bincount(labels) / len(labels)
    model = _model(3, "softmax", "sparse_categorical_crossentropy")
    info = LossInfo.of(model)
    value = constant_loss(loss_function(model), labels, [3], loss_name=info.name, kind=info.kind,
                          from_logits=False, activation="softmax")
    assert value == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-4)
    # ... and a Huber loss's sits between its quadratic and linear regimes, below a constant at zero's.
    model = _model(1, None, keras.losses.Huber())
    info = LossInfo.of(model)
    value = constant_loss(loss_function(model), y, [1], loss_name=info.name, kind=info.kind, from_logits=False,
                          activation="linear")
    at_zero = float(keras.losses.Huber()(y, np.zeros_like(y)))
    assert 0 < value < at_zero


def test_a_cross_entropy_s_constant_starts_at_the_class_shares_and_moves_on_where_the_loss_does():
    from diagnose.instruments.constants import best_constant

    labels = np.random.default_rng(3).choice(4, 2000, p=[0.7, 0.1, 0.1, 0.1])  # far from uniform
    one_hot = np.eye(4, dtype="float32")[labels]
    shares = one_hot.mean(axis=0)
    for smoothing in (0.0, 0.3):
        model = _model(4, "softmax", keras.losses.CategoricalCrossentropy(label_smoothing=smoothing))
        info = LossInfo.of(model)
        value, prediction = best_constant(loss_function(model), one_hot, [4], loss_name=info.name, kind=info.kind,
                                          from_logits=False, activation="softmax")
        at_shares = float(keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)(
            one_hot, np.broadcast_to(shares, one_hot.shape)))
        if smoothing == 0.0:  # the class shares are the optimum: found there
            assert value == pytest.approx(at_shares, rel=1e-5)
            np.testing.assert_allclose(prediction, shares, rtol=1e-4)
        else:  # smoothing pulls the optimum towards uniform: the search moved on
            assert value < at_shares - 1e-4
    binary = (np.random.default_rng(4).random((2000, 3)) < [0.1, 0.5, 0.8]).astype("float32")
    model = _model(3, "sigmoid", "binary_crossentropy")
    info = LossInfo.of(model)
    value, prediction = best_constant(loss_function(model), binary, [3], loss_name=info.name, kind=info.kind,
                                      from_logits=False, activation="sigmoid")
    np.testing.assert_allclose(prediction, binary.mean(axis=0), rtol=1e-4)


def test_the_range_floor_is_what_the_output_range_alone_costs():
    y = RNG.normal(50.0, 10.0, (1000, 1)).astype("float32")
    model = _model(1, "sigmoid", "mse")
    expected = float(np.mean((y - np.clip(y, 0, 1)) ** 2))
    clipped, exact = range_floor(loss_function(model), y, [1], "sigmoid")
    assert clipped == pytest.approx(expected, rel=1e-5) and exact == 0
    assert range_floor(loss_function(model), y, [1], "linear") is None  # no bound, nothing forced


def test_a_poisson_head_on_counts_loses_nothing_to_its_range_but_a_linear_one_leaves_the_loss_s_domain():
    x = RNG.normal(size=(400, 5)).astype("float32")
    counts = RNG.poisson(3.0, (400, 1)).astype("float32")
    healthy = _model(1, "exponential", "poisson")
    facts = task_contract(healthy, LossInfo.of(healthy), counts, x[:64])
    # The Poisson loss at the targets themselves is not 0: only what the range adds to it counts.
    assert facts["range_floor_share"] == pytest.approx(0.0, abs=1e-6)
    assert rule("output-range-mismatch")(view(None, facts)) is None
    linear = _model(1, None, "poisson")
    facts = task_contract(linear, LossInfo.of(linear), counts, x[:64])
    assert facts["loss"]["domain_low"] == 0.0
    found = rule("output-range-mismatch")(view(None, facts))
    assert found is not None and "not defined" in found.title


def test_task_contract_reads_the_model_the_targets_and_the_first_outputs():
    x = RNG.normal(size=(300, 5)).astype("float32")
    model = _model(4, "sigmoid", "categorical_crossentropy")
    multi = (RNG.random((300, 4)) < 0.4).astype("float32")
    facts = task_contract(model, LossInfo.of(model), multi, x[:64], 32, 3, 10)
    assert facts["targets"]["structure"] == "multi-hot" and facts["output"]["activation"] == "sigmoid"
    assert facts["output"]["range"] == [0.0, 1.0] and facts["batch_size"] == 32
    start = facts["output"]["at_start"]
    assert start["outside_unit_share"] == 0 and start["row_sum_max"] > 1.2  # sigmoids do not sum to 1
    assert facts["constant_loss"] > 0 and facts["seconds"] < 5


def test_task_error_is_balanced_and_unit_free():
    facts = {"targets": {"structure": "class-indices"}, "output": {"units": 3, "activation": "softmax"},
             "loss": {"kind": "sparse"}}
    labels = np.array([0, 0, 0, 0, 1, 2])
    always_zero = np.tile([0.9, 0.05, 0.05], (6, 1))
    assert task_error(always_zero, labels, facts) == pytest.approx(2 / 3)  # 1 - 1/classes, however imbalanced
    assert task_error(np.eye(3)[labels], labels, facts) == 0
    regression = {"targets": {"structure": "continuous"}, "output": {"units": 1}, "loss": {"kind": "regression"}}
    y = RNG.normal(size=(100, 1))
    assert task_error(np.full_like(y, y.mean()), y, regression) == pytest.approx(1.0)
    assert task_error(y, y, regression) == 0


def test_the_description_says_what_is_frozen_unadapted_and_not_a_layer():
    from diagnose.instruments.describe import describe

    encoder = keras.Sequential([keras.layers.Dense(4)], name="encoder")
    encoder.trainable = False
    inputs = keras.Input((3,))
    x = keras.layers.Normalization(name="norm")(inputs)
    x = keras.ops.stop_gradient(encoder(x))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    model.compile(optimizer="sgd", loss="mse")
    described = describe(model)
    layers = {layer["name"]: layer for layer in described["layers"]}
    assert layers["norm"]["adapted"] is False and layers["encoder"]["frozen_params"] == 16
    assert layers["out"]["trainable_params"] == 5 and layers["out"]["frozen_params"] == 0
    assert any(layer.get("operation") and layer["class"] == "StopGradient" for layer in described["layers"])
    assert [inner["name"] for inner in described["inner_layers"] if inner["class"] == "Dense"]


# --- the rules, on hand-built records ----------------------------------------------------------------


def test_a_categorical_loss_over_multi_hot_targets_is_the_cause_whatever_the_output():
    broken = view(None, contract(activation="sigmoid", structure="multi-hot", multi_hot_share=0.4))
    assert ids(check_view(broken))[0] == "loss-target-mismatch"
    assert rule("relu-output-crossentropy")(broken) is None  # the sigmoid is right for tags: the loss is wrong
    assert rule("loss-target-mismatch")(view(None, contract(structure="one-hot"))) is None


def test_a_regression_loss_over_classes_is_named_only_when_the_run_failed():
    mae = contract(kind="regression", name="meanabsoluteerror", structure="one-hot", majority_share=0.34)
    failed = view(record(loss=stuck, accuracy=np.full(40, 0.33)), mae, loss="mae")
    assert rule("loss-target-mismatch")(failed) is not None
    trained = view(record(accuracy=np.full(40, 0.9)), mae, loss="mae")
    assert rule("loss-target-mismatch")(trained) is None


def test_binary_cross_entropy_over_ten_class_indices():
    many = view(None, contract(kind="binary", name="binarycrossentropy", activation="sigmoid", units=1,
                         structure="class-indices", max=9.0))
    assert rule("loss-target-mismatch")(many) is not None


@pytest.mark.parametrize("targets, fires", [
    ({"structure": "continuous", "non_integer_share": 0.75, "max": 0.0118}, True),  # labels / 255
    ({"structure": "class-indices", "min": -1.0, "max": 2.0}, True),
    ({"structure": "class-indices", "max": 2.0, "out_of_units_share": 0.0}, False),
])
def test_sparse_labels_must_be_class_indices(targets, fires):
    facts = contract(kind="sparse", name="sparsecategoricalcrossentropy", **targets)
    assert (rule("labels-not-class-indices")(view(None, facts)) is not None) == fires


def test_binary_targets_outside_zero_one():
    facts = contract(kind="binary", name="binarycrossentropy", activation="sigmoid", units=1, structure="continuous",
                     min=-1.0, max=1.0, distinct=2)
    assert rule("labels-not-class-indices")(view(None, facts)) is not None


def test_an_output_range_that_excludes_the_targets_costs_a_share_of_the_constant_loss():
    facts = contract(kind="regression", name="mse", activation="sigmoid", units=1, structure="continuous",
                     min=-3.0, max=60.0)
    assert rule("output-range-mismatch")(view(None, facts | {"range_floor_share": 7.3, "range_floor": 2800.0})) \
        is not None
    assert rule("output-range-mismatch")(view(None, facts | {"range_floor_share": 0.01, "range_floor": 0.1})) \
        is None


def test_unscaled_targets_need_a_linear_head_and_a_run_that_learned_little():
    facts = contract(kind="regression", name="mse", activation="linear", units=1, structure="continuous",
                     rms=40000.0, mean=40000.0, std=9000.0)
    facts["output"]["range"] = [None, None]
    flat = record(loss=lambda s: np.full(len(s), 8.1e7))
    summary = {"baselines": {"target_variance": 8.1e7, "loss_at_step0": 1.7e9}}
    assert rule("unscaled-targets")(view(flat, facts, summary=summary, loss="mse")) is not None
    learned = record(loss=lambda s: 8.1e7 * np.exp(-s / 30))
    assert rule("unscaled-targets")(view(learned, facts, summary=summary, loss="mse")) is None


def _dense(name, activation=None, inbound=(), **config):
    return {"class": "Dense", "name": name, "config": {"activation": activation or "linear", **config},
            "inbound": [list(inbound)], "trainable_params": 10, "frozen_params": 0}


def test_excessive_dropout_and_frozen_layers_in_a_run_that_failed():
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]}, _dense("dense", "relu", ["x"]),
              {"class": "Dropout", "name": "drop", "config": {"rate": 0.9}, "inbound": [["dense"]]},
              _dense("out", "softmax", ["drop"])]
    failed = record(loss=stuck)
    assert rule("excessive-dropout")(view(failed, contract(), layers)) is not None
    assert rule("excessive-dropout")(view(record(), contract(), layers)) is None  # it trained: not a cause
    # Most units dropped means a rate above one half: 0.7 (a keep probability of 0.7 passed as a rate) is,
    # the usual ceiling of 0.5 is not.
    for rate, named in ((0.7, True), (0.5, False)):
        layers[2] = {**layers[2], "config": {"rate": rate}}
        assert (rule("excessive-dropout")(view(failed, contract(), layers)) is not None) is named
    layers[1] = {**layers[1], "trainable": False, "frozen_params": 112, "trainable_params": 0}
    assert rule("frozen-layers")(view(failed, contract(), layers)) is not None


def test_every_matrix_blocked_under_a_probability_crossentropy_names_keras_clip_off_tensorflow():
    """On JAX and PyTorch Keras clips the probabilities of a cross-entropy computed from them, and a saturated
    output passes back nothing: the explanation says so where every matrix is blocked, on those backends only."""
    metrics = record(loss=stuck)
    for name in VARIABLES:
        metrics[f"grad_norm/{name}"] = 0.0
    summary = {"initial_weight_digests": {"dense": "ab12", "out": "cd34"},
               "at_start": {f"grad_norm/{name}": 0.0 for name in VARIABLES}}

    def explanation(backend, from_logits=False, blocked=VARIABLES):
        found = view(metrics if blocked is VARIABLES else metrics.assign(**{"grad_norm/out": 0.2}), summary=summary)
        found.summary["versions"] = {"keras": keras.__version__, "keras_backend": backend}
        found.model["loss_from_logits"] = from_logits
        return rule("blocked-gradient")(found).explanation

    assert "PyTorch Keras computes a cross-entropy on probabilities" in explanation("torch")
    assert "on JAX Keras" in explanation("jax")
    assert "clipped" not in explanation("tensorflow")  # computed from the logits there
    assert "clipped" not in explanation("jax", from_logits=True)  # no probabilities to clip
    assert "clipped" not in explanation("jax", blocked=None)  # one matrix still trains: a cut path, not a clip


def test_a_weight_matrix_that_never_gets_a_gradient_is_blocked():
    metrics = record(loss=stuck)
    metrics["grad_norm/dense"] = 0.0
    learned = record()
    learned["grad_norm/dense"] = 0.0
    wasted = view(learned, summary={"initial_weight_digests": {"dense": "ab12", "out": "cd34"}})
    assert rule("blocked-gradient")(wasted) is None  # a run that learned: no-gradient says it, no cause
    blocked = view(metrics, summary={"initial_weight_digests": {"dense": "ab12", "out": "cd34"},
                                     "at_start": {"grad_norm/dense": 0.0}})
    assert rule("blocked-gradient")(blocked) is not None
    zeros = view(metrics, summary={"initial_weight_digests": {"dense": None, "out": "cd34"}})
    assert rule("blocked-gradient")(zeros) is None  # a matrix that starts at zero: constant-init's


def test_weights_the_input_goes_around_are_no_cause_of_a_model_that_ignores_its_input():
    metrics = record(loss=stuck)  # flat at chance
    metrics["grad_norm/dense"] = 0.0
    summary = {"initial_weight_digests": {"dense": "ab12", "out": "cd34"}, "at_start": {"grad_norm/dense": 0.0}}
    chain = [{"class": "InputLayer", "name": "x"},
             {"class": "Dense", "name": "dense", "inbound": [["x"]]},
             {"class": "Dense", "name": "out", "inbound": [["dense"]]}]
    assert rule("blocked-gradient")(view(metrics, layers=chain, summary=summary)) is not None  # the only path
    residual = chain[:2] + [{"class": "Add", "name": "add", "inbound": [["x", "dense"]]},
                            {"class": "Dense", "name": "out", "inbound": [["add"]]}]
    assert rule("blocked-gradient")(view(metrics, layers=residual, summary=summary)) is None


def test_weights_behind_a_stop_gradient_the_model_applies_are_blocked_whatever_the_run_reached():
    learned = record()
    learned["grad_norm/dense"] = 0.0
    digests = {"initial_weight_digests": {"dense": "ab12", "out": "cd34"}}
    layers = [{"class": "InputLayer", "name": "x"},
              {"class": "Dense", "name": "dense", "inbound": [["x"]]},
              {"class": "StopGradient", "name": "stop_gradient", "operation": True, "inbound": [["dense"]]},
              {"class": "Dense", "name": "out", "inbound": [["stop_gradient"]]}]
    found = rule("blocked-gradient")(view(learned, layers=layers, summary=digests))
    assert found is not None and "dense" in found.title
    assert any(e.observed == "StopGradient" for e in found.evidence)
    # The same zero gradient with the stop_gradient elsewhere (after the weights' layer's consumer, not behind
    # it) is no measured cut: a run that learned makes it wasted weights, not a cause.
    elsewhere = [layers[0], {**layers[1], "inbound": [["x"]]},
                 {"class": "Dense", "name": "out", "inbound": [["dense"]]},
                 {"class": "StopGradient", "name": "stop_gradient", "operation": True, "inbound": [["x"]]}]
    assert rule("blocked-gradient")(view(learned, layers=elsewhere, summary=digests)) is None


def test_batchnorm_over_one_value_per_channel():
    bn = {"class": "BatchNormalization", "name": "bn", "config": {"axis": -1}, "output_shape": [None, 16]}
    assert rule("batchnorm-small-batch")(view(None, contract() | {"batch_size": 1}, [bn])) is not None
    assert rule("batchnorm-small-batch")(view(None, contract() | {"batch_size": 32}, [bn])) is None
    conv = {**bn, "output_shape": [None, 8, 8, 16]}  # 64 positions per image: enough values ...
    assert rule("batchnorm-small-batch")(view(None, contract() | {"batch_size": 1}, [conv])) is None
    # ... but all one image's: in a run that failed, its own statistics (instance statistics in training,
    # the population's at inference) are the cause named; with two images a batch they are not its own.
    alone = rule("batchnorm-small-batch")(view(record(loss=stuck), contract() | {"batch_size": 1}, [conv]))
    assert alone is not None and "one example per batch" in alone.title
    assert rule("batchnorm-small-batch")(view(record(loss=stuck), contract() | {"batch_size": 2}, [conv])) is None


def test_preprocessing_never_adapted_or_with_a_vocabulary_that_misses_the_data():
    norm = {"class": "Normalization", "name": "norm", "adapted": False}
    assert rule("unadapted-preprocessing")(view(None, contract(), [norm])) is not None
    assert rule("unadapted-preprocessing")(view(None, contract(), [{**norm, "adapted": True}])) is None
    misses = contract() | {"preprocessing": [{"name": "vec", "class": "TextVectorization", "oov_share": 0.93}]}
    assert rule("unadapted-preprocessing")(view(None, misses)) is not None
    fits = contract() | {"preprocessing": [{"name": "vec", "class": "TextVectorization", "oov_share": 0.08}]}
    assert rule("unadapted-preprocessing")(view(None, fits)) is None


def test_an_unadapted_normalization_does_not_count_as_scaling_the_inputs():
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]},
              {"class": "Normalization", "name": "norm", "adapted": False, "inbound": [["x"]]},
              _dense("out", "softmax", ["norm"])]
    metrics = record(loss=stuck, **{"input_rms/x": np.full(40, 800.0)})
    assert rule("unscaled-inputs")(view(metrics, contract(), layers)) is not None
    layers[1] = {**layers[1], "adapted": True}
    assert rule("unscaled-inputs")(view(metrics, contract(), layers)) is None
    layers[1] = {"class": "Discretization", "name": "norm", "inbound": [["x"]]}  # bins in the raw units
    assert rule("unscaled-inputs")(view(metrics, contract(), layers)) is None


def test_a_network_with_no_nonlinearity_that_failed():
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]}, _dense("dense", None, ["x"]),
              _dense("dense_1", None, ["dense"]), _dense("out", None, ["dense_1"])]
    assert rule("missing-activation")(view(record(loss=stuck), contract(), layers)) is not None
    layers[1] = _dense("dense", "relu", ["x"])
    assert rule("missing-activation")(view(record(loss=stuck), contract(), layers)) is None


def test_class_imbalance_when_the_model_predicts_the_majority():
    facts = contract(kind="sparse", name="sparsecategoricalcrossentropy", structure="class-indices",
                     majority_share=0.96, majority_class=0)
    at_prior = record(loss=lambda s: np.full(len(s), 0.17), val_accuracy=np.full(40, 0.96))
    summary = {"baselines": {"unigram_entropy": 0.168, "loss_at_step0": 0.7}}
    assert rule("class-imbalance")(view(at_prior, facts, summary=summary)) is not None
    learned = record(loss=lambda s: np.full(len(s), 0.05), val_accuracy=np.full(40, 0.99))
    assert rule("class-imbalance")(view(learned, facts, summary=summary)) is None


def test_too_few_steps_when_still_falling_at_healthy_step_sizes():
    falling = record(loss=lambda s: 1.1 - 0.3 * s / s[-1])  # a straight fall, stopped at 0.8 of 1.1
    found = rule("too-few-steps")(view(falling))
    assert found is not None and found.kind == "symptom"  # it learned something: more epochs would help
    bent = record(loss=lambda s: 0.8 + 0.3 * np.exp(-s / 40))  # as far down, but levelling off
    assert rule("too-few-steps")(view(bent)) is None
    blown_start = view(record(loss=lambda s: 5.0 - 3.8 * s / s[-1]), summary={  # from 5 nats to 1.2: at chance
        "baselines": {"unigram_entropy": 1.09, "loss_at_step0": 5.0}})
    assert rule("too-few-steps")(blown_start).kind == "root-cause"
    assert rule("too-few-steps")(view(record(loss=lambda s: 1.1 - 0.3 * s / s[-1], ratio=1e-5))) is None
    assert rule("too-few-steps")(view(record())) is None  # converged


def test_constant_init_reads_every_initializer_and_the_initial_values():
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]},
              {"class": "Embedding", "name": "emb", "config": {"embeddings_initializer": "Zeros"},
               "inbound": [["x"]]}, _dense("out", "softmax", ["emb"])]
    assert rule("constant-init")(view(None, contract(), layers)) is not None
    layers[1]["config"] = {"embeddings_initializer": "RandomUniform"}
    assert rule("constant-init")(view(None, contract(), layers)) is None
    digests = {"initial_weight_digests": {"dense": None, "dense/bias": None, "out": "ab"}}
    assert rule("constant-init")(view(record(loss=stuck), contract(), summary=digests)) is not None
    # Seen only in the values, in a run that learned (a zero-initialised residual projection): no cause.
    assert rule("constant-init")(view(None, contract(), summary=digests)) is None


def test_a_step_size_is_not_named_for_a_broken_contract_without_ratios_that_are_off():
    blown = record(loss=lambda s: np.where(s < 100, 1.1, 30.0))  # a loss blow-up, ratios healthy
    broken = contract(activation="sigmoid", structure="multi-hot", multi_hot_share=0.4)
    assert rule("huge-steps")(view(blown)) is not None
    assert rule("huge-steps")(view(blown, broken)) is None


# --- unexplained ---------------------------------------------------------------------------------


def test_a_failure_with_no_root_cause_is_unexplained_first_and_says_what_was_ruled_out():
    at_chance = view(record(loss=stuck, probe_loss_real=np.full(40, 1.09), probe_loss_shuffled=np.full(40, 1.09)))
    found = check_view(at_chance)
    assert ids(found)[0] == "unexplained" and found[0].kind == "unexplained"
    assert "ignores-input" in ids(found)
    assert "huge-steps" in found[0].explanation and "labels that do not depend on the inputs" in found[0].explanation
    assert "unexplained" not in ids(check_view(view()))  # a run that learned did not fail
    # A root cause found: the failure is explained.
    broken = view(record(loss=stuck), contract(activation="sigmoid", structure="multi-hot", multi_hot_share=0.4))
    assert "unexplained" not in ids(check_view(broken))


def test_a_diverged_run_with_no_cause_is_unexplained():
    diverged = view(summary={"status": "diverged", "diverged_at": {"step": 200, "variable": "dense"}})
    assert ids(check_view(diverged))[0] == "unexplained"


def test_a_loss_of_its_own_is_at_chance_against_its_own_constant():
    summary = {"baselines": {"constant_loss": 0.5, "loss_at_step0": 0.9}}
    flat = view(record(loss=lambda s: np.full(len(s), 0.49)), summary=summary, loss="pinball")
    assert ids(check_view(flat))[0] == "unexplained"
    learned = view(record(loss=lambda s: 0.5 * np.exp(-s / 50)), summary=summary, loss="pinball")
    assert "unexplained" not in ids(check_view(learned))


def test_padding_made_inside_the_model_is_measured_where_the_embedding_reads_it():
    from diagnose.instruments.input_facts import embedding_facts

    texts = keras.ops.convert_to_tensor(np.array(["a b", "c", "a b c d"]))
    vectorize = keras.layers.TextVectorization(output_sequence_length=10)
    vectorize.adapt(texts)
    inputs = keras.Input((), dtype="string")
    hidden = keras.layers.GRU(4)(keras.layers.Embedding(8, 4, name="emb")(vectorize(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    facts = embedding_facts(model, texts)
    assert facts == [{"name": "emb", "zero_share": pytest.approx(23 / 30), "mask_zero": False}]
    layers = [{"class": "GRU", "name": "gru"}, {"class": "Embedding", "name": "emb", "config": {}}]
    unmasked = view(record(loss=stuck), contract() | {"embeddings": facts}, layers)
    assert rule("unmasked-padding")(unmasked) is not None


def test_a_class_weighted_model_is_judged_by_its_balanced_error_not_the_prior_s_loss():
    facts = contract(kind="sparse", name="sparsecategoricalcrossentropy", structure="class-indices",
                     classes_seen=2, majority_share=0.95) | {"weighted": True}
    weighted = record(loss=lambda s: np.full(len(s), 0.33), val_loss=np.full(40, 0.33),
                      probe_task_error=np.full(40, 0.3))  # above the labels' entropy, yet it learned
    summary = {"baselines": {"unigram_entropy": 0.2, "loss_at_step0": 0.7}}
    assert "unexplained" not in ids(check_view(view(weighted, facts, summary=summary)))
    at_prior = record(loss=lambda s: np.full(len(s), 0.33), probe_task_error=np.full(40, 0.5))
    assert ids(check_view(view(at_prior, facts, summary=summary)))[0] == "unexplained"


def test_the_task_error_of_a_loss_of_its_own_is_not_known():
    facts = {"targets": {"structure": "binary"}, "output": {"units": 1}, "loss": {"kind": "other"}}
    assert task_error(np.array([[3.0], [0.2]]), np.array([[1.0], [0.0]]), facts) is None


def test_a_linear_network_that_diverged_is_not_short_of_capacity():
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]}, _dense("dense", None, ["x"]),
              _dense("out", None, ["dense"])]
    diverged = view(record(loss=stuck), contract(), layers, summary={"status": "diverged",
                                                                     "diverged_at": {"step": 30}})
    assert rule("missing-activation")(diverged) is None


def test_the_task_error_of_integer_targets_under_a_regression_loss_is_one_less_r_squared():
    facts = {"targets": {"structure": "class-indices"}, "output": {"units": 1}, "loss": {"kind": "regression"}}
    stars = np.array([[200.0], [400.0], [1000.0], [600.0]])
    assert task_error(np.full_like(stars, stars.mean()), stars, facts) == pytest.approx(1.0)


def test_held_out_targets_that_drift_are_judged_against_the_training_constant_scored_on_them():
    x = RNG.normal(size=(300, 5)).astype("float32")
    model = _model(1, None, "mse")
    train, valid = RNG.normal(0.0, 1.0, (300, 1)), RNG.normal(3.0, 1.0, (100, 1))  # a series that moved on
    facts = task_contract(model, LossInfo.of(model), train, x[:64], y_valid=valid)
    assert facts["constant_loss_valid"] == pytest.approx(float(np.mean((valid - train.mean()) ** 2)), rel=1e-4)
    summary = {"baselines": {"target_variance": 1.0, "loss_at_step0": 2.0}}
    drifted = record(loss=lambda s: np.full(len(s), 0.3), val_loss=np.full(40, 2.0))  # far below 10.0
    assert "unexplained" not in ids(check_view(view(drifted, facts, summary=summary, loss="mse")))


def test_the_scale_the_first_weights_read_after_the_model_s_own_preprocessing():
    from diagnose.instruments.input_facts import first_weights_facts

    inputs = keras.Input((8,))
    twice = keras.layers.Rescaling(1 / 255)(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="first")(twice))
    pixels = RNG.integers(0, 256, (64, 8)).astype("float32")
    (facts,) = first_weights_facts(model, pixels)
    assert facts["name"] == "first" and facts["input_rms"] < INPUT_RMS_LOW
    layers = [{"class": "InputLayer", "name": "x", "inbound": [[]]},
              {"class": "Rescaling", "name": "r", "inbound": [["x"]]}, _dense("out", "softmax", ["r"])]
    metrics = record(loss=stuck, **{"input_rms/x": np.full(40, 120.0)})
    found = rule("unscaled-inputs")(view(metrics, contract() | {"first_weights": [facts]}, layers))
    assert found is not None and found.evidence[0].observed < INPUT_RMS_LOW
    assert rule("unscaled-inputs")(view(metrics, contract(), layers)) is None  # scaled once: fine


def test_the_first_weights_of_a_nested_block_are_found_through_it():
    from diagnose.instruments.input_facts import first_weights_facts

    inputs = keras.Input((8,))
    scaled = keras.Sequential([keras.Input((8,)), keras.layers.Rescaling(1 / 255)], name="augment")(
        keras.layers.Rescaling(1 / 255)(inputs))
    base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="first")], name="base")
    model = keras.Model(inputs, keras.layers.Dense(2)(base(scaled)))
    (facts,) = first_weights_facts(model, RNG.integers(0, 256, (32, 8)).astype("float32"))
    assert facts["name"] == "base/first" and facts["input_rms"] < INPUT_RMS_LOW


def test_the_contract_measures_whether_the_model_is_one_affine_map_of_its_input():
    from diagnose.instruments.contract import output_activation
    from diagnose.instruments.input_facts import affine_facts

    x = RNG.normal(size=(32, 6)).astype("float32")

    def deviation(activation, head):
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8, activation=activation)(inputs)
        h = keras.layers.Lambda(lambda t: t * 2.0)(h)  # an op of the user's own: linear here
        model = keras.Model(inputs, keras.layers.Dense(3, activation=head)(keras.layers.Dense(8)(h)))
        at_start = [np.asarray(model(x), np.float64)]
        return affine_facts(model, x, at_start, [output_activation(model)])

    assert deviation(None, None)["deviation"] < AFFINE_DEVIATION
    assert deviation(None, "softmax")["deviation"] < AFFINE_DEVIATION  # the head's softmax undone
    assert deviation("relu", "softmax")["deviation"] > 100 * AFFINE_DEVIATION
    ids = keras.Input((5,), dtype="int32")
    tokens = keras.Model(ids, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(9, 3)(ids))))
    ints = RNG.integers(0, 9, (16, 5)).astype("int32")
    assert affine_facts(tokens, ints, [np.asarray(tokens(ints), np.float64)], ["linear"]) is None  # ids don't mix


def test_a_regression_held_out_where_the_series_drifted_is_judged_against_the_training_constant():
    from diagnose.findings.outcome import at_chance
    from diagnose.instruments.task_error import constant_task_error

    facts = {"targets": {"structure": "continuous"}, "output": {"units": 1}, "loss": {"kind": "regression"},
             "constant_prediction": [0.0]}  # the training targets' mean
    later = 3.0 + RNG.normal(size=(64, 1))  # held-out values that drifted three sd away
    drifted = constant_task_error(later, facts)
    assert drifted == pytest.approx(1.0 + np.mean(later) ** 2 / np.var(later), rel=1e-9)  # the drift on top of 1
    assert constant_task_error(RNG.normal(size=(64, 1)), facts) == pytest.approx(1.0, abs=0.1)
    regression = contract(kind="regression", name="meansquarederror", activation="linear", units=1,
                          structure="continuous")
    tracking = record(probe_task_error=np.full(40, 3.0))  # far off the probe's own mean, well inside the drift
    assert at_chance(view(tracking, regression | {"probe_constant_task_error": drifted})) is None
    assert at_chance(view(tracking, regression)) is not None  # judged against the probe's own mean: at chance


def test_an_input_of_zeros_is_said_and_its_weights_zero_gradient_is_not_called_a_cut():
    metrics = record(loss=stuck, **{"input_rms/x": np.zeros(40)})
    metrics["grad_norm/dense"] = 0.0
    summary = {"initial_weight_digests": {"dense": "ab12", "out": "cd34"}, "at_start": {"grad_norm/dense": 0.0}}
    silent = view(metrics, summary=summary)
    assert rule("blocked-gradient")(silent) is None  # weights multiplying zeros: the data is cut, not the path
    first = check_view(silent)[0]
    assert first.id == "unexplained" and any(e.metric.startswith("input_rms/x") for e in first.evidence)
    assert first.fix.startswith("An input is 0 everywhere (input_rms/x)")
    varies = record(loss=stuck, **{"input_rms/x": np.full(40, 1.0)})
    varies["grad_norm/dense"] = 0.0
    assert rule("blocked-gradient")(view(varies, summary=summary)) is not None


def test_an_output_the_same_for_every_example_that_no_gradient_reaches_is_said_not_blamed_on_a_cut():
    metrics = record(loss=stuck)
    for name in ("dense", "out"):
        metrics[f"grad_norm/{name}"] = 0.0
    facts = contract(activation="linear") | {"output": {"activation": "linear", "units": 3, "range": [None, None],
                                                        "at_start": {"min": 0.0196, "max": 0.0196}}}
    summary = {"initial_weight_digests": {"dense": "ab12", "out": "cd34"},
               "at_start": {"grad_norm/dense": 0.0, "grad_norm/out": 0.0}}
    same = view(metrics, facts, summary=summary)
    assert rule("blocked-gradient")(same) is None
    first = check_view(same)[0]
    assert first.id == "unexplained" and "the same for every example" in first.fix
    # A zero-initialised output layer starts constant too, but its weights get gradients: no such statement.
    learning = record(loss=stuck)
    assert "the same for every example" not in check_view(view(learning, facts, summary=summary))[0].fix

"""Mechanical changes applied to tiny built, compiled Keras models (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose._tf import import_tensorflow_quietly
from diagnose.errors import ConfigError
from diagnose.userstudy.transforms import OPS, apply_changes

import_tensorflow_quietly()
import keras  # noqa: E402


def _mlp(output="relu", hidden="relu", init="glorot_uniform", loss="categorical_crossentropy", clipnorm=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), name="x"),
                              keras.layers.Dense(8, activation=hidden, kernel_initializer=init, name="hidden"),
                              keras.layers.Dropout(0.1),
                              keras.layers.Dense(3, activation=output, name="out")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, clipnorm=clipnorm), loss=loss, metrics=["accuracy"])
    return model


X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def test_learning_rate_and_clipping_recompile_with_one_argument_changed():
    model, _ = apply_changes(_mlp(clipnorm=50.0), {}, [{"op": "learning_rate", "factor": 0.01}])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert model.optimizer.clipnorm == 50.0 and model.loss == "categorical_crossentropy"
    model, _ = apply_changes(model, {}, [{"op": "global_clipnorm", "norm": 2.5}])
    assert model.optimizer.global_clipnorm == 2.5 and model.optimizer.clipnorm is None
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_output_activation_through_dropout_changes_what_the_model_computes():
    model = _mlp(output="relu")
    model, _ = apply_changes(model, {}, [{"op": "output_activation", "activation": "softmax"}])
    probs = np.asarray(model(X))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs > 0).all()


def test_loss_changes_keep_the_loss_class():
    model, _ = apply_changes(_mlp(output="linear"), {}, [{"op": "from_logits"}])
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.from_logits
    model, _ = apply_changes(_mlp(loss="mse"), {}, [{"op": "loss_reduction", "reduction": "sum"}])
    assert isinstance(model.loss, keras.losses.MeanSquaredError) and model.loss.reduction == "sum"


def test_reinit_kernels_and_hidden_activation_act_on_the_named_layers():
    model = _mlp(init="ones", hidden="sigmoid")
    before_out = np.asarray(model.get_layer("out").kernel).copy()
    model, _ = apply_changes(model, {}, [{"op": "reinit_kernels", "layers": ["hidden"]},
                                         {"op": "hidden_activation", "layers": ["hidden"], "activation": "relu"}])
    kernel = np.asarray(model.get_layer("hidden").kernel)
    assert kernel.std() > 0.1  # no longer one constant
    assert np.array_equal(np.asarray(model.get_layer("out").kernel), before_out)
    assert model.get_layer("hidden").activation is keras.activations.relu
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        apply_changes(model, {}, [{"op": "reinit_kernels", "layers": ["nope"]}])


class _Positions(keras.layers.Layer):
    """Adds a trainable (5, 4) table to its input, initialised to ones."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=(5, 4), initializer="ones", name="table")

    def call(self, x):
        return x + self.table


def test_reinit_table_draws_the_added_table_at_the_given_scale():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), dtype="int32")
    h = _Positions(name="pos")(keras.layers.Embedding(10, 4, name="emb")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(h)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model, _ = apply_changes(model, {}, [{"op": "reinit_table", "sites": ["pos"], "stddev": 0.03}])
    table = np.asarray(model.get_layer("pos").table)
    assert 0.01 < table.std() < 0.06 and abs(table.mean()) < 0.03


def test_mask_zero_masks_the_padding_a_recurrent_layer_reads():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), dtype="int32")
    model = keras.Model(inputs, keras.layers.GRU(3)(keras.layers.Embedding(10, 4, name="emb")(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[3, 4, 0, 0, 0, 0]])
    before = np.asarray(model(ids))
    model, _ = apply_changes(model, {}, [{"op": "mask_zero", "layers": ["emb"]}])
    masked = np.asarray(model(ids))
    assert not np.allclose(before, masked)  # the GRU now stops at the padding
    assert np.asarray(model.get_layer("emb").compute_mask(ids)).tolist() == [[True, True] + [False] * 4]


def test_standardize_inputs_uses_the_training_statistics_for_every_split():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(200, 4)) * 300 + 50).astype(np.float32)
    fit = {"x": x, "y": np.zeros(200), "validation_data": (x[:20] + 1.0, np.zeros(20))}
    _, out = apply_changes(_mlp(), fit, [{"op": "standardize_inputs", "inputs": ["x"]}])
    assert np.allclose(out["x"].mean(axis=0), 0, atol=1e-4) and np.allclose(out["x"].std(axis=0), 1, atol=1e-3)
    assert np.allclose(out["validation_data"][0], out["x"][:20] + 1.0 / x.std(axis=0), atol=1e-4)
    assert out["x"] is not fit["x"] and fit["x"] is x  # the data given is left as it was
    with pytest.raises(ConfigError, match="no input named 'pixels'"):
        apply_changes(_mlp(), fit, [{"op": "standardize_inputs", "inputs": ["pixels"]}])


def test_standardize_inputs_finds_an_unnamed_input_by_the_name_its_record_gives_it():
    import keras

    from diagnose.instruments.describe import input_names

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    (name,) = input_names(model)
    assert name != model.inputs[0].name  # the input layer's name, not the tensor's ("keras_tensor...")
    x = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32) * 100
    _, out = apply_changes(model, {"x": x, "y": np.zeros(50), "validation_data": None},
                           [{"op": "standardize_inputs", "inputs": [name]}])
    assert np.allclose(out["x"].std(axis=0), 1, atol=1e-3)


def test_unknown_op_is_refused():
    with pytest.raises(ConfigError, match="unknown change op 'teleport'"):
        apply_changes(_mlp(), {}, [{"op": "teleport"}])
    assert "learning_rate" in OPS


def test_standardize_inputs_finds_an_input_renamed_in_another_process_by_its_position():
    x = (np.random.default_rng(3).normal(size=(60, 4)) * 200).astype(np.float32)
    fit = {"x": x, "y": np.zeros(60), "validation_data": None}
    # Recorded as "input_layer_1" where another model was built first; "x" in the rebuilt model.
    _, out = apply_changes(_mlp(), fit, [{"op": "standardize_inputs", "inputs": ["input_layer_1"],
                                          "positions": [0]}])
    assert np.allclose(out["x"].std(axis=0), 1, atol=1e-3)


def test_the_contract_fixes_change_what_they_say():
    import keras

    model, fit = apply_changes(_mlp(output="softmax"), {"epochs": 3, "x": None},
                               [{"op": "loss", "loss": "binary_crossentropy"},
                                {"op": "fit", "epochs_factor": 4, "batch_size": 32}])
    assert model._compile_config.config["loss"] == "binary_crossentropy" and fit["epochs"] == 12
    assert fit["batch_size"] == 32
    labels = np.array([0] * 90 + [1] * 10)
    _, fit = apply_changes(_mlp(), {"y": labels}, [{"op": "fit", "class_weight": "balanced"}])
    assert fit["class_weight"] == pytest.approx({0: 100 / 180, 1: 100 / 20})
    model = _mlp()
    model.get_layer("hidden").trainable = False
    model, _ = apply_changes(model, {}, [{"op": "unfreeze", "layers": ["hidden"]}])
    assert model.get_layer("hidden").trainable and len(model.trainable_weights) == 4
    model = _mlp()
    drop = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout))
    model, _ = apply_changes(model, {}, [{"op": "dropout_rate", "layers": {drop.name: {"rate": 0.9}}}])
    assert drop.rate == 0.9


def test_adapt_fits_a_preprocessing_layer_to_the_training_inputs_it_reads():
    import keras

    inputs = keras.Input((3,), name="raw")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Normalization(name="norm")(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    x = (np.random.default_rng(4).normal(size=(100, 3)) * 50 + 10).astype(np.float32)
    model, _ = apply_changes(model, {"x": x}, [{"op": "adapt", "layers": ["norm"]}])
    normalised = np.asarray(model.get_layer("norm")(x))
    assert np.allclose(normalised.mean(axis=0), 0, atol=1e-4) and np.allclose(normalised.std(axis=0), 1, atol=1e-3)


def test_adapt_gives_a_lookup_with_a_static_vocabulary_the_training_data_s_own():
    import keras

    inputs = keras.Input((1,), dtype="string", name="city")
    lookup = keras.layers.StringLookup(vocabulary=["paris ", "rome "], name="lookup")  # not the data's spelling
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.ops.cast(lookup(inputs), "float32")))
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([["paris"], ["rome"], ["paris"], ["oslo"]])
    model, _ = apply_changes(model, {"x": x}, [{"op": "adapt", "layers": ["lookup"]}])
    assert lookup.get_vocabulary()[1:] == ["paris", "oslo", "rome"]  # by frequency, then as sorted
    assert int(np.asarray(lookup(np.array([["paris"]]))).item()) == 1  # no longer out of vocabulary


def test_standardize_targets_uses_the_training_targets_for_every_split():
    y = np.random.default_rng(5).normal(4e4, 9e3, (80, 1))
    fit = {"y": y, "validation_data": (np.zeros((5, 4)), y[:5]), "probe": (np.zeros((3, 4)), y[:3])}
    _, out = apply_changes(_mlp(output="linear", loss="mse"), fit, [{"op": "standardize_targets"}])
    assert abs(out["y"].mean()) < 1e-4 and abs(out["y"].std() - 1) < 1e-3
    assert np.allclose(out["validation_data"][1], out["y"][:5]) and np.allclose(out["probe"][1], out["y"][:3])
    assert fit["y"] is y  # the data given is left as it was

"""Tiny Keras models and data for the user-study tests: a builder that takes settings, a data function.

The task: 8 standard-normal features, 3 classes given by which of three fixed linear
scores is largest (with noise); 384 training rows, 128 held out. With the default
settings the MLP learns it in a few epochs; features scaled by 100 into SGD blow it
up in the first steps.
"""

import numpy as np

import keras

N_TRAIN, N_VALID, FEATURES, CLASSES = 384, 128, 8, 3


def data(settings):
    """((x, y), (x_valid, y_valid)); ``scale`` multiplies the features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    w = rng.normal(size=(FEATURES, CLASSES))
    y = np.argmax(x @ w + 0.3 * rng.normal(size=(len(x), CLASSES)), axis=1).astype(np.int32)
    x = x * np.float32(settings.get("scale", 1.0))
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def build(settings):
    """Dense(16, relu) [-> Dropout(``dropout``)] -> Dense(3, output); ``optimizer`` (adam, sgd) at ``lr``;
    ``reduction`` of the loss."""
    hidden = [keras.layers.Dense(16, activation="relu")]
    if settings.get("dropout"):
        hidden.append(keras.layers.Dropout(settings["dropout"]))
    model = keras.Sequential([keras.Input((FEATURES,), name="features"), *hidden,
                              keras.layers.Dense(CLASSES, activation=settings.get("output", "softmax"))])
    loss = keras.losses.SparseCategoricalCrossentropy(reduction=settings.get("reduction", "sum_over_batch_size"))
    optimizer = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[settings.get("optimizer", "adam")]
    model.compile(optimizer=optimizer(settings.get("lr", 0.01)), loss=loss, metrics=["accuracy"])
    return model


def data_without_validation(settings):
    (x, y), _ = data(settings)
    return {"x": x, "y": y}


def not_a_model(settings):
    return "a model"


def data_binary(settings):
    """The same features with a binary target: is class 0 the largest score? (N,) float targets."""
    (x, y), (xv, yv) = data(settings)
    return (x, (y == 0).astype(np.float32)), (xv, (yv == 0).astype(np.float32))


def build_binary(settings):
    """Dense(16, relu) -> Dense(1, ``output``) under binary cross-entropy, with accuracy compiled."""
    model = keras.Sequential([keras.Input((FEATURES,), name="features"), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation=settings.get("output", "sigmoid"))])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    return model


# Made once, at import: Keras draws the same values at every call of a seeded initializer,
# whatever seed the run sets (and one made without a seed takes its seed when made).
_FIXED = keras.initializers.GlorotUniform(seed=7)


def build_fixed_init(settings):
    """``build``'s model, its hidden layer's kernel from an initializer made at import."""
    model = keras.Sequential([keras.Input((FEATURES,), name="features"),
                              keras.layers.Dense(16, activation="relu", kernel_initializer=_FIXED),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(settings.get("lr", 0.01)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data_regression(settings):
    """The same features with a real target: the first of the three scores plus noise."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=FEATURES) + 0.3 * rng.normal(size=len(x))).astype(np.float32)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def build_regression(settings):
    """Dense(16, relu) -> Dense(1) under mean squared error, Adam at ``lr``."""
    model = keras.Sequential([keras.Input((FEATURES,), name="features"), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(settings.get("lr", 0.01)), loss="mse")
    return model


TAGS = 4


def data_two_heads(settings):
    """``data``'s features and classes, and 4 yes/no tags (several may hold: multi-hot), as a dict of targets
    by output name."""
    (x, y), (xv, yv) = data(settings)
    rng = np.random.default_rng(3)
    w = rng.normal(size=(FEATURES, TAGS))

    def tags(features):
        return ((features @ w) > 0.3).astype(np.float32)

    return (x, {"kind": y, "tags": tags(x)}), (xv, {"kind": yv, "tags": tags(xv)})


def build_two_heads(settings):
    """A shared Dense(16, relu) trunk with two heads: ``kind`` (3 classes, softmax, sparse cross-entropy) and
    ``tags`` (4 units under ``tags_activation`` and ``tags_loss``), losses and metrics given by output name."""
    features = keras.Input((FEATURES,), name="features")
    trunk = keras.layers.Dense(16, activation="relu")(features)
    kind = keras.layers.Dense(CLASSES, activation="softmax", name="kind")(trunk)
    tags = keras.layers.Dense(TAGS, activation=settings.get("tags_activation", "sigmoid"), name="tags")(trunk)
    model = keras.Model(features, [kind, tags])
    model.compile(optimizer=keras.optimizers.Adam(settings.get("lr", 0.01)),
                  loss={"kind": "sparse_categorical_crossentropy",
                        "tags": settings.get("tags_loss", "binary_crossentropy")},
                  loss_weights={"kind": 1.0, "tags": 0.5}, metrics={"kind": ["accuracy"]})
    return model

"""Wide & deep models on mixed tabular data: numeric columns beside categorical ones, and their bugs.

Two tasks. The listings task: will a house listing sell within a month? Six numeric
columns (living area, lot size, year built, asking price, rooms, days on market)
and two categorical ones (district, 24 levels; property type, 5 levels); the label
is a noisy logistic function of the standardised numeric columns and of a random
effect per district and per type, so the categorical columns carry about half of
what can be learned (a good model reaches ~96%). The model is the wide & deep
pattern of the Keras guides: each categorical column through its Embedding, the
embeddings flattened and concatenated with the numeric columns into a deep ReLU
tower, the numeric columns also concatenated straight to the output (the wide
path). 3,000 listings to train on, 1,000 held out.

The housing task ports the two-input wide & deep regressor of "Hands-On Machine
Learning" (see its cases): eight block-level columns of the California housing kind
in their own units (median income in $10,000s, house age, average rooms and
bedrooms, population up to ~15,000, average occupancy, latitude, longitude), the
median house value in $100,000s (0.15 to 5) as the target; columns 0-4 feed the wide
path, columns 2-7 the deep one, each through its adapted Normalization layer.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID = 3000, 1000
DISTRICTS, TYPES = 24, 5
EPOCHS, BATCH = 6, 32  # 94 steps an epoch, 564 steps
# The raw units of the numeric columns: living area (sq ft), lot size (sq ft), year
# built, asking price ($), rooms, days on market; their means and spreads.
RAW_MEAN = np.array([1800.0, 9000.0, 1975.0, 450_000.0, 6.0, 40.0], np.float32)
RAW_STD = np.array([600.0, 4000.0, 25.0, 180_000.0, 1.5, 25.0], np.float32)

HOUSING_REPORT = "https://github.com/ageron/handson-ml3/pull/20"



@functools.cache
def _listings():
    """Standardised and raw numeric columns, category ids (district, type), sold labels."""
    rng = np.random.default_rng(2024)
    n = N_TRAIN + N_VALID
    z = rng.normal(size=(n, 6)).astype(np.float32)
    raw = (RAW_MEAN + RAW_STD * z).astype(np.float32)
    raw[:, 4] = np.round(raw[:, 4])  # whole rooms
    raw[:, 5] = np.abs(raw[:, 5])  # days on market are positive
    district = rng.integers(0, DISTRICTS, n)
    kind = rng.integers(0, TYPES, n)
    w = np.array([0.8, 0.3, 0.4, -1.2, 0.3, -0.6], np.float32)
    effect_d = 1.6 * rng.normal(size=DISTRICTS)
    effect_t = 1.0 * rng.normal(size=TYPES)
    logit = z @ w + effect_d[district] + effect_t[kind] + 0.3 * rng.normal(size=n)
    sold = (logit > 0).astype(np.float32)[:, None]
    mean, std = raw[:N_TRAIN].mean(axis=0), raw[:N_TRAIN].std(axis=0)
    scaled = ((raw - mean) / std).astype(np.float32)
    ids = np.stack([district, kind], axis=1).astype(np.int32)
    return scaled, raw, ids, sold


def _wide_deep(trainable_embeddings=True):
    """Numeric and categorical inputs, an Embedding per categorical column, a deep tower and a wide path."""
    numeric = keras.Input((6,), name="numeric")
    categorical = keras.Input((2,), dtype="int32", name="categorical")
    district = keras.layers.Embedding(DISTRICTS, 4, trainable=trainable_embeddings)(categorical[:, 0])
    kind = keras.layers.Embedding(TYPES, 2, trainable=trainable_embeddings)(categorical[:, 1])
    deep = keras.layers.Concatenate()([numeric, district, kind])
    deep = keras.layers.Dense(32, activation="relu")(deep)
    deep = keras.layers.Dense(16, activation="relu")(deep)
    wide_and_deep = keras.layers.Concatenate()([numeric, deep])
    output = keras.layers.Dense(1, activation="sigmoid")(wide_and_deep)
    return keras.Model([numeric, categorical], output)


def _listings_setup(optimizer, raw_numeric=False, trainable_embeddings=True, label_codes=(0.0, 1.0)):
    scaled, raw, ids, sold = _listings()
    numeric = raw if raw_numeric else scaled
    # label_codes: what "not sold" and "sold" are written as in the targets.
    y = np.where(sold > 0.5, label_codes[1], label_codes[0]).astype(np.float32)
    x = {"numeric": numeric[:N_TRAIN], "categorical": ids[:N_TRAIN]}
    valid = ({"numeric": numeric[N_TRAIN:], "categorical": ids[N_TRAIN:]}, y[N_TRAIN:])
    model = _wide_deep(trainable_embeddings)
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, x, y[:N_TRAIN], EPOCHS, BATCH, validation_data=valid)


@functools.cache
def _housing():
    """Eight block-level columns in their own units and the median house value in $100,000s."""
    rng = np.random.default_rng(8)
    n = N_TRAIN + N_VALID
    income = rng.lognormal(np.log(3.5), 0.45, n)
    age = rng.uniform(1, 52, n).round()
    rooms = rng.lognormal(np.log(5.2), 0.25, n)
    bedrooms = rooms * rng.uniform(0.17, 0.25, n)
    population = rng.lognormal(np.log(1200), 0.75, n)
    occupancy = rng.lognormal(np.log(2.9), 0.3, n)
    latitude = rng.uniform(32.5, 42, n)
    longitude = -124 + (42 - latitude) * 0.9 + rng.normal(0, 1.0, n)
    x = np.stack([income, age, rooms, bedrooms, population, occupancy, latitude, longitude], 1).astype(np.float32)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    value = (2.0 + 0.8 * z[:, 0] + 0.15 * z[:, 1] - 0.2 * z[:, 5] - 0.25 * z[:, 6]
             - 0.3 * np.tanh(z[:, 6] * z[:, 7]) + 0.3 * rng.normal(size=n))
    return x, np.clip(value, 0.15, 5.0).astype(np.float32)[:, None]


def _housing_setup(normalised_wide_path):
    x, value = _housing()
    wide, deep = x[:, :5], x[:, 2:]  # features 0 to 4, features 2 to 7
    input_wide, input_deep = keras.Input((5,), name="wide"), keras.Input((6,), name="deep")
    norm_layer_wide, norm_layer_deep = keras.layers.Normalization(), keras.layers.Normalization()
    norm_layer_wide.adapt(wide[:N_TRAIN])
    norm_layer_deep.adapt(deep[:N_TRAIN])
    norm_wide, norm_deep = norm_layer_wide(input_wide), norm_layer_deep(input_deep)
    hidden1 = keras.layers.Dense(30, activation="relu")(norm_deep)
    hidden2 = keras.layers.Dense(30, activation="relu")(hidden1)
    concat = keras.layers.Concatenate()([norm_wide if normalised_wide_path else input_wide, hidden2])
    model = keras.Model([input_wide, input_deep], keras.layers.Dense(1)(concat))
    model.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  metrics=["RootMeanSquaredError"])
    xt = {"wide": wide[:N_TRAIN], "deep": deep[:N_TRAIN]}
    valid = ({"wide": wide[N_TRAIN:], "deep": deep[N_TRAIN:]}, value[N_TRAIN:])
    return Setup(model, xt, value[:N_TRAIN], EPOCHS, BATCH, validation_data=valid)


# --- healthy controls -------------------------------------------------------------


@case(family="wide_deep", part="test", batch=2)
def wd_healthy():
    """Healthy: standardised numeric columns, an Embedding per categorical column, Adam.

    Source: the Keras "Structured data learning with Wide, Deep, and Cross networks"
    example (categorical features through embeddings beside numerical ones, a deep
    tower and a wide path, https://keras.io/examples/structured_data/wide_deep_cross_networks/).
    """
    return _listings_setup(keras.optimizers.Adam(1e-3))


@case(family="wide_deep", part="test", batch=2)
def wd_sgd_healthy():
    """Healthy: the same wide & deep model trained with SGD and momentum.

    Source: the wide & deep model of "Hands-On Machine Learning" chapter 10 (the
    functional API's Concatenate of the inputs with a deep tower,
    https://github.com/ageron/handson-ml2/blob/master/10_neural_nets_with_keras.ipynb),
    with embeddings for the categorical columns and SGD(0.01, momentum=0.9).
    """
    return _listings_setup(keras.optimizers.SGD(learning_rate=0.01, momentum=0.9))


@case(family="wide_deep", part="test", batch=2, report=HOUSING_REPORT)
def wd_housing_normalised_wide_path():
    """Fix: the two-input wide & deep regressor with the normalised wide inputs concatenated to the deep tower.

    Normalization layers adapted on each input, Dense(30, relu) x2 on the deep inputs,
    Concatenate([norm_wide, hidden2]) -> Dense(1), MSE, Adam(1e-3).

    Source: ageron/handson-ml3 pull request 20, "Fixing wide-and-deep to use normalized
    inputs" (merged; the author: "Oh great catch, thanks a lot!",
    https://github.com/ageron/handson-ml3/pull/20).
    """
    return _housing_setup(normalised_wide_path=True)


# --- faults ------------------------------------------------------------------------


@case(family="wide_deep", part="test", batch=2, twin="wd_sgd_healthy", expect=("unscaled-inputs", "diverged"))
def wd_raw_units_sgd():
    """The numeric columns fed in their raw units (square feet, years, dollars) to the SGD wide & deep model.

    The asking price is in the hundreds of thousands, the year built near 2,000, the
    rooms near 6: the first Dense layer's pre-activations are dominated by the price
    column and its gradients are ~1e5 times those of the standardised twin; SGD's
    first steps blow the weights up and the loss is NaN within the first epoch.

    Source: the Keras "Structured data classification from scratch" example, which
    normalises every numerical feature before the model
    (https://keras.io/examples/structured_data/structured_data_classification_from_scratch/),
    here with that step left out.
    """
    return _listings_setup(keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), raw_numeric=True)


@case(family="wide_deep", part="test", batch=2, twin="wd_healthy", expect=("frozen-layers",))
def wd_frozen_embeddings():
    """Both Embeddings built with trainable=False: the categorical columns keep their random initial vectors.

    The district and type embeddings stay at their initial values, uniform in
    +-0.05: the tower receives 24 nearly identical, tiny district vectors and cannot
    learn the district and type effects, which carry half of what can be learned; the
    model is left with the numeric columns and the accuracy they allow.

    Source: the Keras "Using pre-trained word embeddings" example, whose Embedding is
    built with trainable=False to keep pre-trained vectors
    (https://keras.io/examples/nlp/pretrained_word_embeddings/), copied onto embeddings
    that were never trained.
    """
    return _listings_setup(keras.optimizers.Adam(1e-3), trainable_embeddings=False)


@case(family="wide_deep", part="test", batch=2, twin="wd_healthy", expect=("labels-not-class-indices",))
def wd_labels_one_two():
    """The sold flag kept as exported, 1 = not sold and 2 = sold, under a sigmoid and binary cross-entropy.

    With a target of 2 the loss (computed from the sigmoid's logit z) is
    softplus(z) - 2z, which falls without bound as z grows, and a target of 1 also
    pulls z up: every listing is pushed to "sold", the loss goes negative and keeps
    falling, and the predictions carry nothing about which listings sell.

    Source: the Keras "Structured data classification from scratch" example's binary
    target ("target", 0 or 1) under a sigmoid and binary cross-entropy
    (https://keras.io/examples/structured_data/structured_data_classification_from_scratch/),
    here with the flag coded 1/2 as a survey export codes it.
    """
    return _listings_setup(keras.optimizers.Adam(1e-3), label_codes=(1.0, 2.0))


@case(family="wide_deep", part="test", batch=2, twin="wd_housing_normalised_wide_path",
      expect=("unscaled-inputs",), report=HOUSING_REPORT)
def wd_housing_raw_wide_path():
    """A port of handson-ml3 pull request 20: the wide path concatenates the raw inputs, not the normalised ones.

    The deep tower reads the Normalization layer's output, but Concatenate takes
    input_wide itself: population (~1,200, up to ~15,000), house age and rooms reach the
    output unit in their own units. The first predictions are off by hundreds, and
    Adam's steps of ~1e-3 per weight take the whole run to shrink the weights on those
    columns: the validation error stays hundreds of times the twin's.

    Source: ageron/handson-ml3 pull request 20, "Fixing wide-and-deep to use normalized
    inputs" ("the wide and deep example is using non-normalized inputs which leads to
    performance degradation", https://github.com/ageron/handson-ml3/pull/20).
    """
    return _housing_setup(normalised_wide_path=False)

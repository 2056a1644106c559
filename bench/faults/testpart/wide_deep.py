"""Wide & deep models on mixed tabular data: numeric columns beside categorical ones, and their bugs.

Two tasks. The listings task: will a house listing sell within a month? Six numeric
columns (living area, lot size, year built, asking price, rooms, days on market)
and two categorical ones (district, 24 levels; property type, 5 levels); the label
is a noisy logistic function of the standardised numeric columns and of a random
effect per district and per type, so the categorical columns carry about half of
what can be learned (the best accuracy is ~85%). The model is the wide & deep
pattern of the Keras guides: each categorical column through its Embedding, the
embeddings flattened and concatenated with the numeric columns into a deep ReLU
tower, the numeric columns also concatenated straight to the output (the wide
path). 3,000 listings to train on, 1,000 held out.

The Ames task ports a workshop's mini-project (see its cases): ~2,000 houses, 30
standardised numeric columns and 20 categorical ones one-hot encoded beside them
(150 columns in all), the sale price in dollars (log-normal around $180,000, up to
~$750,000) as the target.
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

AMES_REPORT = "https://github.com/rstudio-conf-2020/dl-keras-tf/issues/9"
AMES_TRAIN, AMES_VALID, AMES_NUMERIC, AMES_CATEGORICAL = 1640, 411, 30, 20


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


def _wide_deep():
    """Numeric and categorical inputs, an Embedding per categorical column, a deep tower and a wide path."""
    numeric = keras.Input((6,), name="numeric")
    categorical = keras.Input((2,), dtype="int32", name="categorical")
    district = keras.layers.Embedding(DISTRICTS, 4)(categorical[:, 0])
    kind = keras.layers.Embedding(TYPES, 2)(categorical[:, 1])
    deep = keras.layers.Concatenate()([numeric, district, kind])
    deep = keras.layers.Dense(32, activation="relu")(deep)
    deep = keras.layers.Dense(16, activation="relu")(deep)
    wide_and_deep = keras.layers.Concatenate()([numeric, deep])
    output = keras.layers.Dense(1, activation="sigmoid")(wide_and_deep)
    return keras.Model([numeric, categorical], output)


def _listings_setup(optimizer, raw_numeric=False):
    scaled, raw, ids, sold = _listings()
    numeric = raw if raw_numeric else scaled
    x = {"numeric": numeric[:N_TRAIN], "categorical": ids[:N_TRAIN]}
    valid = ({"numeric": numeric[N_TRAIN:], "categorical": ids[N_TRAIN:]}, sold[N_TRAIN:])
    model = _wide_deep()
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, x, sold[:N_TRAIN], EPOCHS, BATCH, validation_data=valid)


@functools.cache
def _ames():
    """Standardised numeric columns, one-hot categorical columns beside them, sale prices in dollars."""
    rng = np.random.default_rng(1030)
    n = AMES_TRAIN + AMES_VALID
    numeric = rng.normal(size=(n, AMES_NUMERIC)).astype(np.float32)
    levels = rng.integers(2, 9, AMES_CATEGORICAL)
    one_hot, effects = [], np.zeros(n)
    for k in levels:
        codes = rng.integers(0, k, n)
        one_hot.append(np.eye(k, dtype=np.float32)[codes])
        effects += 0.08 * rng.normal(size=k)[codes]
    x = np.concatenate([numeric] + one_hot, axis=1)
    w = rng.normal(size=AMES_NUMERIC) * 0.06
    log_price = 12.0 + numeric @ w + effects + 0.08 * rng.normal(size=n)
    price = np.exp(log_price).astype(np.float32)[:, None]
    return x, price


def _ames_setup(loss):
    x, price = _ames()
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=loss, metrics=["mae"])
    # The workshop fits batches of 16 with a 20% validation split; 103 steps an epoch, 6 epochs.
    return Setup(model, x[:AMES_TRAIN], price[:AMES_TRAIN], 6, 16,
                 validation_data=(x[AMES_TRAIN:], price[AMES_TRAIN:]))


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


@case(family="wide_deep", part="test", batch=2, report=AMES_REPORT)
def wd_ames_msle():
    """Fix: the Ames price model trained on mean squared logarithmic error, as the workshop recommends.

    Dense(128, relu) -> Dense(1) over standardised numeric and one-hot categorical
    columns, SGD(learning_rate=0.1), batches of 16: with the loss on log prices the
    dollar scale of the target no longer sets the size of the gradient.

    Source: rstudio-conf-2020/dl-keras-tf issue 9, "train/valid loss = NAN when loss =
    "mean_squared_error" due to exploding values" (the workshop team: msle is what the
    instructions recommend, https://github.com/rstudio-conf-2020/dl-keras-tf/issues/9).
    """
    return _ames_setup("msle")


# --- faults ------------------------------------------------------------------------


@case(family="wide_deep", part="test", batch=2, twin="wd_sgd_healthy", expect=("unscaled-inputs",))
def wd_raw_units_sgd():
    """The numeric columns fed in their raw units (square feet, years, dollars) to the SGD wide & deep model.

    The asking price is in the hundreds of thousands, the year built near 2,000, the
    rooms near 6: the first Dense layer's pre-activations are dominated by the price
    column, its gradients are ~1e5 times those of the standardised twin, and SGD's
    steps throw the sigmoid into saturation on one side or the other; the model never
    gets past the majority class.

    Source: the Keras "Structured data classification from scratch" example, which
    normalises every numerical feature before the model
    (https://keras.io/examples/structured_data/structured_data_classification_from_scratch/),
    here with that step left out.
    """
    return _listings_setup(keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), raw_numeric=True)


@case(family="wide_deep", part="test", batch=2, twin="wd_ames_msle", expect=("unscaled-targets", "diverged"),
      report=AMES_REPORT)
def wd_ames_mse_raw_price():
    """A port of dl-keras-tf issue 9: mean squared error on sale prices in dollars with SGD(0.1): NaN.

    The same Ames model compiled with loss="mean_squared_error": the first error is
    ~$180,000, its gradient on the output bias ~3.6e5, and at learning rate 0.1 each
    step overshoots by more than the last; the loss is inf and then NaN within the
    first epoch.

    Source: rstudio-conf-2020/dl-keras-tf issue 9, "train/valid loss = NAN when loss =
    "mean_squared_error" due to exploding values" (sale prices up to ~755,000,
    optimizer_sgd(lr = 0.1), batch_size = 16,
    https://github.com/rstudio-conf-2020/dl-keras-tf/issues/9).
    """
    return _ames_setup("mean_squared_error")

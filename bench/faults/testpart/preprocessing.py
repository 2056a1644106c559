"""Preprocessing layers inside the model: Normalization, Discretization and StringLookup on raw tabular data.

Two tasks. Applicants: five features in raw units (age in years, annual income and
debt in dollars, years employed, open credit lines) and two targets of three risk
tiers each. The band tier is set by which age band (<25, 25-35, 35-50, 50-65, 65+)
and which income band (<30k, 30-60k, 60-100k, 100-150k, 150k+) the applicant falls
in, 5% of it redrawn at random (the Discretization models read it); the smooth tier
is a tertile of a noisy linear score of age, log income and debt-to-income (the
Normalization models read it). 2048 applicants for training, 512 held out. Census:
an Adult-census-like table of seven string-valued categorical columns (workclass,
education, marital status, occupation, relationship, race, gender) and three numeric
ones (age, years of education, hours a week, given as z-scores), the target whether
income exceeds 50K, driven mostly by the categorical columns; 4096 rows for training,
1024 held out. Strings go to Keras as tf.string tensors (Keras 3 will not take numpy
string arrays).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from .. import Setup, case

# Why some cases run on Keras' TensorFlow backend only.
RAW_STRINGS = "raw strings into the model: Keras' StringLookup takes tf.string tensors, on TensorFlow only"

N_TRAIN, N_VALID, TIERS = 2048, 512, 3
EPOCHS, BATCH = 6, 32  # 384 steps
AGE_BANDS = (25.0, 35.0, 50.0, 65.0)
INCOME_BANDS = (30_000.0, 60_000.0, 100_000.0, 150_000.0)
N_CENSUS_TRAIN, N_CENSUS_VALID = 4096, 1024
CENSUS_EPOCHS, CENSUS_BATCH = 10, 128  # 320 steps

KERAS_IO_1946 = "https://github.com/keras-team/keras-io/issues/1946"

# The categorical columns of the census table and their values, written as the CSV
# file has them: a space after each comma, so pandas keeps a leading space.
CENSUS_VALUES = {
    "workclass": (" Private", " Self-emp-not-inc", " Self-emp-inc", " Federal-gov", " Local-gov", " State-gov"),
    "education": (" HS-grad", " Some-college", " Bachelors", " Masters", " Assoc-voc", " 11th", " Doctorate",
                  " Prof-school"),
    "marital_status": (" Married-civ-spouse", " Never-married", " Divorced", " Separated", " Widowed"),
    "occupation": (" Prof-specialty", " Craft-repair", " Exec-managerial", " Adm-clerical", " Sales",
                   " Other-service", " Machine-op-inspct", " Transport-moving", " Handlers-cleaners",
                   " Tech-support"),
    "relationship": (" Husband", " Not-in-family", " Own-child", " Unmarried", " Wife"),
    "race": (" White", " Black", " Asian-Pac-Islander", " Other"),
    "gender": (" Male", " Female"),
}
CENSUS_NUMERIC = ("age", "education_num", "hours_per_week")


@functools.cache
def _applicants():
    """Raw-unit features (N, 5) float32, the band tiers and the smooth tiers (N,) int32."""
    rng = np.random.default_rng(53)
    n = N_TRAIN + N_VALID
    age = rng.uniform(18, 80, n)
    income = np.exp(rng.normal(np.log(65_000), 0.6, n)).clip(12_000, 400_000)
    debt = rng.uniform(0, 0.8, n) * income
    employed = np.minimum(rng.uniform(0, 40, n), age - 18)
    lines = rng.integers(0, 15, n).astype(float)
    x = np.stack([age, income, debt, employed, lines], axis=1).astype(np.float32)
    age_band = np.digitize(age, AGE_BANDS)
    income_band = np.digitize(income, INCOME_BANDS)
    score = np.array([1, 0, 0, 1, 2])[age_band] + np.array([2, 1, 1, 0, 0])[income_band]
    band_tier = np.digitize(score, (1.5, 2.5)).astype(np.int32)
    redraw = rng.random(n) < 0.05
    band_tier[redraw] = rng.integers(TIERS, size=redraw.sum())

    def z(v):
        return (v - v.mean()) / v.std()

    smooth = z(age) - 1.2 * z(np.log(income)) + 1.0 * z(debt / income) + 0.4 * rng.normal(size=n)
    smooth_tier = np.digitize(smooth, np.quantile(smooth, (1 / 3, 2 / 3))).astype(np.int32)
    return x, band_tier, smooth_tier


@functools.cache
def _census():
    """Categorical columns as stripped str arrays, numeric columns float32, the >50K target (N,) float32."""
    rng = np.random.default_rng(59)
    n = N_CENSUS_TRAIN + N_CENSUS_VALID
    columns, logit = {}, np.full(n, -1.2)
    for name, values in CENSUS_VALUES.items():
        codes = rng.integers(len(values), size=n)
        # The values as tf.data's CSV reader returns them: surrounding whitespace stripped.
        columns[name] = np.array([v.strip() for v in values])[codes]
        logit += rng.normal(0.0, 1.3, len(values))[codes]
    # The numeric columns arrive standardized (z-scores), so that the example's
    # LayerNormalization over the concatenated features does not drown the embeddings.
    numeric = rng.normal(size=(n, len(CENSUS_NUMERIC)))
    for i, name in enumerate(CENSUS_NUMERIC):
        columns[name] = numeric[:, i].astype(np.float32)
    logit += 0.3 * numeric[:, 0]
    target = (logit + rng.logistic(size=n) * 0.5 > 0).astype(np.float32)
    return columns, target


def _applicant_split(target="bands"):
    x, band_tier, smooth_tier = _applicants()
    y = band_tier if target == "bands" else smooth_tier
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _mlp_setup(normalizer):
    """The TensorFlow regression tutorial's DNN (a Normalization layer, two Dense(64, relu)), with a tier softmax."""
    (xt, yt), valid = _applicant_split("smooth")
    model = keras.Sequential([
        keras.Input((5,)),
        normalizer,
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(TIERS, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid)


def _bands_setup(age_bins, income_bins):
    """Age and income in raw units (two inputs), each cut into bands by a Discretization layer and one-hot encoded."""
    (xt, yt), (xv, yv) = _applicant_split()
    inputs, encoded = {}, []
    for name, bins in (("age", age_bins), ("income", income_bins)):
        inputs[name] = keras.Input((1,), name=name)
        band = keras.layers.Discretization(bin_boundaries=list(bins))(inputs[name])
        encoded.append(keras.layers.CategoryEncoding(num_tokens=len(bins) + 1, output_mode="one_hot")(band))
    hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Concatenate()(encoded))
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    outputs = keras.layers.Dense(TIERS, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def columns(x):
        return {"age": x[:, 0:1], "income": x[:, 1:2]}

    return Setup(model, columns(xt), yt, EPOCHS, BATCH, validation_data=(columns(xv), yv))


def _census_setup(strip_vocabulary: bool):
    """keras-io's TabTransformer example's baseline MLP, with its StringLookups inside the model."""
    columns, target = _census()
    inputs, encoded, numeric = {}, [], []
    for name, values in CENSUS_VALUES.items():
        inputs[name] = keras.Input((), dtype="string", name=name)
        vocabulary = sorted(v.strip() if strip_vocabulary else v for v in values)
        lookup = keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None, num_oov_indices=1)
        embedding = keras.layers.Embedding(len(vocabulary) + 1, 8)
        encoded.append(embedding(lookup(inputs[name])))
    for name in CENSUS_NUMERIC:
        inputs[name] = keras.Input((), dtype="float32", name=name)
        numeric.append(keras.layers.Reshape((1,))(inputs[name]))
    features = keras.layers.Concatenate()(encoded + numeric)
    width = features.shape[-1]
    for _ in range(2):  # the example's feed-forward blocks: LayerNormalization, Dense(gelu), Dropout
        features = keras.layers.LayerNormalization()(features)
        features = keras.layers.Dense(width, activation="gelu")(features)
        features = keras.layers.Dropout(0.2)(features)
    for units in (2 * width, width):  # its final MLP: BatchNormalization, Dense(selu), Dropout
        features = keras.layers.BatchNormalization()(features)
        features = keras.layers.Dense(units, activation="selu")(features)
        features = keras.layers.Dropout(0.2)(features)
    outputs = keras.layers.Dense(1, activation="sigmoid")(features)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4),
                  loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])

    def part(lo, hi):
        return {name: tf.constant(col[lo:hi]) if col.dtype.kind == "U" else col[lo:hi]
                for name, col in columns.items()}

    n = N_CENSUS_TRAIN
    return Setup(model, part(0, n), target[:n], CENSUS_EPOCHS, CENSUS_BATCH,
                 validation_data=(part(n, n + N_CENSUS_VALID), target[n:]))


# --- healthy controls -------------------------------------------------------------


@case(family="preprocessing", part="test")
def pp_normalized_healthy():
    """Healthy: a Normalization layer adapted on the training features ahead of the Dense layers.

    Source: the TensorFlow "Basic regression: Predict fuel efficiency" tutorial
    (tf.keras.layers.Normalization, normalizer.adapt(train_features), then
    Dense(64, relu) x2, https://www.tensorflow.org/tutorials/keras/regression), with a tier softmax.
    """
    normalizer = keras.layers.Normalization()
    normalizer.adapt(_applicant_split()[0][0])
    return _mlp_setup(normalizer)


@case(family="preprocessing", part="test")
def pp_bands_healthy():
    """Healthy: raw age and income read through Discretization layers whose bin boundaries are in years and dollars.

    The inputs are in the tens and the hundred thousands, and nothing normalizes them,
    but the first weights only ever see one-hot bands: the boundaries are in the very
    units of the features.

    Source: the Keras preprocessing layers guide's Discretization layer
    (bin_boundaries in the feature's own units,
    https://keras.io/api/layers/preprocessing_layers/numerical/discretization/).
    """
    return _bands_setup(AGE_BANDS, INCOME_BANDS)


@case(family="preprocessing", part="test", report=KERAS_IO_1946, tensorflow_only=RAW_STRINGS)
def pp_census_lookup_healthy():
    """Healthy: StringLookup vocabularies stripped of the CSV's leading spaces, matching the values fed.

    Source: keras-team/keras-io issue 1946 "Structured data learning with TabTransformer
    Tutorial Working on Colab, broken on Local" (the fix: build each vocabulary with
    ``.str.strip()``, and one OOV index, https://github.com/keras-team/keras-io/issues/1946).
    """
    return _census_setup(strip_vocabulary=True)


# --- faults ------------------------------------------------------------------------


@case(family="preprocessing", part="test", twin="pp_normalized_healthy", expect=("unadapted-preprocessing",))
def pp_normalization_unadapted():
    """The Normalization layer never adapted: it keeps mean 0 and variance 1 and passes dollars through as they are.

    Source: ageron/handson-ml3 issue 128 "Use of Normalization layer with keras_tuner"
    (a Normalization layer applied without calling adapt(), so it normalizes nothing,
    https://github.com/ageron/handson-ml3/issues/128), on the regression tutorial's DNN.
    """
    return _mlp_setup(keras.layers.Normalization())


@case(family="preprocessing", part="test", twin="pp_census_lookup_healthy", expect=("unadapted-preprocessing",),
      report=KERAS_IO_1946, tensorflow_only=RAW_STRINGS)
def pp_census_lookup_unstripped():
    """StringLookup vocabularies keep the CSV's leading spaces (" Male") but the values fed are stripped ("Male").

    No value is in any vocabulary: every categorical column maps to the OOV index, so
    the seven embeddings carry nothing and the model predicts from age, schooling and
    hours alone. (In Keras 3 a StringLookup that was never adapted raises "Table not
    initialized"; a vocabulary none of the inputs match is the form that trains.)

    Source: keras-team/keras-io issue 1946 "Structured data learning with TabTransformer
    Tutorial Working on Colab, broken on Local" (vocabularies from pandas keep leading
    whitespace that tf.data's CSV reader strips, "Every value becomes OOV"; with the
    issue's other fix, one OOV index, it trains instead of crashing,
    https://github.com/keras-team/keras-io/issues/1946).
    """
    return _census_setup(strip_vocabulary=False)


@case(family="preprocessing", part="test", twin="pp_bands_healthy", expect=("unexplained", "ignores-input"))
def pp_bands_in_wrong_units():
    """Discretization boundaries written in standardized units (z-scores) while the features arrive in raw units.

    Every age (18-80) and every income (dollars) is above the last boundary (1.0), so
    each feature lands in its top band for every applicant and the model sees one
    constant input: it can only learn the tier frequencies.

    Source: the Keras Discretization layer documentation (bin_boundaries are compared
    with the raw input values, https://keras.io/api/layers/preprocessing_layers/numerical/discretization/),
    with boundaries computed on standardized data in a notebook and reused on raw features.
    """
    return _bands_setup((-1.0, -0.3, 0.3, 1.0), (-1.0, -0.3, 0.3, 1.0))

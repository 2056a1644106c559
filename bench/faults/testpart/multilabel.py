"""Multi-label tagging: each example carries any number of tags at once (multi-hot targets).

Three tasks. Tags: 24 standard-normal features and 8 tags, tag k present when a fixed
random linear score of the features (plus noise) passes a threshold; about 2.2 tags an
example, one example in ten has none. Flags: 31 features and two independent yes/no
flags, most rows [0, 0] (the two-column targets of keras-team/keras issue 6421). Glyphs:
16x16 grey images tiled 2x2 with 8x8 glyphs of 6 kinds (a cell left empty 40% of the
time), the targets saying which kinds appear. The right head for all three is one
sigmoid per tag under binary cross-entropy; a softmax, or a categorical cross-entropy,
treats the tags as if exactly one were true.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, FEATURES, TAGS = 2048, 512, 24, 8
EPOCHS, BATCH = 6, 32  # 384 steps
N_FLAGS_TRAIN, N_FLAGS_VALID, FLAG_FEATURES = 2000, 500, 31  # batch 10, 1 epoch: 200 steps
N_GLYPH_TRAIN, N_GLYPH_VALID, GLYPHS, SIDE = 1536, 512, 6, 16  # 6 epochs of 32: 288 steps

KERAS_6421 = "https://github.com/keras-team/keras/issues/6421"
SO_SIGMOID = ("https://stackoverflow.com/questions/41589126/"
              "what-is-the-replace-for-softmax-layer-in-case-more-than-one-output-can-be-activated")


@functools.cache
def _tags():
    """Features (N, 24) and multi-hot tags (N, 8)."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(FEATURES, TAGS)) / np.sqrt(FEATURES)
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    scores = 3.0 * (x @ w) + 0.3 * rng.normal(size=(len(x), TAGS))
    return x, (scores > 1.5).astype(np.float32)


@functools.cache
def _flags():
    """Features (N, 31) and two independent binary flags (N, 2), about 30% set each."""
    rng = np.random.default_rng(17)
    w = rng.normal(size=(FLAG_FEATURES, 2)) / np.sqrt(FLAG_FEATURES)
    x = rng.normal(size=(N_FLAGS_TRAIN + N_FLAGS_VALID, FLAG_FEATURES)).astype(np.float32)
    scores = 2.0 * (x @ w) + 0.3 * rng.normal(size=(len(x), 2))
    return x, (scores > 1.0).astype(np.float32)


@functools.cache
def _glyphs():
    """Images (N, 16, 16, 1) in [0, 1] and multi-hot glyph kinds (N, 6)."""
    rng = np.random.default_rng(23)
    kinds = (rng.random((GLYPHS, 8, 8)) < 0.35).astype(np.float32)
    n = N_GLYPH_TRAIN + N_GLYPH_VALID
    x = 0.15 * rng.random((n, SIDE, SIDE, 1)).astype(np.float32)
    y = np.zeros((n, GLYPHS), np.float32)
    for i in range(n):
        for row in (0, 8):
            for col in (0, 8):
                if rng.random() < 0.4:
                    continue
                k = rng.integers(GLYPHS)
                x[i, row:row + 8, col:col + 8, 0] += 0.8 * kinds[k]
                y[i, k] = 1.0
    return np.clip(x, 0.0, 1.0), y


def _split(x, y, n_train):
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def _tagger(out_activation):
    """A Dense-ReLU-Dropout tagger: 256 and 64 hidden units, one output unit per tag."""
    return keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(TAGS, activation=out_activation),
    ])


def _tag_setup(out_activation, loss):
    x, y = _tags()
    (xt, yt), valid = _split(x, y, N_TRAIN)
    model = _tagger(out_activation)
    model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True), loss=loss, metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid)


def _flag_setup(loss):
    """keras-team/keras issue 6421's model: 31 -> 40 -> 31 -> 2 sigmoids, 'uniform' kernels, Adam, batch 10."""
    x, y = _flags()
    (xt, yt), valid = _split(x, y, N_FLAGS_TRAIN)
    model = keras.Sequential([
        keras.Input((FLAG_FEATURES,)),
        keras.layers.Dense(40, activation="relu", kernel_initializer="uniform"),
        keras.layers.Dense(31, activation="relu", kernel_initializer="uniform"),
        keras.layers.Dense(2, activation="sigmoid", kernel_initializer="uniform"),
    ])
    model.compile(optimizer="adam", loss=loss, metrics=["binary_accuracy"])
    return Setup(model, xt, yt, 1, 10, validation_data=valid)


def _glyph_setup(out_activation, loss):
    """The Keras mnist_cnn.py network (two convolutions, pooling, dropout, Adadelta at 1.0), scaled to 16x16."""
    x, y = _glyphs()
    (xt, yt), valid = _split(x, y, N_GLYPH_TRAIN)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(GLYPHS, activation=out_activation),
    ])
    model.compile(optimizer=keras.optimizers.Adadelta(1.0), loss=loss, metrics=["accuracy"])
    return Setup(model, xt, yt, 6, 32, validation_data=valid)


# --- healthy controls -------------------------------------------------------------


@case(family="multilabel", part="test")
def ml_tagger_healthy():
    """Healthy: one sigmoid per tag under binary cross-entropy, SGD with Nesterov momentum.

    Source: keras-team/keras issue 741 "How to train a multi-label Classifier" (the
    answer: no softmax, sigmoid output units and binary_crossentropy,
    https://github.com/keras-team/keras/issues/741).
    """
    return _tag_setup("sigmoid", "binary_crossentropy")


@case(family="multilabel", part="test", report=KERAS_6421)
def ml_flags_healthy():
    """Healthy: two independent yes/no flags, two sigmoids under binary cross-entropy.

    Both flag cases report binary accuracy (the issue's model reported categorical
    accuracy, which means nothing for two independent flags).

    Source: keras-team/keras issue 6421 "Discrepancies between 'evaluate' accuracy and
    'predict' result", with the loss the reply points at changed to binary cross-entropy
    (https://github.com/keras-team/keras/issues/6421).
    """
    return _flag_setup("binary_crossentropy")


@case(family="multilabel", part="test", report=SO_SIGMOID)
def ml_glyphs_cnn_healthy():
    """Healthy: a small CNN tagging which glyph kinds appear, sigmoid outputs under binary cross-entropy.

    Source: "What is the replace for softmax layer in case more than one output can be
    activated?" (Stack Overflow 41589126; the answer: sigmoid outputs and
    binary_crossentropy, https://stackoverflow.com/questions/41589126/what-is-the-replace-for-softmax-layer-in-case-more-than-one-output-can-be-activated).
    """
    return _glyph_setup("sigmoid", "binary_crossentropy")


# --- faults ------------------------------------------------------------------------


@case(family="multilabel", part="test", twin="ml_tagger_healthy", expect=("loss-target-mismatch", "diverged"))
def ml_tagger_softmax_cce():
    """A softmax head under categorical cross-entropy on multi-hot tags: the tags compete for one unit of mass.

    A row with three tags asks for a third on each, so no tag of such a row can pass
    0.5; with several tags a row the loss (Keras 3 computes it from the softmax's
    logits) has no finite minimum the logits can settle at and, under SGD with
    momentum, runs off to non-finite values in the first epoch.

    Source: keras-team/keras issue 741 "How to train a multi-label Classifier" (a
    multi-label "softmax classifier" trained like a one-hot one; the answer: don't use
    softmax, https://github.com/keras-team/keras/issues/741).
    """
    return _tag_setup("softmax", "categorical_crossentropy")


@case(family="multilabel", part="test", twin="ml_tagger_healthy", expect=("loss-target-mismatch", "diverged"))
def ml_tagger_sigmoid_cce():
    """Sigmoid outputs under categorical cross-entropy on multi-hot tags.

    Keras 3 hands the sigmoid's logits to a softmax cross-entropy, which only ranks the
    tags against each other and, with several tags a row, has no finite minimum:
    nothing pins the logits' level, they grow without bound and, under SGD with
    momentum, reach non-finite values in the first epoch.

    Source: keras-team/keras issue 2166 "loss function for multi-label problem" (answer:
    categorical_crossentropy is for one-of-N targets, binary_crossentropy for one-or-more,
    https://github.com/keras-team/keras/issues/2166).
    """
    return _tag_setup("sigmoid", "categorical_crossentropy")


@case(family="multilabel", part="test", twin="ml_tagger_healthy", expect=("loss-target-mismatch",))
def ml_tagger_softmax_mse():
    """A softmax head under mean squared error on multi-hot tags: the outputs sum to 1, the targets to ~2.2.

    A tag can pass 0.5 only when it is the row's one tag; rows with several tags are
    always under-called and the loss settles far above the sigmoid twin's.

    Source: keras-team/keras issue 2166 "loss function for multi-label problem" (MSE is
    suggested there; with a softmax output it cannot reach multi-hot targets,
    https://github.com/keras-team/keras/issues/2166).
    """
    return _tag_setup("softmax", "mean_squared_error")


@case(family="multilabel", part="test", twin="ml_flags_healthy", expect=("loss-target-mismatch",), report=KERAS_6421)
def ml_flags_sigmoid_cce():
    """Two independent flags, two sigmoids, categorical cross-entropy: rows with no flag set give no loss.

    Most rows are [0, 0]: their categorical cross-entropy is 0 whatever the model says.
    The other rows only teach which of the two flags is likelier (Keras 3 takes the
    sigmoids' logits into a softmax), so nothing sets the level at which a sigmoid
    passes 0.5 and the thresholded predictions are unrelated to the flags (here: no
    flag on any row), while the loss looks small.

    Source: keras-team/keras issue 6421 "Discrepancies between 'evaluate' accuracy and
    'predict' result" (Dense 40-31-2 with sigmoid outputs, categorical_crossentropy,
    Adam, batch 10, one epoch; the reply: "You're using categorical crossentropy",
    https://github.com/keras-team/keras/issues/6421).
    """
    return _flag_setup("categorical_crossentropy")


@case(family="multilabel", part="test", twin="ml_glyphs_cnn_healthy", expect=("loss-target-mismatch",),
      report=SO_SIGMOID)
def ml_glyphs_cnn_softmax_cce():
    """The MNIST CNN recipe kept for multi-label images: a softmax over glyph kinds, categorical cross-entropy.

    An image shows up to four glyphs; Keras 3 computes the loss from the softmax's
    logits, which with several targets a row has no finite minimum, and under
    Adadelta at 1.0 the loss climbs from ~1e14 to ~1e30 within six epochs.

    Source: "What is the replace for softmax layer in case more than one output can be
    activated?" (Stack Overflow 41589126: an MNIST CNN with a softmax of 10 outputs,
    applied to objects that fall in several categories, asking whether
    categorical_crossentropy still fits; https://stackoverflow.com/questions/41589126/what-is-the-replace-for-softmax-layer-in-case-more-than-one-output-can-be-activated).
    """
    return _glyph_setup("softmax", "categorical_crossentropy")

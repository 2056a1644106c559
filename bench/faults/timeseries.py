"""A time-series classifier written as the keras-io example writes it: Conv1D + BatchNormalization + ReLU.

The model follows "Timeseries classification from scratch"
(https://keras.io/examples/timeseries/timeseries_classification_from_scratch/), at a
quarter of its width. The task replaces FordA: noisy sine waves of random amplitude
and phase over 64 steps, class 0 at 2-3 cycles per window, class 1 at 5-6. 1280
training series, 320 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

LENGTH, N_TRAIN, N_VALID, CLASSES, FILTERS = 64, 1280, 320, 2, 16
EPOCHS, BATCH = 5, 32  # 200 steps


@functools.cache
def _data():
    rng = np.random.default_rng(61)
    n = N_TRAIN + N_VALID
    y = rng.integers(0, CLASSES, size=n).astype(np.int32)
    cycles = np.where(y == 0, rng.uniform(2, 3, size=n), rng.uniform(5, 6, size=n))
    t = np.linspace(0, 1, LENGTH, endpoint=False)
    amplitude = rng.uniform(0.5, 2.0, size=n)
    x = amplitude[:, None] * np.sin(2 * np.pi * (cycles[:, None] * t + rng.uniform(0, 1, size=(n, 1))))
    x = x + 0.5 * rng.normal(size=x.shape)
    return x[..., None].astype(np.float32), y, amplitude.astype(np.float32)[:, None]


def _blocks(h, kernel_initializer="glorot_uniform"):
    for _ in range(3):
        h = keras.layers.Conv1D(FILTERS, 3, padding="same", kernel_initializer=kernel_initializer)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    return keras.layers.GlobalAveragePooling1D()(h)


def _model(kernel_initializer="glorot_uniform"):
    """keras-io's make_model: three Conv1D-BN-ReLU blocks, global average pooling, softmax."""
    inputs = keras.layers.Input((LENGTH, 1))
    h = _blocks(inputs, kernel_initializer)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(h))


def _setup(model, optimizer, shuffle_labels=False, x=None):
    series, y, _ = _data()
    x = series if x is None else x
    if shuffle_labels:
        y = np.random.default_rng(5).permutation(y)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    train, valid = slice(0, N_TRAIN), slice(N_TRAIN, None)
    return Setup(model, _rows(x, train), y[train], EPOCHS, BATCH, validation_data=(_rows(x, valid), y[valid]))


def _rows(x, rows: slice):
    """Examples ``rows`` of one array or of each array in a dict of inputs."""
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


# --- healthy controls -------------------------------------------------------------


@case(family="timeseries")
def ts_healthy():
    """Healthy: the keras-io FCN (Conv1D-BN-ReLU x3, GAP, softmax), Adam, sparse categorical cross-entropy.

    Source: "Timeseries classification from scratch"
    (https://keras.io/examples/timeseries/timeseries_classification_from_scratch/), on
    synthetic sine waves instead of FordA.
    """
    return _setup(_model(), keras.optimizers.Adam(1e-3))


@case(family="timeseries")
def ts_two_inputs_healthy():
    """Healthy: the same network with a second input (each series' amplitude), inputs passed by name.

    Source: the Keras functional API guide's "Models with multiple inputs and outputs"
    (https://keras.io/guides/functional_api/), on the keras-io time-series FCN.
    """
    series, _, amplitude = _data()
    signal = keras.layers.Input((LENGTH, 1), name="series")
    scale = keras.layers.Input((1,), name="amplitude")
    h = keras.layers.Concatenate()([_blocks(signal), scale])
    model = keras.Model({"series": signal, "amplitude": scale}, keras.layers.Dense(CLASSES, activation="softmax")(h))
    return _setup(model, keras.optimizers.Adam(1e-3), x={"series": series, "amplitude": amplitude})


# --- faults ------------------------------------------------------------------------


@case(family="timeseries", twin="ts_healthy", expect=("unexplained", "ignores-input"))
def ts_shuffled_labels():
    """Labels permuted apart from their series: nothing to learn, held-out loss at ln 2.

    BatchNormalization makes this the case where a blanked (all-zero) input is far from
    anything the model saw in training, unlike a shuffled one.

    Source: "Why is my Keras model's training accuracy always 0?" ("silent data loading
    errors": features and labels misaligned,
    https://www.codegenes.net/blog/why-is-the-accuracy-for-my-keras-model-always-0-when-training).
    """
    return _setup(_model(), keras.optimizers.Adam(1e-3), shuffle_labels=True)


@case(family="timeseries", twin="ts_healthy", expect=("constant-init",))
def ts_constant_init():
    """Conv1D kernels initialised to ones: the 16 filters of each block stay identical copies.

    Source: "Why Does Zero Weight Initialization Cause Symmetry Problems in Neural
    Networks?" (identical units receive identical gradients and never differentiate,
    https://pupuweb.com/deep-learning-with-tensorflow-how-does-initializing-all-weights-to-zero-prevent-neural-network-from-learning).
    """
    return _setup(_model(kernel_initializer="ones"), keras.optimizers.Adam(1e-3))


@case(family="timeseries", twin="ts_healthy", expect=("tiny-steps", "plateau"))
def ts_adam_lr_tiny():
    """Adam at learning rate 1e-6, a thousandth of its default: every weight moves ~1e-6 per step.

    Source: "Why is my neural network training slow when using a lower learning rate on
    tensorflow?" ("setting an excessively low learning rate can lead to minimal weight
    updates", https://www.explaintopic.com/networking/why-is-my-neural-network-training-slow-when-using-a-lower-le-1765893597.html).
    """
    return _setup(_model(), keras.optimizers.Adam(1e-6))

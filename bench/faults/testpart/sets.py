"""DeepSets: one encoder applied to every element of a set, a pooling over the set, and a decoder.

The task: sets of 8 numbers drawn uniformly from [-2, 2]; the target is the set's
mean of cos(3x), standardised to unit variance, so a model that ignores its inputs
scores an MSE of ~1.0. The target is invariant to the order of the elements and
even in each of them: it has no linear part, and sum pooling of a linear encoder
(or of the ReLU features a frozen random encoder gives, which see only |x| and x)
cannot express it. 2048 training sets, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, SET_SIZE = 2048, 512, 8
EPOCHS, BATCH = 10, 32  # 640 steps


@functools.cache
def _data():
    rng = np.random.default_rng(61)
    x = rng.uniform(-2.0, 2.0, size=(N_TRAIN + N_VALID, SET_SIZE, 1)).astype(np.float32)
    y = np.cos(3.0 * x[:, :, 0]).mean(axis=1)
    y = ((y - y.mean()) / y.std()).astype(np.float32)[:, None]
    return x, y


class SumPooling(keras.layers.Layer):
    """Sums the element encodings over the set axis (Zaheer et al.'s invariant pooling)."""

    def call(self, inputs):
        return keras.ops.sum(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def _deep_sets(activation="relu", trainable_phi=True, pooling="sum"):
    """phi: Dense 64-64-16 on each element; sum (or mean) pooling; rho: Dense 64 then one linear unit."""
    inputs = keras.Input((SET_SIZE, 1), name="elements")
    h = inputs
    for units in (64, 64):
        h = keras.layers.Dense(units, activation=activation, trainable=trainable_phi)(h)
    h = keras.layers.Dense(16, activation=activation, trainable=trainable_phi)(h)
    h = SumPooling()(h) if pooling == "sum" else keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(64, activation=activation)(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def _setup(model, optimizer=None):
    x, y = _data()
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


# --- healthy controls -------------------------------------------------------------


@case(family="sets", part="test")
def sets_sum_healthy():
    """Healthy: a ReLU element encoder, sum pooling, a ReLU decoder, MSE, Adam.

    Source: Zaheer et al., "Deep Sets" (rho(sum phi(x)), arXiv 1703.06114,
    https://arxiv.org/abs/1703.06114), as in the Keras example "Point cloud
    classification with PointNet"'s shared per-point Dense layers and global pooling
    (https://keras.io/examples/vision/pointnet/).
    """
    return _setup(_deep_sets())


@case(family="sets", part="test")
def sets_mean_healthy():
    """Healthy: the same DeepSets model with mean pooling (GlobalAveragePooling1D).

    Source: Zaheer et al., "Deep Sets" (mean as the permutation-invariant pooling,
    arXiv 1703.06114, https://arxiv.org/abs/1703.06114); the pooling options of
    deepsets-pytorch (https://chris-santiago.github.io/deepsets-pytorch/how-to/pooling-strategies/).
    """
    return _setup(_deep_sets(pooling="mean"))


# --- faults ------------------------------------------------------------------------


@case(family="sets", part="test", twin="sets_sum_healthy", expect=("frozen-layers",))
def sets_frozen_encoder():
    """The element encoder's three Dense layers built with trainable=False, though nothing ever trained them.

    A "freeze the per-element backbone" line copied from a transfer-learning recipe;
    the encoder stays at its random start. With zero biases its ReLU features of a
    number are combinations of relu(x) and relu(-x), so the pooled code carries only
    the sums of x and of |x|, and the trainable decoder cannot recover the mean of
    cos(3x) from them.

    Source: the Keras guide "Transfer learning & fine-tuning" (layer.trainable = False
    freezes a layer's weights, https://keras.io/guides/transfer_learning/), applied to
    an encoder with no pretrained weights.
    """
    return _setup(_deep_sets(trainable_phi=False))


@case(family="sets", part="test", twin="sets_sum_healthy", expect=("missing-activation",))
def sets_no_activation():
    """Every Dense layer of encoder and decoder left without an activation: the whole model is linear.

    A linear encoder summed over the set and a linear decoder make one linear function
    of the sum of the elements; the target is even in each element, so that function
    explains none of it and the MSE stays at the targets' variance.

    Source: "In what cases does the addition of a nonlinearity decrease neural network
    performance?" (a stack of Dense layers without activations is one linear map,
    https://datascience.stackexchange.com/questions/116421); Zaheer et al., "Deep Sets"
    (phi and rho must be nonlinear to be universal, https://arxiv.org/abs/1703.06114).
    """
    return _setup(_deep_sets(activation=None))

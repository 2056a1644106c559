"""MLP regression on tabular features: mean squared error and its relatives.

The task: 8 standard-normal features, a smooth nonlinear target (a sine, a product
and a linear term, plus noise) standardised to unit variance, so that a model that
ignores its inputs scores an MSE of ~1.0 and a good one ~0.1. 2048 training
examples, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

N_TRAIN, N_VALID, FEATURES = 2048, 512, 8
EPOCHS, BATCH = 8, 32  # 512 steps


@functools.cache
def _data():
    rng = np.random.default_rng(21)
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + 0.1 * rng.normal(size=len(x))
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, size=len(x)).astype(np.float32)
    return x, y, weights


def _regressor(kernel_initializer="glorot_uniform"):
    """The functional Dense-ReLU regressor of the TensorFlow "Basic regression" tutorial."""
    inputs = keras.Input((FEATURES,), name="features")
    h = keras.layers.Dense(64, activation="relu", kernel_initializer=kernel_initializer)(inputs)
    h = keras.layers.Dense(64, activation="relu", kernel_initializer=kernel_initializer)(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def _setup(model, loss, optimizer, column=True, x_scale=1.0, weighted=False):
    x, y, w = _data()
    x = x * np.float32(x_scale)
    y = y[:, None] if column else y  # (N, 1) or (N,): Keras takes both for a one-unit output
    model.compile(optimizer=optimizer, loss=loss)
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]),
                 sample_weight=w[:N_TRAIN] if weighted else None)


def huber_mean(y_true, y_pred):
    """A custom loss written as users write them: one scalar for the whole batch."""
    error = keras.ops.abs(keras.ops.reshape(y_true, (-1,)) - keras.ops.reshape(y_pred, (-1,)))
    return keras.ops.mean(keras.ops.where(error < 1.0, 0.5 * error ** 2, error - 0.5))


# --- healthy controls -------------------------------------------------------------


@case(family="regression")
def reg_healthy():
    """Healthy: Adam on mean squared error given by name, targets shaped (N, 1).

    Source: the TensorFlow "Basic regression: Predict fuel efficiency" tutorial's DNN
    (Dense 64-64 ReLU, Adam, loss "mean_absolute_error"/"mse",
    https://www.tensorflow.org/tutorials/keras/regression), on synthetic features.
    """
    return _setup(_regressor(), "mse", keras.optimizers.Adam(1e-3))


@case(family="regression")
def reg_sgd_healthy():
    """Healthy: SGD with momentum, MeanSquaredError as an object, targets shaped (N,), sample weights.

    Source: Jason Brownlee, "How to Avoid Exploding Gradients With Gradient Clipping"
    (an MLP regressor trained with SGD(0.01, momentum=0.9) on standardised targets,
    https://machinelearningmastery.com/how-to-avoid-exploding-gradients-in-neural-networks-with-gradient-clipping/).
    """
    return _setup(_regressor(), keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.01, momentum=0.9),
                  column=False, weighted=True)


@case(family="regression")
def reg_sum_healthy():
    """Healthy: a loss summed over the batch, with the learning rate tuned for that sum.

    Source: tensorflow/recommenders issue 213, "Model stops learning when using average
    batch loss instead of sum" (the retrieval task's loss uses reduction SUM,
    https://github.com/tensorflow/recommenders/issues/213).
    """
    return _setup(_regressor(), keras.losses.MeanSquaredError(reduction="sum"),
                  keras.optimizers.SGD(3e-4, momentum=0.9))


@case(family="regression")
def reg_custom_loss_healthy():
    """Healthy: a custom loss function that returns one scalar per batch (a Huber written by hand).

    Source: the Keras "Customizing what happens in fit" guide and the many Stack
    Overflow custom losses that reduce to a scalar themselves
    (https://keras.io/guides/custom_train_step_in_tensorflow/).
    """
    return _setup(_regressor(), huber_mean, keras.optimizers.Adam(1e-3))


# --- faults ------------------------------------------------------------------------


@case(family="regression", twin="reg_sum_healthy", expect=("tiny-steps",))
def reg_mean_not_sum():
    """The same learning rate with the loss averaged instead of summed: every step is 32x shorter.

    Source: tensorflow/recommenders issue 213, "Model stops learning when using average
    batch loss instead of sum" (https://github.com/tensorflow/recommenders/issues/213).
    """
    return _setup(_regressor(), keras.losses.MeanSquaredError(), keras.optimizers.SGD(3e-4, momentum=0.9))


@case(family="regression", twin="reg_sgd_healthy", expect=("huge-steps", "dead-network"))
def reg_dead_network():
    """SGD at a learning rate that blows up in the first steps and leaves every ReLU dead.

    The loss then sits at the target variance (~1.0, predicting the mean) with zero
    gradients into both hidden layers.

    Source: "How does gradient descent work with ReLU if weights are negative?" (AI
    Stack Exchange 39853: dying ReLU, "more easily occurs with higher learning rates",
    https://ai.stackexchange.com/questions/39853/how-does-gradient-descent-work-with-relu-if-weights-are-negative).
    """
    return _setup(_regressor(), keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.3, momentum=0.9),
                  column=False, weighted=True)


@case(family="regression", twin="reg_healthy", expect=("constant-init", "no-gradient"))
def reg_zero_init():
    """Hidden kernels initialised to zeros: the ReLUs output 0 and no gradient reaches any kernel.

    Source: "How is training finding different weights for ReLU units that are all
    initialized to 0?" (DeepLearning.AI community, zero-initialised Dense layers,
    https://community.deeplearning.ai/t/how-is-training-finding-different-weights-for-relu-units-that-are-all-initialized-to-0/587380).
    """
    return _setup(_regressor(kernel_initializer="zeros"), "mse", keras.optimizers.Adam(1e-3))


@case(family="regression", twin="reg_sgd_healthy", expect=("unscaled-inputs", "diverged"))
def reg_unscaled_features():
    """Features in raw units (x1000) into SGD regression: the loss is NaN within the first epoch.

    Source: "NaN loss output when training DNN with Keras" (large input values with
    ReLU layers; fix: normalise the inputs, http://www.taourl.com/read-2589871.html).
    """
    return _setup(_regressor(), keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.01, momentum=0.9),
                  column=False, x_scale=1000.0, weighted=True)

"""MLP heads on tabular features: what the last layer and the loss make of the targets.

The regression task: 8 standard-normal features, a smooth nonlinear target (a sine,
a product and a small linear term, plus noise) standardised to unit variance, so a
model that ignores its inputs scores an MSE of ~1.0 and a good one ~0.1; a linear
model explains under a tenth of its variance. The classification task: 20 features,
10 classes given by the largest of ten fixed random linear scores (plus noise). 2048
training examples, 512 held out, for both.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, FEATURES = 2048, 512, 8
CLS_FEATURES, CLASSES = 20, 10
EPOCHS, BATCH = 8, 32  # 512 steps


@functools.cache
def _data():
    rng = np.random.default_rng(51)
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) + 0.7 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + 0.1 * rng.normal(size=len(x))
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    return x, y[:, None]


@functools.cache
def _class_data():
    rng = np.random.default_rng(52)
    w = rng.normal(size=(CLS_FEATURES, CLASSES))
    x = rng.normal(size=(N_TRAIN + N_VALID, CLS_FEATURES)).astype(np.float32)
    scores = x @ w
    y = np.argmax(scores + 0.5 * rng.normal(size=scores.shape), axis=1)
    return x, np.eye(CLASSES, dtype=np.float32)[y]


def _mlp(inputs=FEATURES, out_units=1, out_activation=None, hidden=(64, 64), activation="relu"):
    """The Dense-ReLU MLP of the TensorFlow "Basic regression" tutorial, head as given."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(units, activation=activation) for units in hidden]
    layers.append(keras.layers.Dense(out_units, activation=out_activation))
    return keras.Sequential(layers)


def _regression(model, loss="mse", optimizer=None, scale=1.0, offset=0.0):
    x, y = _data()
    y = y * np.float32(scale) + np.float32(offset)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=loss)
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


def _classification(loss):
    x, y = _class_data()
    model = _mlp(inputs=CLS_FEATURES, out_units=CLASSES, out_activation="softmax")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


def pinball_loss(y_true, y_pred, tau=0.9):
    """The quantile (pinball) loss as users write it for a 90th-percentile forecast."""
    error = y_true - y_pred
    return keras.ops.mean(keras.ops.maximum(tau * error, (tau - 1.0) * error), axis=-1)


# --- healthy controls -------------------------------------------------------------


@case(family="regression_heads", part="test")
def heads_mse_healthy():
    """Healthy: linear head, mean squared error, standardised targets, Adam.

    Source: the TensorFlow "Basic regression: Predict fuel efficiency" tutorial's DNN
    (https://www.tensorflow.org/tutorials/keras/regression), on synthetic features.
    """
    return _regression(_mlp())


@case(family="regression_heads", part="test")
def heads_quantile_healthy():
    """Healthy: a 90th-percentile regression, linear head, a pinball loss of the user's own.

    Source: Sachin Abeywardana, "Deep Quantile Regression" (a Keras model trained with
    a hand-written tilted loss,
    https://towardsdatascience.com/deep-quantile-regression-c85481548b5a).
    """
    return _regression(_mlp(), loss=pinball_loss)


@case(family="regression_heads", part="test")
def heads_classifier_healthy():
    """Healthy: ten-class softmax classifier, categorical cross-entropy on one-hot targets, SGD.

    Source: the Keras 2 examples' mnist_mlp.py recipe (Dense-ReLU-softmax, categorical
    cross-entropy on one-hot labels,
    https://github.com/keras-team/keras/blob/2.15.0/examples/mnist_mlp.py).
    """
    return _classification("categorical_crossentropy")


# --- faults ------------------------------------------------------------------------


@case(family="regression_heads", part="test", twin="heads_mse_healthy", expect=("output-range-mismatch",))
def heads_sigmoid_output():
    """A sigmoid output on a standardised (unbounded, half negative) regression target.

    The head can only say 0 to 1: every negative target is predicted as ~0 and every
    target above 1 as ~1, so the validation MSE stays several times the twin's.

    Source: "Regression problem with Deep Learning" (Data Science Stack Exchange 81132,
    on which output activation a house-price regression may use,
    https://datascience.stackexchange.com/questions/81132/regression-problem-with-deep-learning).
    """
    return _regression(_mlp(out_activation="sigmoid"))


@case(family="regression_heads", part="test", twin="heads_mse_healthy", expect=("unscaled-targets",))
def heads_unscaled_targets():
    """House-price targets (around 300,000, spread 100,000) under a linear head, left unscaled.

    Adam moves the output bias by about its learning rate a step, so after 512 steps
    the predictions are still in the units, not the hundreds of thousands; the MSE
    stays ~1e11, about nine times the targets' variance.

    Source: "Keras/TF Negative Loss Fix: Ultimate Guide to Regression Loss Functions and
    Normalization" (price targets must be normalised before a regression head,
    https://openillumi.com/en/en-keras-tf-fix-huge-negative-loss-regression).
    """
    return _regression(_mlp(), scale=100_000.0, offset=300_000.0)


@case(family="regression_heads", part="test", twin="heads_classifier_healthy", expect=("loss-target-mismatch",))
def heads_classifier_mae():
    """The ten-class classifier trained with mean absolute error on its one-hot targets.

    Through a softmax, MAE's gradient on each logit is 2/K times the true class's
    probability times cross-entropy's, about a fiftieth of it at the start for ten
    classes: plain SGD barely moves and the accuracy stays near chance.

    Source: Zhang and Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural
    Networks with Noisy Labels" (MAE underfits and trains slowly on many classes,
    arXiv 1805.07836).
    """
    return _classification("mae")


@case(family="regression_heads", part="test", twin="heads_mse_healthy", expect=("missing-activation",))
def heads_no_hidden_activation():
    """Two Dense(64) hidden layers with no activation: the MLP is one linear map.

    The target is a sine and a product, which no linear function fits: the validation
    MSE stays at ~0.95 of the variance while the twin reaches ~0.16.

    Source: the Keras Dense layer docs (with no activation given, none is applied:
    "linear" activation a(x) = x, https://keras.io/api/layers/core_layers/dense/).
    """
    return _regression(_mlp(activation=None))


@case(family="regression_heads", part="test", twin="heads_mse_healthy", expect=("unexplained",))
def heads_two_unit_bottleneck():
    """A hidden layer of 2 units where 64 were meant: a model far too small for its target.

    Training is sound (moderate steps, finite losses, standardised inputs and
    targets), it just cannot represent a sine plus a product through two tanh units:
    the validation MSE stays at ~0.95 of the variance (the twin: ~0.16). No finding id
    names a lack of capacity.

    Source: "Why Is My Keras Model's Training Accuracy Always 0?" ("Overly Simple Model
    Architecture",
    https://www.codegenes.net/blog/why-is-the-accuracy-for-my-keras-model-always-0-when-training).
    """
    return _regression(_mlp(hidden=(2,), activation="tanh"))

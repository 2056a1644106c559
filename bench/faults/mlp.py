"""MLP classifiers on tabular features: the first model most people train, and its classic bugs.

The task: 20 standard-normal features, 4 classes given by which of four fixed random
linear scores is largest (plus noise, so the best accuracy is ~90%, not 100%); the
binary task asks whether the first score is positive. 2048 training examples, 512
held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

N_TRAIN, N_VALID, FEATURES, CLASSES = 2048, 512, 20, 4
EPOCHS, BATCH = 6, 32  # 384 steps


@functools.cache
def _data():
    rng = np.random.default_rng(11)
    w = rng.normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    scores = x @ w
    y = np.argmax(scores + 0.5 * rng.normal(size=scores.shape), axis=1).astype(np.int32)
    binary = (scores[:, 0] + 0.5 * rng.normal(size=len(x)) > 0).astype(np.float32)
    return x, y, binary


def _split(x, y):
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _mlp(out_units=CLASSES, out_activation="softmax", hidden=(64, 64), activation="relu",
         kernel_initializer="glorot_uniform"):
    """The Sequential MLP of the Keras getting-started guides."""
    layers = [keras.Input((FEATURES,))]
    layers += [keras.layers.Dense(units, activation=activation, kernel_initializer=kernel_initializer)
               for units in hidden]
    layers.append(keras.layers.Dense(out_units, activation=out_activation))
    return keras.Sequential(layers)


def _classifier(model, loss, optimizer, one_hot=False, x_scale=1.0, shuffle_labels=False):
    x, y, _ = _data()
    x = x * np.float32(x_scale)
    if shuffle_labels:
        # The labels permuted apart from the inputs (x and y shuffled separately): the
        # class distribution is intact, its link to the features gone.
        y = np.random.default_rng(5).permutation(y)
    targets = np.eye(CLASSES, dtype=np.float32)[y] if one_hot else y
    (xt, yt), valid = _split(x, targets)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid)


# --- healthy controls -------------------------------------------------------------


@case(family="mlp")
def mlp_healthy():
    """Healthy: Adam, softmax output, integer labels, the loss as a string.

    Source: the TensorFlow "Basic classification" tutorial's Dense-ReLU-softmax
    classifier trained with Adam and sparse_categorical_crossentropy
    (https://www.tensorflow.org/tutorials/keras/classification), on tabular features.
    """
    return _classifier(_mlp(), "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-3))


@case(family="mlp")
def mlp_sgd_healthy():
    """Healthy: SGD with momentum, one-hot labels, the loss as an object.

    Source: the Keras 2 examples' mnist_mlp.py recipe (Dense-ReLU-softmax with
    categorical_crossentropy on one-hot labels,
    https://github.com/keras-team/keras/blob/2.15.0/examples/mnist_mlp.py), trained with SGD.
    """
    return _classifier(_mlp(), keras.losses.CategoricalCrossentropy(), keras.optimizers.SGD(0.05, momentum=0.9),
                       one_hot=True)


@case(family="mlp")
def mlp_deep_healthy():
    """Healthy: an 8-layer ReLU MLP with He initialisation, SGD with momentum.

    Source: Jason Brownlee, "How to Fix Vanishing Gradients Using the Rectified Linear
    Activation Function" (deeper MLP with ReLU and He init,
    https://machinelearningmastery.com/how-to-fix-vanishing-gradients-using-the-rectified-linear-activation-function/).
    """
    return _classifier(_mlp(hidden=(32,) * 8, kernel_initializer="he_normal"),
                       "sparse_categorical_crossentropy", keras.optimizers.SGD(0.05, momentum=0.9))


@case(family="mlp")
def mlp_binary_healthy():
    """Healthy: a sigmoid unit with binary cross-entropy, targets shaped (N, 1).

    Source: the Keras "Structured data classification from scratch" example's
    Dense(1, activation="sigmoid") + binary_crossentropy head
    (https://keras.io/examples/structured_data/structured_data_classification_from_scratch/).
    """
    x, _, binary = _data()
    (xt, yt), valid = _split(x, binary[:, None])
    model = _mlp(out_units=1, out_activation="sigmoid")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid)


@case(family="mlp")
def mlp_binary_logits_healthy():
    """Healthy: a linear unit with BinaryCrossentropy(from_logits=True), targets shaped (N,), class weights.

    Source: the Keras "Imbalanced classification: credit card fraud detection" example
    (class_weight passed to fit, https://keras.io/examples/structured_data/imbalanced_classification/),
    with the logit form of the loss the TensorFlow tutorials recommend.
    """
    x, _, binary = _data()
    (xt, yt), valid = _split(x, binary)
    model = _mlp(out_units=1, out_activation=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid, class_weight={0: 1.0, 1: 2.0})


# --- faults ------------------------------------------------------------------------


@case(family="mlp", twin="mlp_sgd_healthy", expect=("huge-steps",))
def mlp_sgd_lr_huge():
    """SGD with a learning rate 100x too large: weights grow to ~1e5 and the loss thrashes.

    Weights keep jumping by a large part of their norm each step; the first epoch's loss
    averages tens of nats and accuracy never gets far above chance.

    Source: "Why is learning rate causing my neural network's weights to skyrocket?"
    (Data Science Stack Exchange 15962,
    https://datascience.stackexchange.com/questions/15962/why-is-learning-rate-causing-my-neural-networks-weights-to-skyrocket).
    """
    return _classifier(_mlp(), keras.losses.CategoricalCrossentropy(), keras.optimizers.SGD(5.0, momentum=0.9),
                       one_hot=True)


@case(family="mlp", twin="mlp_healthy", expect=("huge-steps", "dead-network"))
def mlp_adam_blowup():
    """Adam at learning rate 0.3: the first steps blow the weights up and kill every ReLU of a layer.

    Afterwards no gradient reaches the hidden layers; only the output bias still learns
    the class frequencies, so the loss sits at ln(4) with weights that no longer move.

    Source: "Layer-wise Dying ReLU Check on MNIST (0.1 LR)", a Dense-ReLU-softmax MLP
    compiled with Adam(learning_rate=0.1) whose accuracy falls epoch after epoch
    (https://github.com/Ayush-dhabale/Deeplearning); here three times that rate.
    """
    return _classifier(_mlp(), "sparse_categorical_crossentropy", keras.optimizers.Adam(0.3))


@case(family="mlp", twin="mlp_sgd_healthy", expect=("tiny-steps", "plateau"))
def mlp_sgd_lr_tiny():
    """SGD with a learning rate 10,000x too small: the loss barely leaves ln(4).

    Source: "Loss and accuracy get stuck in Keras" (the fix: raise the learning rate
    from 0.00001 to 0.1, https://chenzhang.org/notes/developer/loss-and-accuracy-get-stuck-in-keras/).
    """
    return _classifier(_mlp(), keras.losses.CategoricalCrossentropy(), keras.optimizers.SGD(5e-6, momentum=0.9),
                       one_hot=True)


@case(family="mlp", twin="mlp_sgd_healthy", expect=("relu-output-crossentropy", "diverged"))
def mlp_relu_output():
    """A ReLU output layer trained with categorical cross-entropy, which expects probabilities.

    Source: keras-team/keras issue 4784 "Accuracy not changing across the epochs" (the
    output activation does not match the loss, https://github.com/keras-team/keras/issues/4784);
    the question this project grew from has the same output.
    """
    return _classifier(_mlp(out_activation="relu"), keras.losses.CategoricalCrossentropy(),
                       keras.optimizers.SGD(0.05, momentum=0.9), one_hot=True)


@case(family="mlp", twin="mlp_healthy", expect=("unexplained", "ignores-input"))
def mlp_shuffled_labels():
    """Labels shuffled apart from their inputs: nothing to learn, the loss stays at the label entropy.

    Source: "Why is my Keras model's training accuracy always 0?" ("silent data loading
    errors": features and labels misaligned,
    https://www.codegenes.net/blog/why-is-the-accuracy-for-my-keras-model-always-0-when-training).
    """
    return _classifier(_mlp(), "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-3), shuffle_labels=True)


@case(family="mlp", twin="mlp_sgd_healthy", expect=("unscaled-inputs", "diverged"))
def mlp_unscaled_features():
    """Features in the thousands (raw units) into SGD: the first layer's gradients are 1000x too large.

    Source: "NaN loss output when training DNN with Keras" (inputs scaled by 1000 with
    ReLU layers; fix: standardise the inputs, http://www.taourl.com/read-2589871.html).
    """
    return _classifier(_mlp(), keras.losses.CategoricalCrossentropy(), keras.optimizers.SGD(0.05, momentum=0.9),
                       one_hot=True, x_scale=1000.0)


@case(family="mlp", twin="mlp_healthy", expect=("constant-init",))
def mlp_constant_init():
    """Hidden kernels initialised to one constant: every unit of a layer computes the same thing forever.

    Source: "What is the purpose of setting an initial weight on deep learning model?"
    (Data Science Stack Exchange 19170, quoting CS231n on constant initialisation,
    https://datascience.stackexchange.com/questions/19170/what-is-the-purpose-of-setting-an-initial-weight-on-deep-learning-model).
    """
    return _classifier(_mlp(kernel_initializer=keras.initializers.Constant(0.05)),
                       "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-3))


@case(family="mlp", twin="mlp_deep_healthy", expect=("vanishing-gradients", "plateau"))
def mlp_deep_sigmoid():
    """The 8-layer MLP with sigmoid units: the first layers' gradients are ~0.25^8 of the last's.

    Source: "What could be the problem when a neural network with four hidden layers
    with the sigmoid activation function is not learning?" (AI Stack Exchange 16557,
    https://ai.stackexchange.com/questions/16557/what-could-be-the-problem-when-a-neural-network-with-four-hidden-layers-with-the).
    """
    return _classifier(_mlp(hidden=(32,) * 8, activation="sigmoid", kernel_initializer="he_normal"),
                       "sparse_categorical_crossentropy", keras.optimizers.SGD(0.05, momentum=0.9))


@case(family="mlp", twin="mlp_binary_healthy", expect=("single-unit-softmax",))
def mlp_binary_softmax():
    """Softmax over a one-unit output with binary cross-entropy: the output is always 1.0.

    Keras 3 hides it from the loss: its binary cross-entropy takes the logits under a
    softmax or sigmoid activation (``_keras_logits``), so the loss falls as the sigmoid
    twin's does, while every prediction the model makes is 1.0 and its accuracy stays
    at the share of positive targets.

    Source: "Why does a binary Keras CNN always predict 1?" (Dense(1) + softmax +
    binary_crossentropy; softmax of one number is 1, https://techfeed.net/es/456718/).
    """
    x, _, binary = _data()
    (xt, yt), valid = _split(x, binary[:, None])
    model = _mlp(out_units=1, out_activation="softmax")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, xt, yt, EPOCHS, BATCH, validation_data=valid)

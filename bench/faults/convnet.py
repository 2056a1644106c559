"""Small convnets on synthetic images: the "simple MNIST convnet" shape on a task that trains in seconds.

The task: 16x16 grey images of one stroke on a noisy background, three classes (a
horizontal bar, a vertical bar, a diagonal), anywhere in the frame. Pixels are stored
as 0-255, as image files give them; the healthy models see them divided by 255.
1536 training images, 384 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

N_TRAIN, N_VALID, SIZE, CLASSES = 1536, 384, 16, 3
EPOCHS, BATCH = 5, 32  # 240 steps


@functools.cache
def _pixels():
    """Images as 0-255 floats, (N, 16, 16, 1), and their integer classes."""
    rng = np.random.default_rng(31)
    n = N_TRAIN + N_VALID
    images = rng.uniform(0, 90, size=(n, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=n).astype(np.int32)
    for i, label in enumerate(y):
        r, c, length = rng.integers(2, SIZE - 2), rng.integers(2, SIZE - 2), rng.integers(6, 11)
        start = rng.integers(0, SIZE - length + 1)
        steps = np.arange(length)
        if label == 0:
            images[i, r, start + steps] = rng.uniform(170, 255, size=length)
        elif label == 1:
            images[i, start + steps, c] = rng.uniform(170, 255, size=length)
        else:
            d = min(length, SIZE - max(r, c) + 2)
            images[i, (r - 2 + steps[:d]) % SIZE, (c - 2 + steps[:d]) % SIZE] = rng.uniform(170, 255, size=d)
    return images[..., None], y


def _convnet(out_activation=None, batchnorm=True):
    """Conv-pool-conv-pool-dense, as in the Keras "Simple MNIST convnet" example."""
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    if batchnorm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.2)(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation=out_activation)(h))


def _setup(model, loss, optimizer, scale=True, one_hot=False, class_weight=None):
    images, y = _pixels()
    x = images / np.float32(255.0) if scale else images
    targets = np.eye(CLASSES, dtype=np.float32)[y] if one_hot else y
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], targets[:N_TRAIN], EPOCHS, BATCH,
                 validation_data=(x[N_TRAIN:], targets[N_TRAIN:]), class_weight=class_weight)


# --- healthy controls -------------------------------------------------------------


@case(family="convnet")
def conv_healthy():
    """Healthy: logits with SparseCategoricalCrossentropy(from_logits=True), BatchNormalization, Dropout, Adam.

    Source: the TensorFlow "Convolutional Neural Network (CNN)" tutorial (linear last
    layer, SparseCategoricalCrossentropy(from_logits=True),
    https://www.tensorflow.org/tutorials/images/cnn), on synthetic strokes.
    """
    return _setup(_convnet(), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  keras.optimizers.Adam(1e-3))


@case(family="convnet")
def conv_sgd_healthy():
    """Healthy: softmax output, one-hot labels, the loss by name, SGD with momentum, class weights.

    Source: the Keras "Simple MNIST convnet" example (softmax output,
    categorical_crossentropy on one-hot labels, pixels divided by 255,
    https://keras.io/examples/vision/mnist_convnet/), without BatchNormalization.
    """
    return _setup(_convnet("softmax", batchnorm=False), "categorical_crossentropy",
                  keras.optimizers.SGD(0.05, momentum=0.9), one_hot=True, class_weight={0: 1.0, 1: 1.0, 2: 1.5})


@case(family="convnet")
def conv_softmax_from_logits_healthy():
    """Healthy in Keras 3: Dense(activation="softmax") into SparseCategoricalCrossentropy(from_logits=True).

    Keras 3 warns ("received `from_logits=True`, but the `output` argument was produced
    by a softmax activation") and computes the loss from the logits under the
    activation (``_keras_logits``; on TensorFlow also whenever the output tensor comes
    straight from a Softmax op, as with ``keras.ops.softmax``), so this trains exactly
    as conv_healthy does: the configuration looks like a double softmax and is not one.

    Source: keras-team/keras-io pull request 494 and tensorflow/tensorflow issue 50190
    (the warning, https://github.com/keras-team/keras-io/pull/494).
    """
    return _setup(_convnet("softmax"), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  keras.optimizers.Adam(1e-3))


# --- faults ------------------------------------------------------------------------


@case(family="convnet", twin="conv_sgd_healthy", expect=("unscaled-inputs", "dead-network"))
def conv_pixels_0_255():
    """The same convnet fed raw 0-255 pixels: the first steps blow up and leave every ReLU dead.

    Activations and gradients are 255x what the learning rate was chosen for; after the
    first epoch no gradient reaches the convolutions and the loss sits at ln(3).

    Source: "Why normalize when all features are on the same scale?" (Cross Validated
    372762: without dividing by 255 the TensorFlow tutorial's accuracy falls to 10%,
    https://stats.stackexchange.com/questions/372762/why-normalize-when-all-features-are-on-the-same-scale).
    """
    return _setup(_convnet("softmax", batchnorm=False), "categorical_crossentropy",
                  keras.optimizers.SGD(0.05, momentum=0.9), scale=False, one_hot=True,
                  class_weight={0: 1.0, 1: 1.0, 2: 1.5})


@case(family="convnet", twin="conv_healthy", expect=("relu-output-crossentropy",))
def conv_logits_as_probabilities():
    """Logits into SparseCategoricalCrossentropy() with its default from_logits=False.

    Keras then treats the raw scores as probabilities: it divides them by their sum
    and clips them to [1e-7, 1], so negative scores cost 16 nats and pass back nothing.

    Source: keras-team/keras-hub pull request 1008, "Try adding an error if activation
    and loss are mismatched" ("This will not converge!",
    https://github.com/keras-team/keras-hub/pull/1008).
    """
    return _setup(_convnet(), keras.losses.SparseCategoricalCrossentropy(), keras.optimizers.Adam(1e-3))

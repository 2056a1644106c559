"""The fault suite's ``mlp_adam_blowup`` as a user writes it: an MLP whose Adam rate kills its ReLUs.

Adam at 0.3 (the fault; 1e-3 trains it) throws the first steps so far that every ReLU
of a hidden layer dies; from then on no gradient reaches the hidden layers and the
loss sits at the label entropy. Source: "Layer-wise Dying ReLU Check on MNIST (0.1
LR)" (https://github.com/Ayush-dhabale/Deeplearning), at three times that rate.

The task: 20 standard-normal features, 4 classes given by which of four fixed random
linear scores is largest (plus noise); 2048 training rows, 512 held out.
"""

from __future__ import annotations

import keras
import numpy as np

FEATURES, CLASSES, N_TRAIN = 20, 4, 2048


def data(settings):
    """((x, y), (x_valid, y_valid)) with integer labels."""
    rng = np.random.default_rng(11)
    w = rng.normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(N_TRAIN + 512, FEATURES)).astype(np.float32)
    scores = x @ w
    y = np.argmax(scores + 0.5 * rng.normal(size=scores.shape), axis=1).astype(np.int32)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def build(settings):
    """Dense(64, relu) x 2 -> Dense(4, softmax), Adam at ``learning_rate``."""
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(settings.get("learning_rate", 1e-3)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

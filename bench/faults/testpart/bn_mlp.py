"""MLP classifiers with BatchNormalization and Dropout: the regularised MLP of the Keras guides.

The task: 20 standard-normal features, 4 classes given by which of four fixed random
scores is largest, each score a linear term plus a ReLU-shaped one (plus noise, so
the best accuracy is ~85%, not 100%). 640 training examples, 512 held out. The model
is Dense -> BatchNormalization -> ReLU -> Dropout, twice, then a softmax. The rare-event
task: the same kind of features, a positive label for ~3% of the examples, drawn from
a logistic model of one linear score (informative, never certain); 2048 training
examples, 1024 held out, the same blocks under a sigmoid.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, FEATURES, CLASSES = 640, 512, 20, 4
EPOCHS, BATCH = 10, 32  # 200 steps


@functools.cache
def _data():
    rng = np.random.default_rng(31)
    w = rng.normal(size=(FEATURES, CLASSES))
    v = rng.normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    scores = x @ w + 1.5 * np.maximum(x @ v, 0.0)
    y = np.argmax(scores + 0.7 * rng.normal(size=scores.shape), axis=1).astype(np.int32)
    return x, y


@functools.cache
def _rare_data():
    rng = np.random.default_rng(32)
    n = 2048 + 1024
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    w = rng.normal(size=FEATURES)
    score = x @ w / np.linalg.norm(w)
    p = 1.0 / (1.0 + np.exp(-(2.0 * score - 5.2)))
    y = (rng.random(n) < p).astype(np.float32)[:, None]
    return x, y


def _bn_mlp(dropout=0.1, hidden=(64, 64), out_units=CLASSES, out_activation="softmax"):
    """Dense -> BatchNormalization -> ReLU -> Dropout blocks, then the head (a softmax unless told)."""
    layers = [keras.Input((FEATURES,))]
    for units in hidden:
        layers += [keras.layers.Dense(units, use_bias=False), keras.layers.BatchNormalization(),
                   keras.layers.Activation("relu"), keras.layers.Dropout(dropout)]
    layers.append(keras.layers.Dense(out_units, activation=out_activation))
    return keras.Sequential(layers)


def _setup(model, epochs=EPOCHS, batch_size=BATCH, valid_units=False):
    x, y = _data()
    xt, yt, xv, yv = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    if valid_units:
        # The raw features are measurements around 50 with spreads of 5 to 20; the
        # training split is standardised, the held-out split is passed as it was read.
        rng = np.random.default_rng(7)
        mean = rng.uniform(30.0, 70.0, FEATURES).astype(np.float32)
        std = rng.uniform(5.0, 20.0, FEATURES).astype(np.float32)
        xv = xv * std + mean
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Setup(model, xt, yt, epochs, batch_size, validation_data=(xv, yv))


def _rare_setup(class_weight=None):
    x, y = _rare_data()
    model = _bn_mlp(out_units=1, out_activation="sigmoid")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  metrics=["accuracy", keras.metrics.Recall(name="recall")])
    return Setup(model, x[:2048], y[:2048], 6, 32, validation_data=(x[2048:], y[2048:]),  # 384 steps
                 class_weight=class_weight)


# --- healthy controls -------------------------------------------------------------


@case(family="bn_mlp", part="test")
def bn_mlp_healthy():
    """Healthy: Dense-BatchNorm-ReLU-Dropout(0.1) twice, Adam, batches of 32.

    Source: the Keras API docs of BatchNormalization and Dropout
    (https://keras.io/api/layers/normalization_layers/batch_normalization/), the
    Dense -> BatchNormalization -> Activation order of Ioffe and Szegedy (arXiv 1502.03167).
    """
    return _setup(_bn_mlp())


@case(family="bn_mlp", part="test")
def bn_mlp_rare_weighted_healthy():
    """Healthy: the BatchNorm MLP under a sigmoid on ~3% positives, the classes weighted 1 : 30.

    Source: the Keras example "Imbalanced classification: credit card fraud detection"
    (class_weight inversely proportional to the class counts,
    https://keras.io/examples/structured_data/imbalanced_classification/).
    """
    return _rare_setup(class_weight={0: 1.0, 1: 30.0})


# --- faults ------------------------------------------------------------------------


@case(family="bn_mlp", part="test", twin="bn_mlp_healthy", expect=("batchnorm-small-batch",))
def bn_mlp_batch_size_one():
    """The same BatchNorm MLP trained one example at a time (batch_size=1).

    Over a batch of one, each feature's batch mean is the example itself, so every
    BatchNormalization output is its beta whatever the input: in training the model
    sees a constant, learns the class prior, and no gradient reaches the kernels below
    the normalisation. At validation the moving statistics are used and the untrained
    layers give about chance. One epoch of 640 steps (the healthy twin takes 10 epochs
    of 20 steps).

    Source: microsoft/CNTK issue 905 "question on MNIST model 03_ConvBatchNorm"
    (minibatchSize=1 gives an error rate over 50% only in the BatchNorm model,
    https://github.com/microsoft/CNTK/issues/905).
    """
    return _setup(_bn_mlp(), epochs=1, batch_size=1)


@case(family="bn_mlp", part="test", twin="bn_mlp_healthy", expect=("excessive-dropout",))
def bn_mlp_dropout_keep_prob():
    """Dropout(0.9) where a keep-probability of 0.9 was meant: 90% of the hidden units dropped.

    TensorFlow 1's tf.nn.dropout took keep_prob; Keras' Dropout takes the rate to
    drop. Six of 64 units survive each step, scaled up tenfold, and the network
    trains on noise.

    Source: "keep_prob value in dropout and getting worse results with dropout"
    (keep_prob is the share kept, not dropped,
    https://errorhandle.ai/keep-prob-value-in-dropout-and-getting-worst-resultypescript-with-dropout),
    and the tf.compat.v1 Dropout docs (rate=0.1 drops 10%,
    https://tensorflow.google.cn/versions/r2.0/api_docs/python/tf/compat/v1/layers/Dropout).
    """
    return _setup(_bn_mlp(dropout=0.9))


@case(family="bn_mlp", part="test", twin="bn_mlp_healthy", expect=("unexplained",))
def bn_mlp_validation_unscaled():
    """Training features standardised, validation features left in their raw units.

    Training converges as the twin's does; the held-out split, never passed through
    the scaler, lands far outside what the model saw, so the validation loss is huge
    and its accuracy near chance. Nothing in the training run is wrong, and no finding
    id names the cause.

    Source: "CNN Keras converges to the same value regardless of input" (answer: normalise
    the test data with the training data's statistics, never its own or none,
    http://pullrequest.ru/10248037/cnn-keras-shodyatsya-odnomu-tomu-zhe-znacheniy-nezavisimo-vvoda).
    """
    return _setup(_bn_mlp(), valid_units=True)


@case(family="bn_mlp", part="test", twin="bn_mlp_rare_weighted_healthy", expect=("class-imbalance",))
def bn_mlp_rare_unweighted():
    """The same rare-event classifier with no class weights: it predicts the majority class for everything.

    97% of the labels are negative and no example is certainly positive, so the
    cross-entropy's best answer stays under one half everywhere: the accuracy sits at
    the negatives' share and the recall of the positives at ~0.

    Source: "Why MLP only learns bias for unbalanced binary classification" (Data
    Science Stack Exchange 19283: 88% negatives, the MLP "ended up predicting everything
    to be negative",
    https://datascience.stackexchange.com/questions/19283/why-mlp-only-learns-bias-for-unbalanced-binary-classification).
    """
    return _rare_setup()

"""Real reported bugs of models that fit none of the other families, each beside its confirmed fix.

Each case ports one report (its model, loss, optimizer and bug, at small scale, on
synthetic numpy data of the same structure); its healthy twin is the fix the answer,
the maintainers or the asker confirmed. The data:

- "digits": 28x28 grey images of 10 classes stored as 0-255 pixel values, as MNIST is.
  Each class is a fixed pattern of three strokes (short blurred line segments) on a
  black background, drawn shifted by up to 2 pixels, with random contrast and noise. A
  harder set, for the CNN, has classes sharing two of their three strokes, shifts of up
  to 3 pixels and noise over the whole image. 2048 training images, 512 held out.
- "logo scenes": one-shot logo segmentation. A 32x32 RGB scene (values in [0, 1]) holds
  three of 6 fixed 8x8 colour logos at random places on a noisy background; the query
  is a clean copy of one of them; the target mask (32x32x1) marks where that logo lies.
  1280 scenes for training, 256 held out.
- "sensor table": 12 raw-unit features (counts, temperatures, pressures in the
  thousands) and 3 classes given by fixed linear scores of the standardised features.
  2048 rows for training, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, CLASSES = 2048, 512, 10
LOGOS, SCENE, LOGO = 6, 32, 8
LOGO_TRAIN, LOGO_VALID = 1280, 256
FEATURES, TABLE_CLASSES = 12, 3

PACKT_1 = "https://github.com/PacktPublishing/What-s-New-in-TensorFlow-2.0/issues/1"
LOGO_7 = "https://github.com/AyanKumarBhunia/Deep-One-Shot-Logo-Retrieval/issues/7"
HUNKIM_204 = "https://github.com/hunkim/DeepLearningZeroToAll/issues/204"
KERAS_510 = "https://github.com/keras-team/keras/issues/510"


@functools.cache
def _digits(hard=False):
    """0-255 valued float32 images (N, 28, 28) and integer labels (N,).

    The plain set: three strokes per class, shifts of up to 2 pixels, noise on the
    strokes over a black background. The hard set: every class shares two strokes and
    has one of its own, shifts of up to 3 pixels, noise everywhere.
    """
    rng = np.random.default_rng(104 if hard else 101)
    size = 28
    grid = np.arange(size)

    def stroke():
        (y0, x0), (y1, x1) = rng.uniform(5, size - 5, (2, 2))
        img = np.zeros((size, size))
        for t in np.linspace(0.0, 1.0, 12):
            cy, cx = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
            img = np.maximum(img, np.exp(-((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2) / 3.0))
        return img

    if hard:
        shared = np.maximum(stroke(), stroke())
        protos = np.stack([np.maximum(shared, stroke()) for _ in range(CLASSES)])
    else:
        protos = np.stack([np.maximum(np.maximum(stroke(), stroke()), stroke()) for _ in range(CLASSES)])
    max_shift, noise = (3, 0.3) if hard else (2, 0.15)
    n = N_TRAIN + N_VALID
    labels = rng.integers(0, CLASSES, n)
    images = np.empty((n, size, size))
    for i, k in enumerate(labels):
        shifted = np.roll(protos[k], tuple(rng.integers(-max_shift, max_shift + 1, 2)), axis=(0, 1))
        image = shifted * rng.uniform(0.6, 1.0) + noise * rng.normal(size=shifted.shape)
        if not hard:
            image[shifted < 0.05] = 0.0  # a black background, as MNIST's
        images[i] = image
    pixels = np.clip(np.round(images * 255), 0, 255).astype(np.float32)
    return pixels, labels.astype(np.int32)


@functools.cache
def _logo_scenes():
    """Scenes (N, 32, 32, 3), queries (N, 8, 8, 3) and masks (N, 32, 32, 1), float32 in [0, 1]."""
    rng = np.random.default_rng(102)
    logos = []
    for _ in range(LOGOS):
        shape = rng.random((LOGO, LOGO)) < 0.55
        logos.append(shape[:, :, None] * rng.uniform(0.3, 1.0, 3) + ~shape[:, :, None] * rng.uniform(0.0, 0.2, 3))
    logos = np.stack(logos)
    n = LOGO_TRAIN + LOGO_VALID
    scenes = np.clip(0.1 + 0.08 * rng.normal(size=(n, SCENE, SCENE, 3)), 0, 1)
    queries = np.empty((n, LOGO, LOGO, 3))
    masks = np.zeros((n, SCENE, SCENE, 1))
    cells = [(r, c) for r in range(0, SCENE - LOGO + 1, LOGO) for c in range(0, SCENE - LOGO + 1, LOGO)]
    for i in range(n):
        chosen = rng.choice(LOGOS, 3, replace=False)
        for k, cell in zip(chosen, rng.choice(len(cells), 3, replace=False)):
            r, c = cells[cell]
            scenes[i, r:r + LOGO, c:c + LOGO] = logos[k] * rng.uniform(0.8, 1.0)
            if k == chosen[0]:
                masks[i, r:r + LOGO, c:c + LOGO] = 1.0
        queries[i] = logos[chosen[0]]
    return scenes.astype(np.float32), queries.astype(np.float32), masks.astype(np.float32)


@functools.cache
def _sensor_table():
    """Raw-unit features (N, 12) float32 (scales from 1 to ~5000) and integer labels (N,)."""
    rng = np.random.default_rng(103)
    n = N_TRAIN + N_VALID
    z = rng.normal(size=(n, FEATURES))
    scores = z @ rng.normal(size=(FEATURES, TABLE_CLASSES))
    labels = np.argmax(scores + 0.3 * rng.normal(size=scores.shape), axis=1).astype(np.int32)
    scale = np.array([1, 3, 12, 40, 90, 150, 300, 600, 900, 1500, 2500, 4000], dtype=np.float64)
    offset = np.array([0, 10, 50, 100, 400, 800, 1000, 2000, 3000, 5000, 8000, 10000], dtype=np.float64)
    return (z * scale + offset).astype(np.float32), labels


# --- Packt "What's New in TensorFlow 2.0", chapter 2 -----------------------------------


def _packt_setup(scale):
    """The book's end-to-end Sequential model: Flatten, Dense(100) x2 relu, softmax; plain SGD; one-hot labels.

    The book trains with SGD(learning_rate=0.0005) for 10 epochs of MNIST, ~18,750
    steps; this run has 640, so the rate is raised to 0.01 (20 times) for the scaled
    model to learn in them. At 0.0005 on this small set, the unscaled model's 255-times
    larger inputs act as a 255-times larger step and it learns, which is not what the
    report shows; at 0.01 both sides behave as reported.
    """
    x, y = _digits()
    x = x * np.float32(scale)
    one_hot = np.eye(CLASSES, dtype=np.float32)[y]
    model = keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer=keras.optimizers.SGD(learning_rate=0.01),
                  metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], one_hot[:N_TRAIN], 10, 32,  # 640 steps
                 validation_data=(x[N_TRAIN:], one_hot[N_TRAIN:]))


# --- one-shot logo segmentation ---------------------------------------------------------


def _logo_network(out_activation):
    """The repository's conditional encoder-decoder, scaled down (one convolution per level, 8-16 filters).

    A target encoder (conv-pool blocks), a query encoder reduced to one vector, that
    vector tiled onto the encoder's feature maps at every scale, and a decoder of
    stride-2 transposed convolutions and 3x3 convolutions fusing the tiled encodings
    through 1x1 convolutions; one 3x3 convolution with one output channel at the end.
    """
    scene = keras.Input((SCENE, SCENE, 3), name="target")
    query = keras.Input((LOGO, LOGO, 3), name="query")

    def conv(h, filters, kernel=3):
        return keras.layers.Conv2D(filters, kernel, padding="same", activation="relu")(h)

    e1 = conv(scene, 8)                                               # 32x32
    e2 = conv(keras.layers.MaxPooling2D()(e1), 16)                    # 16x16
    e3 = conv(keras.layers.MaxPooling2D()(e2), 16)                    # 8x8
    bottom = keras.layers.MaxPooling2D()(e3)                          # 4x4

    q = keras.layers.MaxPooling2D()(conv(query, 8))                   # 4x4
    q = keras.layers.MaxPooling2D()(conv(q, 16))                      # 2x2
    q = keras.layers.Conv2D(16, 2, activation="relu")(q)              # 1x1x16

    def fuse(features):
        tiled = keras.layers.UpSampling2D(features.shape[1])(q)  # the query vector repeated over the map (tf.tile)
        return keras.layers.Concatenate()([features, tiled])

    h = conv(fuse(bottom), 16)
    for skip, filters in ((e3, 16), (e2, 16), (e1, 8)):
        h = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(h)
        h = conv(keras.layers.Concatenate()([h, conv(fuse(skip), filters, kernel=1)]), filters)
    mask = keras.layers.Conv2D(1, 3, padding="same", activation=out_activation)(h)
    return keras.Model([scene, query], mask)


def _logo_setup(out_activation):
    scenes, queries, masks = _logo_scenes()
    model = _logo_network(out_activation)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  metrics=["binary_accuracy", keras.metrics.BinaryIoU(target_class_ids=[1], name="logo_iou")])
    n = LOGO_TRAIN
    return Setup(model, [scenes[:n], queries[:n]], masks[:n], 4, 16,  # 320 steps
                 validation_data=([scenes[n:], queries[n:]], masks[n:]))


# --- DeepLearningZeroToAll lab 11-4: the CNN with tf.layers.dropout -----------------------


def _lab_cnn_setup(conv_dropout):
    """Three conv-pool-dropout blocks, Dense(relu) with dropout 0.5, 10 logits; softmax cross-entropy; Adam(0.001)."""
    x, y = _digits(hard=True)
    x = x[..., None] / np.float32(255.0)
    one_hot = np.eye(CLASSES, dtype=np.float32)[y]
    layers = [keras.Input((28, 28, 1))]
    for filters in (16, 32, 64):  # 32, 64, 128 in the lab
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                   keras.layers.MaxPooling2D(padding="same"),
                   keras.layers.Dropout(conv_dropout)]
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(64, activation="relu"),  # 625 in the lab
               keras.layers.Dropout(0.5),
               keras.layers.Dense(CLASSES)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], one_hot[:N_TRAIN], 10, 64,  # 320 steps
                 validation_data=(x[N_TRAIN:], one_hot[N_TRAIN:]))


# --- keras issue 510: an MLP on raw features under SGD with Nesterov momentum -------------


def _table_setup(standardize):
    x, y = _sensor_table()
    if standardize:
        mean, std = x[:N_TRAIN].mean(axis=0), x[:N_TRAIN].std(axis=0)
        x = (x - mean) / std
    one_hot = np.eye(TABLE_CLASSES, dtype=np.float32)[y]
    model = keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(TABLE_CLASSES, activation="softmax"),
    ])
    # SGD(lr=0.01, decay=1e-6, momentum=0.9, nesterov=True) as in the issue; Keras 3 has no
    # ``decay`` argument, and 1e-6 per step changes the rate by under 0.1% in this run.
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
                  metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], one_hot[:N_TRAIN], 8, 32,  # 512 steps
                 validation_data=(x[N_TRAIN:], one_hot[N_TRAIN:]))


# --- healthy twins (the confirmed fixes) ---------------------------------------------


@case(family="more_bugs", part="test", batch=2, report=PACKT_1)
def mb_packt_mlp_scaled():
    """Fix: the book's chapter 2 MLP with the pixels divided by 255 before training.

    Source: PacktPublishing/What-s-New-in-TensorFlow-2.0 issue 1, "Ch2 end-to-end example
    does not improve in accuracy" (the asker: "For accuracy to improve the values in
    x_train and x_test need to be divided by 255", and "scaling the values fixes it
    entirely", https://github.com/PacktPublishing/What-s-New-in-TensorFlow-2.0/issues/1).
    """
    return _packt_setup(1.0 / 255.0)


@case(family="more_bugs", part="test", batch=2, report=LOGO_7)
def mb_logo_mask_sigmoid():
    """Fix: the one-shot logo segmentation network ending in one sigmoid channel, binary cross-entropy.

    Source: AyanKumarBhunia/Deep-One-Shot-Logo-Retrieval issue 7, "Why softmax for binary
    cross entropy loss" (the maintainer: "You need to use sigmoid instead of softmax";
    the asker: with sigmoid the validation accuracy reaches 98%,
    https://github.com/AyanKumarBhunia/Deep-One-Shot-Logo-Retrieval/issues/7).
    """
    return _logo_setup("sigmoid")


@case(family="more_bugs", part="test", batch=2, report=HUNKIM_204)
def mb_lab_cnn_dropout_rate_03():
    """Fix: the lab's CNN with tf.layers.dropout(rate=0.3) after each conv block (keep 70%), as the PRs set it.

    Source: hunkim/DeepLearningZeroToAll issue 204, "tf.layers.dropout()'s rate is not
    keep_prob" (the rate of 0.7 meant as a keep probability should be 0.3; fixed in the
    repository by pull requests 205 and 206, https://github.com/hunkim/DeepLearningZeroToAll/issues/204).
    """
    return _lab_cnn_setup(0.3)


@case(family="more_bugs", part="test", batch=2, report=KERAS_510)
def mb_table_mlp_standardized():
    """Fix: the same MLP and optimizer on features standardised to mean 0 and variance 1 per column.

    Source: keras-team/keras issue 510, "How to set clipnorm?" (fchollet: "pre-process your
    data by making sure each dimension has 0 mean and unit variance ... A simple MLP will
    never cause gradient explosion if your data is correctly preprocessed",
    https://github.com/keras-team/keras/issues/510).
    """
    return _table_setup(standardize=True)


# --- faults ------------------------------------------------------------------------


@case(family="more_bugs", part="test", batch=2, twin="mb_packt_mlp_scaled", expect=("unscaled-inputs", "dead-network"),
      report=PACKT_1)
def mb_packt_mlp_raw_pixels():
    """Flatten -> Dense(100, relu) x2 -> Dense(10, softmax) under plain SGD on raw 0-255 pixels.

    The first layer's pre-activations are ~255 times the scaled model's; the first
    updates are as large and push every ReLU of both hidden layers below zero for
    every image (the first epoch's loss averages ~2e6). From then on only the output
    bias gets a gradient: the loss sits at ln 10 and the accuracy at chance, as the
    asker's log shows (loss 2.30, accuracy 0.11).

    Source: PacktPublishing/What-s-New-in-TensorFlow-2.0 issue 1, "Ch2 end-to-end example
    does not improve in accuracy" (Chapter02/end_to_end_sequential.py: MNIST converted
    to float tensors without scaling, one-hot labels, categorical cross-entropy,
    SGD(learning_rate=0.0005), https://github.com/PacktPublishing/What-s-New-in-TensorFlow-2.0/issues/1).
    """
    return _packt_setup(1.0)


@case(family="more_bugs", part="test", batch=2, twin="mb_logo_mask_sigmoid",
      expect=("single-unit-softmax",), report=LOGO_7)
def mb_logo_mask_softmax():
    """The logo segmentation network ending in a softmax over its one output channel, binary cross-entropy.

    A softmax over a single channel is 1 at every pixel whatever the network computes,
    so the predicted mask is all ones: pixel accuracy and IoU stay at the logo's share
    of the image (1/16). In the asker's TensorFlow 1 graph no weight got a gradient. In
    Keras 3 (TensorFlow backend) the binary cross-entropy finds the pre-softmax logits
    the activation cached on its output and computes the loss from them as if the
    activation were a sigmoid, so the loss and the gradients are exactly the twin's
    while every prediction the model makes is 1: the training curves look healthy,
    the model is useless.

    Source: AyanKumarBhunia/Deep-One-Shot-Logo-Retrieval issue 7, "Why softmax for binary
    cross entropy loss" (the paper's softmax output layer with a binary cross-entropy
    over a (batch, H, W, 1) mask; "Having softmax as the final layer does not show any
    good results", https://github.com/AyanKumarBhunia/Deep-One-Shot-Logo-Retrieval/issues/7).
    """
    return _logo_setup("softmax")


@case(family="more_bugs", part="test", batch=2, twin="mb_lab_cnn_dropout_rate_03", expect=("excessive-dropout",),
      report=HUNKIM_204)
def mb_lab_cnn_dropout_rate_07():
    """The lab's CNN with tf.layers.dropout(rate=0.7) after each conv block: a keep probability passed as a rate.

    Seventy per cent of every conv block's outputs are dropped at each step on top of
    the dense layer's 50%, so the training signal reaching the filters is thin and
    noisy and the network trains far behind its twin.

    Source: hunkim/DeepLearningZeroToAll issue 204, "tf.layers.dropout()'s rate is not
    keep_prob" (lab-11-4-mnist_cnn_layers.py passed rate=0.7, meant as keep_prob;
    in issue 122 a tester: with a keep probability of 0.3 "too many nodes will be
    dropped and the performance will be quite bad",
    https://github.com/hunkim/DeepLearningZeroToAll/issues/204).
    """
    return _lab_cnn_setup(0.7)


@case(family="more_bugs", part="test", batch=2, twin="mb_table_mlp_standardized",
      expect=("unscaled-inputs", "dead-network"), report=KERAS_510)
def mb_table_mlp_raw_features():
    """An MLP on raw-unit features (up to ~10^4) under SGD(0.01, momentum 0.9, Nesterov): the loss blows up.

    The first layer's pre-activations are in the thousands, so are the first
    gradients; with momentum the weights overshoot and the first epoch's loss averages
    ~1e12. The asker's loss went NaN; Keras 3's cross-entropy clips the probabilities,
    so here the blow-up instead leaves every hidden ReLU dead: from the second epoch
    only the output bias learns and the loss sits at ln 3.

    Source: keras-team/keras issue 510, "How to set clipnorm?" (a simple MLP under
    SGD(lr=0.01, decay=1e-6, momentum=0.9, nesterov=True) whose loss went NaN unless
    the gradients were clipped; the cause was the unstandardised data,
    https://github.com/keras-team/keras/issues/510).
    """
    return _table_setup(standardize=False)

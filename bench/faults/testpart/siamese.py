"""Siamese networks: one shared encoder reads both inputs of a pair, and the head says whether they match.

The task: 8x8 grey glyphs of 10 classes (a fixed random stroke pattern per class,
drawn in the inner 6x6 with the border always black, jittered and noisy), flattened
to 64 pixels in [0, 1], as the Keras ``mnist_siamese`` example reads MNIST. A pair
is labelled 1 when both glyphs come from the same class, 0 otherwise, half and
half; 3% of the positive pairs show one glyph twice (pair generators that draw an
index with replacement make such pairs). 2048 training pairs, 512 held out.

The distance models put a Euclidean distance (a ``Lambda`` layer) on the two
embeddings and call a pair a match when the distance is under 0.5 (the example's
``compute_accuracy``); the similarity model learns a sigmoid score on |a - b|.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, SIZE, CLASSES = 2048, 512, 8, 10
PIXELS = SIZE * SIZE
EPOCHS, BATCH = 6, 32  # 384 steps


@functools.cache
def _glyphs():
    """Glyph images (N, 64) in [0, 1] and their classes; the border pixels are 0 in every image."""
    rng = np.random.default_rng(41)
    prototypes = (rng.uniform(size=(CLASSES, SIZE - 2, SIZE - 2)) < 0.4).astype(np.float32)
    n = 3000
    labels = rng.integers(0, CLASSES, size=n)
    images = np.zeros((n, SIZE, SIZE), np.float32)
    for i, label in enumerate(labels):
        glyph = prototypes[label] * rng.uniform(0.6, 1.0)
        glyph = glyph + 0.25 * rng.normal(size=glyph.shape) * (rng.uniform(size=glyph.shape) < 0.3)
        images[i, 1:-1, 1:-1] = np.clip(glyph, 0.0, 1.0)
    return images.reshape(n, PIXELS), labels


@functools.cache
def _pairs():
    """(left, right, same) for N_TRAIN + N_VALID pairs, half positive, 3% of the positives self-pairs."""
    images, labels = _glyphs()
    rng = np.random.default_rng(42)
    by_class = [np.flatnonzero(labels == c) for c in range(CLASSES)]
    n = N_TRAIN + N_VALID
    left, right = np.zeros(n, np.int64), np.zeros(n, np.int64)
    same = (np.arange(n) % 2 == 0).astype(np.float32)
    for i in range(n):
        c = rng.integers(CLASSES)
        left[i] = rng.choice(by_class[c])
        if same[i]:
            right[i] = left[i] if rng.uniform() < 0.03 else rng.choice(by_class[c])
        else:
            other = (c + rng.integers(1, CLASSES)) % CLASSES
            right[i] = rng.choice(by_class[other])
    order = rng.permutation(n)
    return left[order], right[order], same[order]


def _inputs(transform=None):
    """Training and validation ([left, right], same) with an optional preprocessing of the pixels."""
    images, _ = _glyphs()
    if transform is not None:
        images = transform(images)
    left, right, same = _pairs()
    a, b, y = images[left], images[right], same[:, None]
    train = ([a[:N_TRAIN], b[:N_TRAIN]], y[:N_TRAIN])
    valid = ([a[N_TRAIN:], b[N_TRAIN:]], y[N_TRAIN:])
    return train, valid


def _encoder(dropout=0.1):
    """The shared base network of the Keras ``mnist_siamese`` example, narrower (Dropout optional)."""
    inputs = keras.Input((PIXELS,))
    h = keras.layers.Dense(64, activation="relu")(inputs)
    if dropout:
        h = keras.layers.Dropout(dropout)(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    if dropout:
        h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, keras.layers.Dense(32, activation="relu")(h), name="encoder")


def euclidean_distance(vectors):
    """The example's distance: the square root kept off zero, whose derivative is infinite there."""
    a, b = vectors
    squares = keras.ops.sum(keras.ops.square(a - b), axis=1, keepdims=True)
    return keras.ops.sqrt(keras.ops.maximum(squares, keras.config.epsilon()))


def raw_euclidean_distance(vectors):
    """The distance as first written: sqrt of the sum of squares, with nothing keeping it off zero."""
    a, b = vectors
    return keras.ops.sqrt(keras.ops.sum(keras.ops.square(a - b), axis=1, keepdims=True))


def contrastive_loss(y_true, y_pred, margin=1.0):
    """Hadsell et al.'s contrastive loss with 1 = similar: pull matches together, push others past the margin."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    return keras.ops.mean(y_true * keras.ops.square(y_pred)
                          + (1.0 - y_true) * keras.ops.square(keras.ops.maximum(margin - y_pred, 0.0)))


def distance_accuracy(y_true, y_pred):
    """The example's accuracy: a pair is called a match when its distance is under 0.5."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    return keras.ops.mean(keras.ops.cast(keras.ops.equal(y_true, keras.ops.cast(y_pred < 0.5, y_pred.dtype)),
                                         y_pred.dtype))


def _distance_model(distance=euclidean_distance, dropout=0.1):
    left, right = keras.Input((PIXELS,), name="left"), keras.Input((PIXELS,), name="right")
    encoder = _encoder(dropout)
    d = keras.layers.Lambda(distance, name="distance")([encoder(left), encoder(right)])
    return keras.Model([left, right], d)


def _distance_head_model(distance=euclidean_distance):
    """The Keras contrastive example's network: a Euclidean distance into Dense(1, sigmoid); no Dropout."""
    left, right = keras.Input((PIXELS,), name="left"), keras.Input((PIXELS,), name="right")
    encoder = _encoder(dropout=0.0)
    d = keras.layers.Lambda(distance, name="distance")([encoder(left), encoder(right)])
    return keras.Model([left, right], keras.layers.Dense(1, activation="sigmoid")(d))


def _similarity_model():
    """Shared encoder, |a - b|, then a learned sigmoid score (the Koch et al. one-shot head)."""
    left, right = keras.Input((PIXELS,), name="left"), keras.Input((PIXELS,), name="right")
    encoder = _encoder()
    diff = keras.layers.Subtract()([encoder(left), encoder(right)])
    diff = keras.layers.Lambda(keras.ops.abs, name="abs_diff")(diff)
    return keras.Model([left, right], keras.layers.Dense(1, activation="sigmoid")(diff))


def _setup(model, loss, optimizer, metric=distance_accuracy, transform=None):
    train, valid = _inputs(transform)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    return Setup(model, train[0], train[1], EPOCHS, BATCH, validation_data=valid)


def _standardise(images):
    """Per-pixel zero mean and unit variance, as the reporter preprocessed MNIST."""
    return (images - images.mean(axis=0)) / images.std(axis=0)


def _centre(images):
    """Per-pixel zero mean only (no division by a standard deviation that is zero on the border)."""
    return images - images.mean(axis=0)


# --- healthy controls -------------------------------------------------------------


@case(family="siamese", part="test")
def siamese_contrastive_healthy():
    """Healthy: shared encoder, Euclidean distance (kept off zero), contrastive loss, RMSprop.

    Source: the Keras example "Image similarity estimation using a Siamese Network
    with a contrastive loss" (https://keras.io/examples/vision/siamese_contrastive/),
    the loss and distance of keras/examples/mnist_siamese.py, here on the distance
    itself as the 2.x example did.
    """
    return _setup(_distance_model(), contrastive_loss, keras.optimizers.RMSprop(1e-3))


@case(family="siamese", part="test")
def siamese_similarity_bce_healthy():
    """Healthy: shared encoder, a sigmoid of a learned similarity on |a - b|, binary cross-entropy, Adam.

    Source: Koch, Zemel and Salakhutdinov, "Siamese Neural Networks for One-shot Image
    Recognition" (weighted L1 distance into a sigmoid,
    https://www.cs.cmu.edu/~rsalakhu/papers/oneshot1.pdf), as in the Keras example
    "Image similarity estimation using a Siamese Network with a triplet loss"'s
    references (https://keras.io/examples/vision/siamese_network/).
    """
    return _setup(_similarity_model(), "binary_crossentropy", keras.optimizers.Adam(1e-3), metric="accuracy")


@case(family="siamese", part="test", report="https://github.com/keras-team/keras/issues/9097")
def siamese_sqrt_epsilon_healthy():
    """Healthy (the fix of keras issue 9097): the distance's square root kept off zero, self-pairs harmless.

    The network of the faulty port (no Dropout, so a glyph paired with itself gets two
    identical embeddings; the distance into a sigmoid unit, binary cross-entropy), with
    ``sqrt(maximum(sum_sq, epsilon))`` as the merged example has it (keras-team/keras
    pull request 6223).

    Source: keras-team/keras issue 9097 "NaN loss when using euclidean distance for
    siamese network (due to K.sqrt)" (https://github.com/keras-team/keras/issues/9097),
    on the head of the Keras siamese contrastive example
    (https://keras.io/examples/vision/siamese_contrastive/).
    """
    return _setup(_distance_head_model(euclidean_distance), "binary_crossentropy", keras.optimizers.RMSprop(1e-3),
                  metric="accuracy")


@case(family="siamese", part="test", report="https://github.com/keras-team/keras/issues/2001")
def siamese_centred_inputs_healthy():
    """Healthy (the fix of keras issue 2001): pixels centred per column, not divided by their std.

    Source: keras-team/keras issue 2001 "Train mnist_siamese_graph.py with
    train_on_batch returns nan loss" (subtracting the mean alone trains; dividing by
    the std gives NaN, https://github.com/keras-team/keras/issues/2001).
    """
    return _setup(_distance_model(), contrastive_loss, keras.optimizers.RMSprop(1e-3), transform=_centre)


# --- faults ------------------------------------------------------------------------


@case(family="siamese", part="test", twin="siamese_contrastive_healthy", expect=("relu-output-crossentropy",))
def siamese_bce_on_distance():
    """Binary cross-entropy on the raw Euclidean distance of a Lambda layer: a distance is not a probability.

    With 1 = similar, the loss asks matching pairs for a distance near 1 and other
    pairs for a distance near 0, clipped where the distance passes 1; no embedding can
    put every non-matching pair on one point while keeping matches apart, so the
    pairs stay unseparated.

    Source: keras-team/keras issue 1866 "Error in Contrastive loss function for the
    Siamese example" (Keras' own accuracy reads the distance output as if 1 meant
    similar, while a small distance does, https://github.com/keras-team/keras/issues/1866);
    the distance head of the Keras siamese examples compiled with "binary_crossentropy".
    """
    return _setup(_distance_model(), "binary_crossentropy", keras.optimizers.RMSprop(1e-3))


@case(family="siamese", part="test", twin="siamese_contrastive_healthy", expect=("huge-steps",))
def siamese_rmsprop_lr_huge():
    """The contrastive model under RMSprop at learning rate 1.0, 1000 times the default.

    Every step moves each weight by about the learning rate; the embeddings jump
    around and the distance accuracy stays near chance.

    Source: the Keras siamese contrastive example
    (https://keras.io/examples/vision/siamese_contrastive/) with the learning rate
    raised, as in "Why is learning rate causing my neural network's weights to
    skyrocket?" (https://datascience.stackexchange.com/questions/15962).
    """
    return _setup(_distance_model(), contrastive_loss, keras.optimizers.RMSprop(1.0))


@case(family="siamese", part="test", twin="siamese_sqrt_epsilon_healthy", expect=("unexplained",),
      report="https://github.com/keras-team/keras/issues/9097")
def siamese_sqrt_nan():
    """A port of keras issue 9097: sqrt of the squared distance with no epsilon, and pairs of one glyph twice.

    The encoder has no Dropout, so on a self-pair the distance is exactly 0, where the
    derivative of the square root is infinite; the sigmoid head passes back a nonzero
    gradient, and infinity times the zero derivative of the squared difference is NaN:
    the first batch holding such a pair turns every encoder weight NaN. The model then
    answers one constant for every pair (in the compiled step on this CPU build the
    fused Dense+ReLU kernel maps NaN to 0; run eagerly the loss reads NaN) and its
    accuracy sits at chance. No
    finding names a non-differentiable point in a user's distance function.

    Source: keras-team/keras issue 9097 "NaN loss when using euclidean distance for
    siamese network (due to K.sqrt)" (nan loss when two inputs are the same; a small
    constant under the root fixes it, https://github.com/keras-team/keras/issues/9097).
    """
    return _setup(_distance_head_model(raw_euclidean_distance), "binary_crossentropy",
                  keras.optimizers.RMSprop(1e-3), metric="accuracy")


@case(family="siamese", part="test", twin="siamese_centred_inputs_healthy", expect=("unexplained",),
      report="https://github.com/keras-team/keras/issues/2001")
def siamese_std_zero_inputs():
    """A port of keras issue 2001: pixels standardised per column, and the border's std is zero.

    The border pixels are 0 in every glyph, so their column has std 0 and 0 / 0 puts
    NaN into every input vector (training and validation alike). The first step turns
    the first layer's weights on those pixels NaN; the embeddings then no longer depend
    on the input (in the compiled step on this CPU build NaN comes out of the fused
    Dense+ReLU kernel as 0; run eagerly the loss reads NaN) and the loss stays flat at
    its value for one constant distance. No finding names non-finite inputs.

    Source: keras-team/keras issue 2001 "Train mnist_siamese_graph.py with
    train_on_batch returns nan loss" (the loss is NaN when the data is preprocessed to
    zero mean and unit variance; dividing by the std produces it,
    https://github.com/keras-team/keras/issues/2001).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return _setup(_distance_model(), contrastive_loss, keras.optimizers.RMSprop(1e-3), transform=_standardise)

"""Real reported bugs of small image classifiers that would not converge, each beside its confirmed fix.

Each case ports one report (its model, loss, optimizer and bug, at small scale, on
synthetic numpy images of the same structure); its healthy twin is the fix the
answer, the maintainers or the asker confirmed. The images: 10 classes, each a fixed
pattern of three blurred blobs (two of them shared by all classes), drawn shifted by
up to 2 pixels, with random contrast and noise, stored as 0-255 pixel values like the
datasets the posts load (28x28 grey, as Fashion-MNIST). 2048 training images, 512
held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, CLASSES = 2048, 512, 10
FASHION_REPORT = ("https://datascience.stackexchange.com/questions/39929/"
                  "why-normalize-when-all-features-are-on-the-same-scale")


@functools.cache
def _images(size, channels, seed):
    """Uint8-valued float32 images (N, size, size, channels) and integer labels."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)

    def blob():
        cy, cx = rng.uniform(2, size - 2, 2)
        width = rng.uniform(1.0, size / 5)
        bump = np.exp(-((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2) / (2 * width ** 2))
        return bump[:, :, None] * rng.uniform(0.3, 1.0, channels)

    common = blob() + blob()  # two blobs every class shares, one its own
    protos = np.stack([common + blob() for _ in range(CLASSES)])
    protos /= protos.max(axis=(1, 2, 3), keepdims=True)
    n = N_TRAIN + N_VALID
    labels = rng.integers(0, CLASSES, n)
    images = np.empty((n, size, size, channels))
    for i, k in enumerate(labels):
        shifted = np.roll(protos[k], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        images[i] = shifted * rng.uniform(0.6, 1.0) + 0.3 * rng.normal(size=shifted.shape)
    pixels = np.clip(np.round(images * 255), 0, 255).astype(np.float32)
    return pixels, labels.astype(np.int32)


def _split(x, y):
    return x[:N_TRAIN], y[:N_TRAIN], (x[N_TRAIN:], y[N_TRAIN:])


# --- Fashion-MNIST tutorial without the /255 ------------------------------------------


def _fashion_setup(scale):
    x, y = _images(28, 1, 81)
    x = x[..., 0] * np.float32(scale)
    model = keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xt, yt, valid = _split(x, y)
    return Setup(model, xt, yt, 5, 32, validation_data=valid)  # 320 steps


@case(family="image_bugs", part="test", report=FASHION_REPORT)
def img_fashion_scaled():
    """Fix: the TensorFlow basic-classification model with pixels divided by 255, as the tutorial does.

    Source: "Why normalize when all features are on the same scale?" (Data Science Stack
    Exchange 39929; the asker: with the division by 255 over 85% accuracy, without it
    10%; the answers: unit-range inputs keep activations and steps in range,
    https://datascience.stackexchange.com/questions/39929/why-normalize-when-all-features-are-on-the-same-scale).
    """
    return _fashion_setup(1.0 / 255.0)


@case(family="image_bugs", part="test", twin="img_fashion_scaled", expect=("unscaled-inputs",),
      report=FASHION_REPORT)
def img_fashion_raw_pixels():
    """Flatten -> Dense(128, relu) -> Dense(10, softmax) with Adam on raw 0-255 pixels.

    The first layer's pre-activations are ~255 times the tutorial's and the first
    logits in the hundreds (a first-epoch loss of ~44 nats): Adam's early steps thrash
    and the accuracy ends far below the twin's (~0.3 against ~0.75, chance 0.1).

    Source: "Why normalize when all features are on the same scale?" (Data Science Stack
    Exchange 39929, the TensorFlow "Basic classification" tutorial run without its
    division by 255,
    https://datascience.stackexchange.com/questions/39929/why-normalize-when-all-features-are-on-the-same-scale).
    """
    return _fashion_setup(1.0)

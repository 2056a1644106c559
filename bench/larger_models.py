"""Two models of the size people train on a CPU for minutes, for bench/overhead_keras.py (``--models tfm_base
conv_base``): where the fault suite's models take 1-5 ms a step, these take tens of milliseconds, and what a
Monitor does once a row or once a fit weighs accordingly less.

- ``tfm_base``: the keras-io "Text classification with Transformer" classifier (the fault suite's
  ``tfm_healthy``) at the size of that example: embeddings of 32, two heads, a feed-forward of 32, 200
  tokens from a vocabulary of 20,000, batches of 32. Synthetic tokens; the label says whether tokens
  1-100 outnumber tokens 101-200.
- ``conv_base``: a CIFAR-sized convnet (32x32x3 images, ten classes): three stages of two 3x3 convolutions
  with BatchNormalization (16, 32, 64 filters), max pooling between them, global average pooling, Dropout
  and a softmax, Adam, batches of 32. Synthetic images whose class sets one channel's mean.

Each is built from a fixed seed and trained 300 steps a fit (rows of 20 steps), no validation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from bench.faults import Setup
from bench.faults.transformer import TokenAndPositionEmbedding, TransformerBlock

__all__ = ["LARGER"]

STEPS = 300


@dataclass(frozen=True)
class Larger:
    """What bench/overhead_keras.py reads of a case: its name and a build giving a :class:`Setup`."""

    name: str
    build: Callable[[], Setup]


@functools.cache
def _tokens(n: int = 2400, maxlen: int = 200, vocab: int = 20000):
    rng = np.random.default_rng(7)
    x = rng.integers(1, vocab, size=(n, maxlen)).astype(np.int32)
    y = (np.sum(x <= 100, axis=1) > np.sum((x > 100) & (x <= 200), axis=1)).astype(np.int32)
    return x, y


def _tfm_base() -> Setup:
    x, y = _tokens()
    inputs = keras.Input(shape=(x.shape[1],))
    h = TokenAndPositionEmbedding(x.shape[1], 20000, 32, keras.initializers.RandomUniform(-0.05, 0.05))(inputs)
    h = TransformerBlock(32, 2, 32)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dropout(0.1)(h)
    h = keras.layers.Dense(20, activation="relu")(h)
    h = keras.layers.Dropout(0.1)(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x, y, STEPS * 32 // len(x), 32)


@functools.cache
def _images(n: int = 1600):
    rng = np.random.default_rng(8)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    x = rng.normal(0.0, 1.0, size=(n, 32, 32, 3)).astype(np.float32)
    x[np.arange(n), :, :, y % 3] += 0.1 * (y[:, None, None] + 1)  # (the class moves one channel's mean)
    return x, y


def _conv_base() -> Setup:
    x, y = _images()
    inputs = keras.Input((32, 32, 3))
    h = inputs
    for stage, filters in enumerate((16, 32, 64)):
        if stage:
            h = keras.layers.MaxPooling2D()(h)
        for _ in range(2):
            h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.2)(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Setup(model, x, y, STEPS * 32 // len(x), 32)


LARGER = {case.name: case for case in (Larger("tfm_base", _tfm_base), Larger("conv_base", _conv_base))}

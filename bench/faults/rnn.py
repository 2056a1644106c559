"""Recurrent models: a character LSTM, a character SimpleRNN, and a GRU over padded token sequences.

Two tasks. Characters: text drawn from a tiny grammar of 14 words, cut into windows
of 12 characters; the target is the next character (within a word it is nearly
certain, at word boundaries it is not). Tokens: sequences of 5-15 "words" from a
vocabulary of 40 (ids 1-10 positive, 11-20 negative, the rest neutral), padded with 0
after the end to 40 steps; the label says whether positives outnumber negatives.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

MAXLEN, N_WINDOWS, N_VALID = 12, 4096, 512
WORDS = ("the", "cat", "dog", "sat", "ran", "on", "in", "a", "mat", "hat", "big", "red", "and", "saw")
SEQ_LEN, VOCAB, N_SEQ, N_SEQ_VALID = 40, 40, 2048, 512
EPOCHS, BATCH = 5, 64  # 320 steps on characters, 160 on tokens


@functools.cache
def _chars():
    """One-hot windows (N, 12, V), one-hot next characters (N, V), and the alphabet size."""
    rng = np.random.default_rng(41)
    text = []
    for _ in range(6000):
        subject, verb, obj = rng.choice(WORDS[:3]), rng.choice(WORDS[3:5] + WORDS[13:]), rng.choice(WORDS[8:12])
        text.append(f"{subject} {verb} {rng.choice(WORDS[5:8])} {obj}. ")
    text = "".join(text)
    alphabet = sorted(set(text))
    ids = np.array([alphabet.index(c) for c in text], dtype=np.int32)
    starts = rng.choice(len(ids) - MAXLEN - 1, size=N_WINDOWS + N_VALID, replace=False)
    windows = ids[starts[:, None] + np.arange(MAXLEN)]
    eye = np.eye(len(alphabet), dtype=np.float32)
    return eye[windows], eye[ids[starts + MAXLEN]], len(alphabet)


@functools.cache
def _tokens():
    """Post-padded token ids (N, 40), binary labels (N,) and per-example weights."""
    rng = np.random.default_rng(43)
    n = N_SEQ + N_SEQ_VALID
    x = np.zeros((n, SEQ_LEN), dtype=np.int32)
    y = np.zeros(n, dtype=np.float32)
    for i in range(n):
        length = rng.integers(5, 16)
        tokens = rng.integers(1, VOCAB, size=length)
        x[i, :length] = tokens
        positives, negatives = np.sum(tokens <= 10), np.sum((tokens > 10) & (tokens <= 20))
        y[i] = float(positives > negatives) if positives != negatives else float(rng.integers(0, 2))
    weights = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    return x, y, weights


def _char_setup(model, optimizer):
    x, y, _ = _chars()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x[:N_WINDOWS], y[:N_WINDOWS], EPOCHS, BATCH, validation_data=(x[N_WINDOWS:], y[N_WINDOWS:]))


def _simple_rnn(alphabet):
    """A tanh SimpleRNN with Keras' default initialisers (orthogonal recurrence)."""
    return keras.Sequential([keras.Input((MAXLEN, alphabet)), keras.layers.SimpleRNN(64),
                             keras.layers.Dense(alphabet, activation="softmax")])


def _token_setup(mask_zero):
    x, y, w = _tokens()
    inputs = keras.Input((SEQ_LEN,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 16, mask_zero=mask_zero)(inputs)
    h = keras.layers.GRU(32)(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return Setup(model, x[:N_SEQ], y[:N_SEQ], EPOCHS, BATCH, validation_data=(x[N_SEQ:], y[N_SEQ:]),
                 sample_weight=w[:N_SEQ])


# --- healthy controls -------------------------------------------------------------


@case(family="rnn")
def rnn_char_lstm_healthy():
    """Healthy: the keras-io character LSTM (one-hot windows, LSTM, softmax, RMSprop(0.01)).

    Source: "Character-level text generation with LSTM"
    (https://keras.io/examples/generative/lstm_character_level_text_generation/), on a
    toy grammar instead of Nietzsche.
    """
    _, _, alphabet = _chars()
    model = keras.Sequential([keras.Input((MAXLEN, alphabet)), keras.layers.LSTM(64),
                              keras.layers.Dense(alphabet, activation="softmax")])
    return _char_setup(model, keras.optimizers.RMSprop(0.01))


@case(family="rnn")
def rnn_simple_clipped_healthy():
    """Healthy: a tanh SimpleRNN trained with SGD(0.2, momentum=0.9) and gradients clipped to norm 1.

    Source: Pascanu, Mikolov and Bengio, "On the difficulty of training recurrent neural
    networks" (arXiv 1211.5063: clip the gradient norm), as Keras exposes it with
    ``clipnorm`` (https://keras.io/api/optimizers/).
    """
    _, _, alphabet = _chars()
    return _char_setup(_simple_rnn(alphabet), keras.optimizers.SGD(0.2, momentum=0.9, clipnorm=1.0))


@case(family="rnn")
def rnn_gru_masked_healthy():
    """Healthy: Embedding(mask_zero=True) + GRU over post-padded sequences, logits, sample weights.

    Source: the Keras guide "Understanding masking & padding"
    (https://keras.io/guides/understanding_masking_and_padding/).
    """
    return _token_setup(mask_zero=True)


# --- faults ------------------------------------------------------------------------


@case(family="rnn", twin="rnn_simple_clipped_healthy", expect=("huge-steps",))
def rnn_simple_unclipped():
    """The same SimpleRNN without gradient clipping: steps through the recurrence overshoot.

    At this learning rate the clipped twin trains to 84% next-character accuracy; without
    the clip the recurrent weights grow tenfold and the loss climbs far above a uniform
    guess over the alphabet. (The gradient norm itself grows only a few times, not by the
    orders of magnitude that make exploding gradients: the clip bounds the step, which
    is what the unclipped run lacks.)

    Source: Jason Brownlee, "How to Avoid Exploding Gradients With Gradient Clipping"
    ("more common with recurrent neural networks", fixed by clipnorm,
    https://machinelearningmastery.com/how-to-avoid-exploding-gradients-in-neural-networks-with-gradient-clipping/).
    """
    _, _, alphabet = _chars()
    return _char_setup(_simple_rnn(alphabet), keras.optimizers.SGD(0.2, momentum=0.9))


@case(family="rnn", twin="rnn_gru_masked_healthy", expect=("unmasked-padding", "ignores-input"))
def rnn_gru_unmasked():
    """The GRU without mask_zero: 25-35 padding steps after each sequence wash its content out of the state.

    Source: keras-team/keras-io issue 2044, "Can't reproduce 'Text classification from
    scratch' example with LSTM" (fixed by mask_zero=True,
    https://github.com/keras-team/keras-io/issues/2044).
    """
    return _token_setup(mask_zero=False)

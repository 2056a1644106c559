"""Real reported bugs of sequence models that would not converge, each beside its confirmed fix.

Each case ports one report (its model, loss, optimizer and bug, at small scale, on
synthetic numpy sequences of the same structure); its healthy twin is the fix the
answer, the maintainers or the asker confirmed. The data: windows of 5 steps of 10
label-encoded categorical features (small integers) with a binary label (does the
first feature add up to more than the second over the window?); and word sequences
from a fixed random Markov chain over 20 words (each word followed by one of 3
likely successors), 3 words in, the next 3 out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID = 2048, 512
STEPS, FEATURES, LEVELS = 5, 10, 4
VOCAB, NUM_STEPS, SUCCESSORS = 20, 3, 3
CCE_REPORT = ("https://stats.stackexchange.com/questions/565956/"
              "confused-with-binary-cross-entropy-vs-categorical-cross-entropy")
LM_REPORT = "https://github.com/rajveermalviya/language-modeling/issues/3"


@functools.cache
def _windows():
    rng = np.random.default_rng(91)
    x = rng.integers(0, LEVELS, size=(N_TRAIN + N_VALID, STEPS, FEATURES))
    y = (x[:, :, 0].sum(axis=1) > x[:, :, 1].sum(axis=1)).astype(np.float32)[:, None]
    return x.astype(np.float32), y


def _lstm_classifier(loss):
    x, y = _windows()
    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.LSTM(64, recurrent_activation="hard_sigmoid"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(loss=loss, optimizer="adam", metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], 8, 32, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))  # 512 steps


@functools.cache
def _words():
    rng = np.random.default_rng(92)
    successors = np.stack([rng.choice(VOCAB, SUCCESSORS, replace=False) for _ in range(VOCAB)])
    n = N_TRAIN + N_VALID
    length = n * NUM_STEPS + 1
    text = np.empty(length, dtype=np.int64)
    text[0] = 0
    for t in range(1, length):
        # the likely successors 90% of the time, any word otherwise
        text[t] = successors[text[t - 1], rng.integers(SUCCESSORS)] if rng.random() < 0.9 else rng.integers(VOCAB)
    x = text[:-1].reshape(n, NUM_STEPS)
    y = np.eye(VOCAB, dtype=np.float32)[text[1:].reshape(n, NUM_STEPS)]  # one-hot, as the repository's generator
    return x.astype(np.int32), y


def _language_model(optimizer):
    x, y = _words()
    hidden = 64
    model = keras.Sequential([
        keras.Input((NUM_STEPS,), dtype="int32"),
        keras.layers.Embedding(VOCAB, hidden),
        keras.layers.LSTM(hidden, return_sequences=True),
        keras.layers.LSTM(hidden, return_sequences=True),
        keras.layers.Dropout(0.5),
        keras.layers.TimeDistributed(keras.layers.Dense(VOCAB)),
        keras.layers.Activation("softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["categorical_accuracy"])
    # batch_size 20 and 5 epochs as in the repository's CONFIG.py: 103 steps an epoch.
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], 5, 20, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


# --- healthy twins (the confirmed fixes) ---------------------------------------------


@case(family="sequence_bugs", part="test", report=CCE_REPORT)
def seq_lstm_binary_crossentropy():
    """Fix: the LSTM binary classifier with one sigmoid unit trained with binary cross-entropy.

    Source: "Confused with binary cross entropy vs categorical cross entropy" (Cross
    Validated 565956; the asker: binary cross-entropy reaches 98%; the answer: with one
    output unit only binary cross-entropy is the right loss,
    https://stats.stackexchange.com/questions/565956/confused-with-binary-cross-entropy-vs-categorical-cross-entropy).
    """
    return _lstm_classifier("binary_crossentropy")


@case(family="sequence_bugs", part="test", report=LM_REPORT)
def seq_language_model_adam_default():
    """Fix: the two-layer LSTM word model with Adam at its default learning rate, 0.001.

    Source: rajveermalviya/language-modeling issue 3, "Adam's learning rate" (with the
    default rate instead of 1.0 "the training get much better"; the maintainer updated
    the config, https://github.com/rajveermalviya/language-modeling/issues/3).
    """
    return _language_model(keras.optimizers.Adam())


# --- faults ------------------------------------------------------------------------


@case(family="sequence_bugs", part="test", twin="seq_lstm_binary_crossentropy",
      expect=("loss-target-mismatch", "no-gradient"), report=CCE_REPORT)
def seq_lstm_categorical_crossentropy_one_unit():
    """An LSTM binary classifier with one sigmoid unit trained with categorical cross-entropy.

    Keras' categorical cross-entropy first divides the output by its sum over the
    classes: over one unit that is 1 whatever the model says, so the loss is exactly
    0, no variable receives a gradient, and the model keeps its initial guesses.
    LSTM(256) in the question; 64 units here.

    Source: "Confused with binary cross entropy vs categorical cross entropy" (Cross
    Validated 565956: LSTM with recurrent_activation='hard_sigmoid', Dense(n_outputs=1,
    sigmoid), label-encoded categorical features, 26% accuracy with categorical
    cross-entropy,
    https://stats.stackexchange.com/questions/565956/confused-with-binary-cross-entropy-vs-categorical-cross-entropy).
    """
    return _lstm_classifier("categorical_crossentropy")


@case(family="sequence_bugs", part="test", twin="seq_language_model_adam_default", expect=("huge-steps",),
      report=LM_REPORT)
def seq_language_model_adam_lr_one():
    """Embedding -> LSTM -> LSTM -> Dropout -> TimeDistributed(Dense) -> softmax under Adam(learning_rate=1.0).

    Adam's steps are about its learning rate per weight whatever the gradient: at 1.0
    every weight jumps by about 1 a step, the LSTM gates saturate and the loss never
    goes down to what the chain allows. The repository's keras_model.py at small
    scale (hidden size 64 instead of 200, 20 words, num_steps 3 as in its CONFIG.py).

    Source: rajveermalviya/language-modeling issue 3, "Adam's learning rate" (a learning
    rate of 1.0 in the config file; the loss "didn't really went down even after many
    epochs", https://github.com/rajveermalviya/language-modeling/issues/3).
    """
    return _language_model(keras.optimizers.Adam(learning_rate=1.0))

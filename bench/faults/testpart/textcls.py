"""Text classification from raw strings, with keras.layers.TextVectorization inside the model.

The task: short "news snippets" of 10-24 words in 4 topics. Words come from a made-up
vocabulary (fixed seed): 80 filler words shared by all topics and 10 keywords per
topic. Each word of a snippet is one of its topic's keywords with probability 0.12,
another topic's keyword with probability 0.04, else a filler word, so a topic is read
from a handful of keywords among many fillers. Each snippet also has the name of the
site it came from (8 sites, unrelated to the topic). 2400 snippets for training, 600
held out. The bag-of-embeddings models pad or cut snippets to 24 words and predict
the topic; the LSTM models pad them to 48 words (padding fills 24-38 steps) and
predict whether the topic is one of the last two. Strings go to Keras as tf.string
tensors (Keras 3 will not take numpy string arrays).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from .. import Setup, case

# Why some cases run on Keras' TensorFlow backend only.
RAW_STRINGS = "raw strings into the model: Keras' TextVectorization takes tf.string tensors, on TensorFlow only"

N_TRAIN, N_VALID, TOPICS = 2400, 600, 4
FILLERS, KEYWORDS = 80, 10
SEQ_LEN, MAX_TOKENS, EMBED = 24, 200, 16
EPOCHS, BATCH = 4, 16  # 600 steps
LSTM_SEQ_LEN, LSTM_EPOCHS, LSTM_BATCH = 48, 3, 32  # snippets padded to 48 words, most of it padding; 225 steps

KERAS_IO_2044 = "https://github.com/keras-team/keras-io/issues/2044"


def _words(rng, n):
    """n distinct pronounceable made-up words."""
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    words = set()
    while len(words) < n:
        syllables = rng.integers(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


@functools.cache
def _corpus():
    """Snippets (N,) and sources (N,) as numpy str arrays, topic labels (N,) int32."""
    rng = np.random.default_rng(31)
    words = _words(rng, FILLERS + TOPICS * KEYWORDS)
    rng.shuffle(words)
    fillers = words[:FILLERS]
    keywords = [words[FILLERS + t * KEYWORDS:FILLERS + (t + 1) * KEYWORDS] for t in range(TOPICS)]
    sites = [f"site{name}" for name in ("alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "tango")]
    n = N_TRAIN + N_VALID
    labels = rng.integers(TOPICS, size=n).astype(np.int32)
    texts, sources = [], []
    for label in labels:
        tokens = []
        for _ in range(rng.integers(10, 25)):
            u = rng.random()
            if u < 0.12:
                tokens.append(rng.choice(keywords[label]))
            elif u < 0.16:
                other = (label + rng.integers(1, TOPICS)) % TOPICS
                tokens.append(rng.choice(keywords[other]))
            else:
                tokens.append(rng.choice(fillers))
        texts.append(" ".join(tokens))
        sources.append(rng.choice(sites))
    return np.array(texts), np.array(sources), labels


def _strings(array):
    """A (N, 1) tf.string tensor: the shape of a keras.Input((1,), dtype="string")."""
    return tf.constant(array[:, None])


def _vectorizer(adapt_on=None):
    layer = keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQ_LEN)
    if adapt_on is not None:
        layer.adapt(adapt_on)
    return layer


def _bag_of_embeddings(embeddings_initializer="uniform"):
    """The layers after the vectorizer in the TensorFlow "Word embeddings" tutorial: embed, average, Dense."""
    return [
        keras.layers.Embedding(MAX_TOKENS, EMBED, embeddings_initializer=embeddings_initializer),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(TOPICS, activation="softmax"),
    ]


def _string_setup(vectorizer, layers, epochs=EPOCHS, optimizer=None):
    texts, _, labels = _corpus()
    model = keras.Sequential([keras.Input((1,), dtype="string"), vectorizer, *layers])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Setup(model, _strings(texts[:N_TRAIN]), labels[:N_TRAIN], epochs, BATCH,
                 validation_data=(_strings(texts[N_TRAIN:]), labels[N_TRAIN:]))


def _ids_setup(valid_vectorizer_adapted_on_valid: bool):
    """Token ids made outside the model (a vectorizer called on the strings), an Embedding model on the ids."""
    texts, _, labels = _corpus()
    train_vectorizer = _vectorizer(texts[:N_TRAIN])
    valid_vectorizer = _vectorizer(texts[N_TRAIN:]) if valid_vectorizer_adapted_on_valid else train_vectorizer
    x_train = np.asarray(train_vectorizer(texts[:N_TRAIN]))
    x_valid = np.asarray(valid_vectorizer(texts[N_TRAIN:]))
    model = keras.Sequential([keras.Input((SEQ_LEN,), dtype="int32"), *_bag_of_embeddings()])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x_train, labels[:N_TRAIN], EPOCHS, BATCH, validation_data=(x_valid, labels[N_TRAIN:]))


def _lstm_setup(mask_zero: bool):
    """keras.io "Text classification from scratch" with its Conv1D blocks replaced by an LSTM, scaled down.

    TextVectorization pads every snippet to 48 words, Embedding, Dropout(0.5), LSTM,
    Dense(relu), Dropout(0.5) and one sigmoid, binary cross-entropy, Adam. The binary
    target: whether the snippet's topic is one of the last two.
    """
    texts, _, labels = _corpus()
    binary = (labels >= TOPICS // 2).astype(np.float32)
    vectorizer = keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=LSTM_SEQ_LEN)
    vectorizer.adapt(texts[:N_TRAIN])
    model = keras.Sequential([
        keras.Input((1,), dtype="string"),
        vectorizer,
        keras.layers.Embedding(MAX_TOKENS, EMBED, mask_zero=mask_zero),
        keras.layers.Dropout(0.5),
        keras.layers.LSTM(16),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, _strings(texts[:N_TRAIN]), binary[:N_TRAIN], LSTM_EPOCHS, LSTM_BATCH,
                 validation_data=(_strings(texts[N_TRAIN:]), binary[N_TRAIN:]))


# --- healthy controls -------------------------------------------------------------


@case(family="textcls", part="test", tensorflow_only=RAW_STRINGS)
def tc_bag_healthy():
    """Healthy: TextVectorization adapted on the training strings, Embedding, average pooling, Dense.

    Source: the TensorFlow "Word embeddings" tutorial (TextVectorization adapted on the
    training text, Embedding(vocab, 16), GlobalAveragePooling1D, Dense(16, relu),
    https://www.tensorflow.org/text/guide/word_embeddings), with a 4-topic softmax head.
    """
    texts = _corpus()[0][:N_TRAIN]
    return _string_setup(_vectorizer(texts), _bag_of_embeddings())


@case(family="textcls", part="test", report=KERAS_IO_2044, tensorflow_only=RAW_STRINGS)
def tc_lstm_masked_healthy():
    """Healthy: the "Text classification from scratch" model with an LSTM, its Embedding masking the padding.

    Source: keras-team/keras-io issue 2044 "Can't reproduce 'Text classification from
    scratch' example with LSTM" (the fix confirmed there: ``mask_zero=True`` on the
    Embedding, https://github.com/keras-team/keras-io/issues/2044).
    """
    return _lstm_setup(mask_zero=True)


@case(family="textcls", part="test")
def tc_ids_healthy():
    """Healthy: token ids made outside the model by one vectorizer adapted on the training strings.

    Source: the Keras "Text classification from scratch" example's second option,
    vectorizing the data outside the model with the one adapted layer
    (https://keras.io/examples/nlp/text_classification_from_scratch/).
    """
    return _ids_setup(valid_vectorizer_adapted_on_valid=False)


# --- faults ------------------------------------------------------------------------


@case(family="textcls", part="test", twin="tc_bag_healthy", expect=("unadapted-preprocessing",),
      tensorflow_only=RAW_STRINGS)
def tc_vectorizer_adapted_on_wrong_column():
    """TextVectorization adapted on the snippets' source column: its vocabulary holds none of their words.

    Every word of every snippet maps to [UNK]; the model sees only how long each
    snippet is (the [UNK]s against the padding), which says nothing about its topic.
    In Keras 3 a TextVectorization that was never adapted raises "Table not
    initialized" at the first batch, so this is the form of the fault that trains.

    Source: the Keras "Text classification from scratch" example's
    ``vectorize_layer.adapt(text_ds)`` step (https://keras.io/examples/nlp/text_classification_from_scratch/),
    adapted here on the wrong column of the data.
    """
    sources = _corpus()[1]
    return _string_setup(_vectorizer(sources[:N_TRAIN]), _bag_of_embeddings())


@case(family="textcls", part="test", twin="tc_bag_healthy", expect=("constant-init", "ignores-input"),
      tensorflow_only=RAW_STRINGS)
def tc_embedding_zeros():
    """The Embedding initialised to zeros: the pooled vector and every ReLU of the Dense after it stay at 0.

    A zero embedding averages to zero, the Dense(16, relu) after it sees 0 and outputs
    0 with zero gradient, so neither it nor the embedding ever moves; only the output
    bias learns the topic frequencies.

    Source: tensorflow/tensorflow issue 28487 "Adam not learning when an embedding is
    initialized to zero" (https://github.com/tensorflow/tensorflow/issues/28487), on the
    "Word embeddings" tutorial model.
    """
    texts = _corpus()[0][:N_TRAIN]
    return _string_setup(_vectorizer(texts), _bag_of_embeddings(embeddings_initializer="zeros"))


@case(family="textcls", part="test", twin="tc_bag_healthy", expect=("too-few-steps",), tensorflow_only=RAW_STRINGS)
def tc_bag_one_epoch():
    """The healthy bag-of-embeddings model stopped after 1 epoch of the 4 it needs; the loss still falls steeply.

    Source: the TensorFlow "Basic text classification" tutorial trains its
    average-pooled embedding model for 10 epochs, its loss falling all the way
    (https://www.tensorflow.org/tutorials/keras/text_classification); here one epoch.
    """
    texts = _corpus()[0][:N_TRAIN]
    return _string_setup(_vectorizer(texts), _bag_of_embeddings(), epochs=1)


@case(family="textcls", part="test", twin="tc_ids_healthy", expect=("unexplained",))
def tc_ids_separate_vocabularies():
    """Validation ids from a second vectorizer adapted on the validation strings: the same word, another id.

    Training learns the topic words' ids of the training vocabulary; the validation
    snippets are numbered by a vocabulary ranked on their own word counts, so their
    ids point at other words and validation accuracy stays near chance while the
    training loss falls as in the healthy twin.

    Source: "Why high model accuracy compared to very low validation accuracy?" (Analytics
    Vidhya discussion of a Keras sentiment model; the answer: whatever was fitted on the
    training data must be applied as is to the test data,
    https://discuss.analyticsvidhya.com/t/why-high-model-accuracy-compared-to-very-low-validation-accuracy/65145).
    """
    return _ids_setup(valid_vectorizer_adapted_on_valid=True)


@case(family="textcls", part="test", twin="tc_lstm_masked_healthy", expect=("unmasked-padding", "ignores-input"),
      report=KERAS_IO_2044, tensorflow_only=RAW_STRINGS)
def tc_lstm_unmasked():
    """The same LSTM without mask_zero: it reads 24-38 steps of padding after each snippet and forgets the words.

    The loss sits at ln 2 and validation accuracy at the majority share for every epoch.

    Source: keras-team/keras-io issue 2044 "Can't reproduce 'Text classification from
    scratch' example with LSTM" (the example's model with an LSTM does not learn; an
    Embedding with ``mask_zero=True`` fixes it, https://github.com/keras-team/keras-io/issues/2044).
    """
    return _lstm_setup(mask_zero=False)

"""A Transformer text classifier written as the keras-io example writes it.

``TransformerBlock`` and ``TokenAndPositionEmbedding`` follow "Text classification
with Transformer" (https://keras.io/examples/nlp/text_classification_with_transformer/):
subclassed layers without ``get_config``, a token embedding plus a learned position
embedding added inside one layer. Here the position embedding's initializer is a
constructor argument taking an initializer object, as users add when they tune it.

The task: sequences of 16-32 tokens from a vocabulary of 100, pre-padded with 0 to
32 (``pad_sequences``' default); the label says whether tokens 1-10 outnumber tokens
11-20. 1536 training sequences, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from . import Setup, case

MAXLEN, VOCAB, EMBED, HEADS, FF = 32, 100, 16, 2, 32
N_TRAIN, N_VALID = 1536, 512
EPOCHS, BATCH = 5, 32  # 240 steps


class TransformerBlock(keras.layers.Layer):
    """keras-io's post-norm encoder block: self-attention and a feed-forward net, each with a residual."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)])
        self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = keras.layers.Dropout(rate)
        self.dropout2 = keras.layers.Dropout(rate)

    def call(self, inputs, training=None):
        attn_output = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1), training=training)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(keras.layers.Layer):
    """keras-io's token embedding plus a learned position embedding, summed inside the layer."""

    def __init__(self, maxlen, vocab_size, embed_dim, position_initializer=None):
        super().__init__()
        self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim,
                                              embeddings_initializer=position_initializer or "uniform")

    def call(self, x):
        maxlen = keras.ops.shape(x)[-1]
        positions = self.pos_emb(keras.ops.arange(start=0, stop=maxlen, step=1))
        return self.token_emb(x) + positions


@functools.cache
def _data():
    rng = np.random.default_rng(51)
    n = N_TRAIN + N_VALID
    x = np.zeros((n, MAXLEN), dtype=np.int32)
    y = np.zeros(n, dtype=np.int32)
    for i in range(n):
        length = rng.integers(16, MAXLEN + 1)
        tokens = rng.integers(1, VOCAB, size=length)
        x[i, MAXLEN - length:] = tokens  # pre-padding
        positives, negatives = np.sum(tokens <= 10), np.sum((tokens > 10) & (tokens <= 20))
        y[i] = int(positives > negatives) if positives != negatives else int(rng.integers(0, 2))
    return x, y


def _classifier(position_initializer=None, binary=False):
    inputs = keras.Input(shape=(MAXLEN,))
    h = TokenAndPositionEmbedding(MAXLEN, VOCAB, EMBED, position_initializer)(inputs)
    h = TransformerBlock(EMBED, HEADS, FF)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dropout(0.1)(h)
    h = keras.layers.Dense(20, activation="relu")(h)
    h = keras.layers.Dropout(0.1)(h)
    outputs = keras.layers.Dense(1)(h) if binary else keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model(inputs=inputs, outputs=outputs)


def _setup(model, optimizer, loss="sparse_categorical_crossentropy", shuffle_labels=False, binary=False):
    x, y = _data()
    if shuffle_labels:
        y = np.random.default_rng(5).permutation(y)
    targets = y.astype(np.float32) if binary else y
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], targets[:N_TRAIN], EPOCHS, BATCH,
                 validation_data=(x[N_TRAIN:], targets[N_TRAIN:]))


def _small():
    """The keras-io example's Embedding default, passed as an object. Made per case, after the run's seed
    is set: one made at import takes its seed from the process's random state, so each process would start
    the position table elsewhere (the suite's runs were not repeatable until 2026-12-05)."""
    return keras.initializers.RandomUniform(-0.05, 0.05)


# --- healthy controls -------------------------------------------------------------


@case(family="transformer")
def tfm_healthy():
    """Healthy: the keras-io Transformer classifier (softmax over 2 classes, Adam, integer labels).

    Source: "Text classification with Transformer"
    (https://keras.io/examples/nlp/text_classification_with_transformer/), on synthetic tokens.
    """
    return _setup(_classifier(_small()), "adam")


@case(family="transformer")
def tfm_binary_logits_healthy():
    """Healthy: the same classifier with one logit and BinaryCrossentropy(from_logits=True), labels shaped (N,).

    Source: "Text classification from scratch" (a Dense(1) head with binary
    cross-entropy on (N,) labels, https://keras.io/examples/nlp/text_classification_from_scratch/),
    on the keras-io Transformer.
    """
    return _setup(_classifier(_small(), binary=True), "adam", loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  binary=True)


# --- faults ------------------------------------------------------------------------


@case(family="transformer", twin="tfm_healthy", expect=("temporal-encoding-dominates",))
def tfm_position_drowns_tokens():
    """The position embedding initialised at N(0, 1) (PyTorch's nn.Embedding default), ~35x the tokens' scale.

    Every position adds the same large vector to whatever token sits there, so the
    attention and the pooled features see positions (identical for every example) far
    more than words: the loss sits at ln 2 for the first half of the run and the model
    ends behind its twin.

    Source: the question this project grew from (its T_A/T_C position tables, added to
    the memories, are what broke training), and google-research/bert issue 58 on what a
    learned position embedding is (https://github.com/google-research/bert/issues/58).
    """
    return _setup(_classifier(keras.initializers.RandomNormal(stddev=1.0)), "adam")


@case(family="transformer", twin="tfm_healthy", expect=("huge-steps", "ignores-input"))
def tfm_adam_blowup():
    """Adam at learning rate 0.1, a hundred times the default, with no warm-up: the model stalls at the prior.

    The first steps throw every weight by ~0.1 per step (ten times its size); gradients
    upstream of the head fall by two to three orders of magnitude and the loss sits at
    ln 2, the model predicting the class prior whatever the input.

    Source: "BCE loss stuck at 0.693 in the beginning of training" (a Transformer
    encoder whose loss sits at ln 2 until the learning rate is right,
    https://datascience.stackexchange.com/questions/122686/bce-loss-stuck-at-0-693-in-the-beginnng-of-training-and-then-started-to-decrease).
    """
    return _setup(_classifier(_small()), keras.optimizers.Adam(0.1))


@case(family="transformer", twin="tfm_healthy", expect=("unexplained", "ignores-input"))
def tfm_shuffled_labels():
    """Labels permuted apart from their sequences: the loss can only reach ln 2 on held-out data.

    Source: keras-team/keras issue 4784, "Accuracy not changing across the epochs"
    (check that labels match inputs, https://github.com/keras-team/keras/issues/4784).
    """
    return _setup(_classifier(_small()), "adam", shuffle_labels=True)

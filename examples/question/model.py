"""The question's model as a Keras user writes it, with its design choices as settings.

The code follows the question line for line (an ``Added_Weights`` layer for T_A and
T_C, shared ``Emb_A`` / ``Emb_C`` embeddings, a ``Dense`` for the hidden-state map,
``Dot`` and ``Softmax`` for the attention, a ``Dense(V)`` output, SGD at 0.01 with
clipnorm 50); each choice the paper makes differently is one setting, so that a study
can switch it alone:

========== ================================ ===============================
setting    as posted                         the paper (Sukhbaatar et al. 2015)
========== ================================ ===============================
output     ``relu`` + categorical CE         ``softmax``
reduction  ``mean`` (Keras' default)         ``sum`` over the batch
h_reads    ``scores`` (Dense on mem_relevance) ``state`` (Dense on layer_output)
temporal   ``uniform`` (Keras' 'uniform')    ``normal`` (N(0, 0.05)); or ``ones``, ``none``
dropout    0.1 on memories and hops          0.0
hops       NUM_LAYERS - 1                    NUM_LAYERS
========== ================================ ===============================

The data are windows of the synthetic corpus the built-in default study uses
(``topic-copy-small``: 35 words, 20,000 training tokens), the memory being the 16
previous words, the query the constant 0.1 vector, the target the next word one-hot.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras.initializers import RandomNormal
from keras.layers import Add, Dense, Dot, Dropout, Embedding, Input, Softmax
from keras.models import Model
from keras.optimizers import SGD

SEQ_LEN, EMBED_DIM, NUM_LAYERS = 16, 32, 3  # the built-in default study's sizes


def _temporal_init(name: str):
    """T_A's and T_C's initializer. The paper's N(0, 0.05) is made per call, after the run's
    ``set_random_seed``: an instance made at import would take its seed from the process's
    random state (another init in every process) and give T_A and T_C the same values."""
    return RandomNormal(stddev=0.05) if name == "normal" else name


class AddedWeights(keras.layers.Layer):
    """The question's ``Added_Weights``: a trainable (SEQ_LEN, EMBED_DIM) tensor added to its input."""

    def __init__(self, input_dim, initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.input_dim = tuple(input_dim)
        self.initializer = initializer

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=self.input_dim, initializer=self.initializer)

    def call(self, x):
        return x + self.kernel


@functools.cache
def _corpus():
    from diagnose.memn2n.data import make_synthetic, windows

    corpus = make_synthetic("topic-copy-small", seed=0)
    out = {}
    for name, split in (("train", corpus.train), ("valid", corpus.valid)):
        seqs, targets = windows(split, SEQ_LEN, np.arange(len(split) - 1))
        query = np.full((len(seqs), EMBED_DIM), 0.1, np.float32)  # "a constant vector filled with 0.1"
        out[name] = ([seqs, query], np.eye(corpus.vocab_size, dtype=np.float32)[targets])
    return corpus.vocab_size, out


def data(settings):
    """(train, valid): ([word_seq, query], one-hot next word)."""
    _, splits = _corpus()
    return splits["train"], splits["valid"]


def build(settings):
    """The question's model with the settings above (defaults: as posted)."""
    VOCAB_SIZE = _corpus()[0]
    DROPOUT_R = settings.get("dropout", 0.1)
    temporal = settings.get("temporal", "uniform")
    hops = NUM_LAYERS - 1 if settings.get("hops", "posted") == "posted" else NUM_LAYERS

    word_seq = Input(shape=(SEQ_LEN,), dtype="int32", name="word_seq")
    query = Input(shape=(EMBED_DIM,), dtype="float32", name="q_input")
    init = "uniform" if temporal == "none" else temporal
    T_A = AddedWeights((SEQ_LEN, EMBED_DIM), _temporal_init(init), name="T_A")
    T_C = AddedWeights((SEQ_LEN, EMBED_DIM), _temporal_init(init), name="T_C")
    Emb_A = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_A")
    Emb_C = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_C")
    int_state_weights = Dense(units=EMBED_DIM, activation="linear",
                              kernel_initializer=RandomNormal(mean=0., stddev=0.05))

    layer_output = query
    for _ in range(hops):
        memories = Emb_A(word_seq)
        if temporal != "none":
            memories = T_A(memories)
        if DROPOUT_R:
            memories = Dropout(DROPOUT_R)(memories)
        content = Emb_C(word_seq)
        if temporal != "none":
            content = T_C(content)
        mem_relevance = Dot(axes=[1, 2])([layer_output, memories])
        if settings.get("h_reads", "scores") == "scores":
            weighted_internal_state = int_state_weights(mem_relevance)  # as posted
        else:
            weighted_internal_state = int_state_weights(layer_output)  # the paper: H u
        mem_relevance = Softmax()(mem_relevance)
        content_relevance = Dot(axes=1)([mem_relevance, content])
        layer_output = Add()([content_relevance, weighted_internal_state])
        if DROPOUT_R:
            layer_output = Dropout(DROPOUT_R)(layer_output)

    prediction = Dense(units=VOCAB_SIZE, activation=settings.get("output", "relu"),
                       kernel_initializer=RandomNormal(mean=0., stddev=0.05))(layer_output)
    model = Model(inputs=[word_seq, query], outputs=prediction)
    loss = keras.losses.CategoricalCrossentropy(
        reduction="sum" if settings.get("reduction", "mean") == "sum" else "sum_over_batch_size")
    model.compile(optimizer=SGD(learning_rate=0.01, clipnorm=50.), loss=loss, metrics=["accuracy"])
    return model

"""The question's MemN2N, as its author wrote it in Keras, and the same model with its faults fixed one by one.

``models/question.py`` holds the posted code (``build_question_model``); the corrected
model below repeats it line for line except where a case changes one thing: the
output (softmax instead of ReLU), where the Dense ``int_state_weights`` reads (the
hidden state, as in the paper, instead of the match scores), and how T_A and T_C start.

The task: windows of 10 tokens from a vocabulary of 40, each holding exactly one
"key" token (ids 2-9) among noise tokens (ids 10-39); the target is the key token,
so a hop that attends to the right slot answers it. The query is the constant 0.1
vector of the question. 2048 training windows, 512 held out.
"""

from __future__ import annotations

import functools

import numpy as np
from keras.initializers import RandomNormal
from keras.layers import Add, Dense, Dot, Dropout, Embedding, Input, Softmax
from keras.models import Model
from keras.optimizers import SGD

from diagnose.models.question import AddedWeights, build_question_model

from . import Setup, case

VOCAB_SIZE, SEQ_LEN, EMBED_DIM, NUM_LAYERS, DROPOUT_R = 40, 10, 16, 3, 0.1
N_TRAIN, N_VALID = 2048, 512
EPOCHS, BATCH = 8, 32  # 512 steps
# The posted SGD with clipnorm=50, at a rate that trains the corrected model in this budget
# (the posted 0.01 leaves every variant at the key prior, ln 8 nats).
LR = 1.0


@functools.cache
def _data():
    rng = np.random.default_rng(71)
    n = N_TRAIN + N_VALID
    seqs = rng.integers(10, VOCAB_SIZE, size=(n, SEQ_LEN)).astype(np.int32)
    keys = rng.integers(2, 10, size=n)
    seqs[np.arange(n), rng.integers(0, SEQ_LEN, size=n)] = keys
    query = np.full((n, EMBED_DIM), 0.1, np.float32)  # "a constant vector filled with 0.1"
    labels = np.eye(VOCAB_SIZE, dtype=np.float32)[keys]
    return seqs, query, labels


def _setup(model):
    seqs, query, labels = _data()
    train, valid = slice(0, N_TRAIN), slice(N_TRAIN, None)
    return Setup(model, [seqs[train], query[train]], labels[train], EPOCHS, BATCH,
                 validation_data=([seqs[valid], query[valid]], labels[valid]))


def _question_model(output="softmax", h_reads="state", t_init="uniform", lr=LR):
    """The posted model with three switches; the defaults are the paper's choices."""
    word_seq = Input(shape=(SEQ_LEN,), dtype="int32", name="word_seq")
    query = Input(shape=(EMBED_DIM,), dtype="float32", name="q_input")
    T_A = AddedWeights((SEQ_LEN, EMBED_DIM), initializer=t_init)
    T_C = AddedWeights((SEQ_LEN, EMBED_DIM), initializer=t_init)
    Emb_A = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_A")
    Emb_C = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_C")
    int_state_weights = Dense(units=EMBED_DIM, activation='linear',
                              kernel_initializer=RandomNormal(mean=0., stddev=0.05, seed=None))
    layer_output = query
    for _ in range(0, NUM_LAYERS - 1):
        memories = Dropout(DROPOUT_R)(T_A(Emb_A(word_seq)))
        content = T_C(Emb_C(word_seq))
        mem_relevance = Dot(axes=[1, 2])([layer_output, memories])
        # Posted: the Dense reads the match scores; the paper: it maps the hidden state.
        weighted_internal_state = int_state_weights(mem_relevance if h_reads == "scores" else layer_output)
        mem_relevance = Softmax()(mem_relevance)
        content_relevance = Dot(axes=1)([mem_relevance, content])
        layer_output = Dropout(DROPOUT_R)(Add()([content_relevance, weighted_internal_state]))
    final_output = Dense(units=VOCAB_SIZE, activation=output,
                         kernel_initializer=RandomNormal(mean=0., stddev=0.05, seed=None))(layer_output)
    model = Model(inputs=[word_seq, query], outputs=final_output)
    model.compile(optimizer=SGD(learning_rate=lr, clipnorm=50.), loss='categorical_crossentropy',
                  metrics=['accuracy'])
    return model


# --- healthy control ----------------------------------------------------------------


@case(family="memn2n")
def memn2n_healthy():
    """Healthy: the question's model with a softmax output, H on the hidden state, T_A/T_C uniform(+-0.05).

    Source: the question this project grew from, "Positional encoding causes worse
    convergence, language modeling" (a Stack Overflow question as mirrored by Python中文网,
    2024-10-05), corrected after Sukhbaatar et al., "End-To-End Memory Networks"
    (arXiv 1503.08895).
    """
    return _setup(_question_model())


# --- faults ------------------------------------------------------------------------


@case(family="memn2n", twin="memn2n_healthy", expect=("temporal-encoding-dominates",))
def memn2n_t_ones():
    """T_A and T_C initialised to ones: the position tables are ~35x the word embeddings.

    Under the posted SGD the loss jumps to tens of thousands of nats (the softmax
    cross-entropy is computed from logits, so nothing clips it) while the twin reaches
    100% accuracy.

    Source: the question (adding its T_A/T_C "Added_Weights" took a model from 96%
    accuracy to 10%); its custom layer's code was not shown, and a table of ones is the
    reading the project's issue 16 names.
    """
    return _setup(_question_model(t_init="ones"))


@case(family="memn2n", twin="memn2n_healthy", expect=("relu-output-crossentropy", "ignores-input"))
def memn2n_relu_output():
    """The question's ReLU output layer under categorical cross-entropy.

    Source: the question (``Dense(units=VOCAB_SIZE, activation='relu')`` into
    ``loss='categorical_crossentropy'``).
    """
    return _setup(_question_model(output="relu"))


@case(family="memn2n", twin="memn2n_healthy", expect=("linear-on-attention-scores",))
def memn2n_h_on_scores():
    """The question's ``int_state_weights`` applied to the match scores instead of the hidden state.

    Source: the question (``weighted_internal_state = int_state_weights(mem_relevance)``).
    """
    return _setup(_question_model(h_reads="scores"))


@case(family="memn2n", twin="memn2n_healthy",
      expect=("relu-output-crossentropy", "linear-on-attention-scores", "ignores-input"))
def memn2n_as_posted():
    """The posted model itself (models/question.py), compiled as posted but at the twin's learning rate.

    It differs from its twin in the two posted faults at once (ReLU output, H on the
    scores); its T_A/T_C start uniform(+-0.05) as the twin's do.

    Source: the question, as reproduced in models/question.py.
    """
    model = build_question_model(VOCAB_SIZE, SEQ_LEN, EMBED_DIM, NUM_LAYERS, DROPOUT_R)
    model.optimizer.learning_rate = LR
    return _setup(model)

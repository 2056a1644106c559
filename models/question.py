"""The question's Keras functional model, as posted, for instrumenting a model we did not write.

The code below is the question's, line for line, with only what Keras 3 requires
changed (each marked ``# Keras 3:``) and its undefined ``prediction`` read as the
final Dense output. Its ``Added_Weights`` layer was never shown; :class:`AddedWeights`
is the obvious reading (a trainable (SEQ_LEN, EMBED_DIM) tensor added to the input),
initialised with Keras' ``'uniform'`` as the custom-layer template of the time did.

:mod:`diagnose.models.memn2n` reproduces the same model from a config (preset ``as-posted``);
this one exists so that ``diagnose.instrument`` can be shown to work on a user's
functional model whose code it must not change.
"""

from __future__ import annotations

import keras
from keras.initializers import RandomNormal
from keras.layers import Add, Dense, Dot, Dropout, Embedding, Input, Softmax
from keras.models import Model
from keras.optimizers import SGD

__all__ = ["AddedWeights", "build_question_model"]


@keras.saving.register_keras_serializable(package="models")
class AddedWeights(keras.layers.Layer):
    """Adds a trainable (input_dim) tensor to its input: the question's ``Added_Weights``."""

    def __init__(self, input_dim, initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.input_dim = tuple(input_dim)
        self.initializer = initializer

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=self.input_dim, initializer=self.initializer,
                                      trainable=True)

    def call(self, x):
        return x + self.kernel

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "initializer": self.initializer}


def build_question_model(VOCAB_SIZE=10_000, SEQ_LEN=100, EMBED_DIM=150, NUM_LAYERS=6, DROPOUT_R=0.1,
                         added_weights_init="uniform"):
    """The posted model, compiled as posted. Sizes the question leaves open follow the paper."""
    Added_Weights = lambda input_dim: AddedWeights(input_dim, initializer=added_weights_init)  # noqa: E731

    word_seq = Input(shape=(SEQ_LEN,), dtype="int32", name="word_seq")

    query = Input(shape=(EMBED_DIM,), dtype="float32", name="q_input")

    T_A = Added_Weights(input_dim=(SEQ_LEN, EMBED_DIM))

    T_C = Added_Weights(input_dim=(SEQ_LEN, EMBED_DIM))

    # Keras 3: Embedding no longer takes input_length.
    Emb_A = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_A")

    Emb_C = Embedding(output_dim=EMBED_DIM, input_dim=VOCAB_SIZE, name="Emb_C")

    int_state_weights = Dense(units=EMBED_DIM, activation='linear',
                              kernel_initializer=RandomNormal(mean=0., stddev=0.05, seed=None))

    layer_output = query

    for i in range(0, NUM_LAYERS - 1):  # noqa: B007  (the posted loop, as posted)
        memories = Emb_A(word_seq)

        memories = T_A(memories)

        memories = Dropout(DROPOUT_R)(memories)

        content = Emb_C(word_seq)

        content = T_C(content)

        mem_relevance = Dot(axes=[1, 2])([layer_output, memories])

        weighted_internal_state = int_state_weights(mem_relevance)

        mem_relevance = Softmax()(mem_relevance)

        content_relevance = Dot(axes=1)([mem_relevance, content])

        layer_output = Add()([content_relevance, weighted_internal_state])

        layer_output = Dropout(DROPOUT_R)(layer_output)

    final_output = Dense(units=VOCAB_SIZE, activation='relu',
                         kernel_initializer=RandomNormal(mean=0., stddev=0.05, seed=None))(layer_output)

    prediction = final_output  # the question uses `prediction` without defining it
    model = Model(inputs=[word_seq, query], outputs=prediction)
    # Keras 3: SGD takes learning_rate, not lr.
    model.compile(optimizer=SGD(learning_rate=0.01, clipnorm=50.), loss='categorical_crossentropy',
                  metrics=['accuracy'])
    return model

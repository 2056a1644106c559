"""Small attention models over token ids: a self-attention classifier, an attention-pooling classifier, a seq2seq.

The classification task: "headlines" of 6-14 tokens from a vocabulary of 200,
post-padded with 0 to 64 (so 50-58 of the 64 slots are padding). Ids 1-40 are
keywords, ten for each of 4 topics; ids 41-199 are fillers. A headline holds one or
two keywords of its topic and, half the time, one keyword of another topic, among
fillers; the label is its topic. 2048 headlines for training, 512 held out.

The translation task (the Transformer port): a source of 40 tokens, all of them real
(no padding), in which 6 "content" tokens (ids 2-9) sit at random places among
fillers (ids 10-39); the target is those 6 content tokens in the order they appear,
read by the decoder with teacher forcing (id 1 starts the decoder input). A long
source and a short target, as in the report. 2560 pairs for training, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, MAXLEN, VOCAB, TOPICS, EMBED = 2048, 512, 64, 200, 4, 32
EPOCHS, BATCH = 8, 32  # 512 steps

SRC_LEN, TGT_LEN, S2S_VOCAB, S2S_DIM = 40, 6, 40, 32
S2S_TRAIN, S2S_EPOCHS, S2S_BATCH = 2560, 5, 64  # 200 steps

T2T_105 = "https://github.com/tensorflow/tensor2tensor/issues/105"


@functools.cache
def _headlines():
    """Token ids (N, 64) int32, post-padded with 0, and topic labels (N,) int32."""
    rng = np.random.default_rng(71)
    keywords = [np.arange(1 + 10 * k, 11 + 10 * k) for k in range(TOPICS)]
    n = N_TRAIN + N_VALID
    x = np.zeros((n, MAXLEN), np.int32)
    y = rng.integers(0, TOPICS, n).astype(np.int32)
    for i in range(n):
        length = rng.integers(6, 15)
        tokens = rng.integers(41, VOCAB, length)
        slots = rng.choice(length, rng.integers(1, 3), replace=False)
        tokens[slots] = rng.choice(keywords[y[i]], len(slots))
        if rng.random() < 0.5:  # a keyword of another topic, as a distractor
            j = rng.integers(length)
            if j not in slots:
                tokens[j] = rng.choice(keywords[(y[i] + rng.integers(1, TOPICS)) % TOPICS])
        x[i, :length] = tokens
    return x, y


@functools.cache
def _pairs():
    """Sources (N, 40), decoder inputs (N, 6) and targets (N, 6), all int32."""
    rng = np.random.default_rng(72)
    n = S2S_TRAIN + N_VALID
    source = rng.integers(10, S2S_VOCAB, (n, SRC_LEN)).astype(np.int32)
    target = np.zeros((n, TGT_LEN), np.int32)
    for i in range(n):
        slots = np.sort(rng.choice(SRC_LEN, TGT_LEN, replace=False))
        content = rng.integers(2, 10, TGT_LEN)
        source[i, slots] = content
        target[i] = content
    decoder_in = np.concatenate([np.ones((n, 1), np.int32), target[:, :-1]], axis=1)
    return source, decoder_in, target


# --- layers ---------------------------------------------------------------------------


class TokenAndPositionEmbedding(keras.layers.Layer):
    """A token embedding plus a learned position embedding (keras-io's layer), passing on the token mask."""

    def __init__(self, length, vocab, dim, mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.token_emb = keras.layers.Embedding(vocab, dim, mask_zero=mask_zero)
        self.pos_emb = keras.layers.Embedding(length, dim)

    def call(self, ids):
        return self.token_emb(ids) + self.pos_emb(keras.ops.arange(self.length))

    def compute_mask(self, ids, mask=None):
        return self.token_emb.compute_mask(ids)


class AttentionPooling(keras.layers.Layer):
    """One learned query attends over the token vectors (multi-head): a sequence pooled to one vector.

    ``attention_mask`` follows Keras' MultiHeadAttention: True where the query may attend.
    """

    def __init__(self, num_heads, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.key_dim = num_heads, key_dim
        self.attention = keras.layers.MultiHeadAttention(num_heads, key_dim)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.query = self.add_weight(shape=(1, 1, dim), initializer="glorot_uniform", name="query")
        self.attention.build((None, 1, dim), (None, input_shape[1], dim))

    def call(self, values, attention_mask=None):
        query = keras.ops.broadcast_to(self.query, (keras.ops.shape(values)[0], 1, values.shape[-1]))
        pooled = self.attention(query, values, attention_mask=attention_mask)
        return keras.ops.squeeze(pooled, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


class WarmupRsqrt(keras.optimizers.schedules.LearningRateSchedule):
    """The Transformer's schedule (tensor2tensor's linear warm-up then rsqrt decay), peaking at ``peak``."""

    def __init__(self, peak, warmup_steps):
        self.peak, self.warmup_steps = float(peak), float(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0
        return self.peak * keras.ops.minimum(step / self.warmup_steps, keras.ops.sqrt(self.warmup_steps / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


# --- models ---------------------------------------------------------------------------


def _self_attention_classifier():
    """keras-io's Transformer block, one layer, over masked embeddings; masked average pooling; a softmax head."""
    ids = keras.Input((MAXLEN,), dtype="int32", name="tokens")
    h = TokenAndPositionEmbedding(MAXLEN, VOCAB, EMBED, mask_zero=True)(ids)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)
    h = keras.layers.LayerNormalization()(h + attended)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(ids, keras.layers.Dense(TOPICS, activation="softmax")(h))


def _pooling_classifier(mask_marks_padding: bool):
    """Token embeddings and a per-token Dense, pooled by one learned attention query, then a softmax head.

    The padding mask is computed from the ids inside the model. ``mask_marks_padding``
    builds it the way the TensorFlow Transformer tutorial's ``create_padding_mask``
    does (1 where the id is 0, "do not attend here") and hands it to Keras'
    MultiHeadAttention, for which 1 means "attend here".
    """
    ids = keras.Input((MAXLEN,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(VOCAB, EMBED)(ids)
    h = keras.layers.Dense(EMBED, activation="relu")(h)
    pad = keras.ops.equal(ids, 0) if mask_marks_padding else keras.ops.not_equal(ids, 0)
    pooled = AttentionPooling(num_heads=2, key_dim=16)(h, attention_mask=keras.ops.expand_dims(pad, 1))
    return keras.Model(ids, keras.layers.Dense(TOPICS, activation="softmax")(pooled))


def _classifier_setup(model, optimizer=None, shift_labels=False):
    x, y = _headlines()
    if shift_labels:
        # Each headline paired with the previous headline's label (an off-by-one when
        # the labels were read from a file with a header line): the label distribution
        # is intact, its link to the tokens gone.
        y = np.roll(y, 1)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


def _encoder_decoder():
    """A one-layer post-norm Transformer: encoder self-attention, decoder causal self-attention and cross-attention."""

    def attend(query, values, causal=False):
        out = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, dropout=0.1)(
            query, values, use_causal_mask=causal)
        return keras.layers.LayerNormalization()(query + keras.layers.Dropout(0.1)(out))

    def feed_forward(h):
        out = keras.layers.Dense(S2S_DIM)(keras.layers.Dense(64, activation="relu")(h))
        return keras.layers.LayerNormalization()(h + keras.layers.Dropout(0.1)(out))

    source = keras.Input((SRC_LEN,), dtype="int32", name="source")
    decoder_in = keras.Input((TGT_LEN,), dtype="int32", name="target_in")
    memory = TokenAndPositionEmbedding(SRC_LEN, S2S_VOCAB, S2S_DIM)(source)
    memory = feed_forward(attend(memory, memory))
    h = TokenAndPositionEmbedding(TGT_LEN, S2S_VOCAB, S2S_DIM)(decoder_in)
    h = feed_forward(attend(attend(h, h, causal=True), memory))
    return keras.Model([source, decoder_in], keras.layers.Dense(S2S_VOCAB, activation="softmax")(h))


def _seq2seq_setup(peak, warmup_steps):
    source, decoder_in, target = _pairs()
    model = _encoder_decoder()
    # tensor2tensor's Adam settings for the Transformer (beta2 0.98, epsilon 1e-9) and its schedule.
    optimizer = keras.optimizers.Adam(WarmupRsqrt(peak, warmup_steps), beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    n = S2S_TRAIN
    return Setup(model, [source[:n], decoder_in[:n]], target[:n], S2S_EPOCHS, S2S_BATCH,
                 validation_data=([source[n:], decoder_in[n:]], target[n:]))


# --- healthy controls -------------------------------------------------------------


@case(family="attention_text", part="test", batch=2)
def at_self_attention_healthy():
    """Healthy: Embedding(mask_zero=True) and a learned position table, one self-attention block, pooled, softmax.

    Source: the Keras example "Text classification with Transformer" (token and position
    embeddings, MultiHeadAttention with a residual and LayerNormalization, average
    pooling, a Dense head, https://keras.io/examples/nlp/text_classification_with_transformer/),
    with the padding masked as the Keras guide "Understanding masking & padding" does
    (https://keras.io/guides/understanding_masking_and_padding/).
    """
    return _classifier_setup(_self_attention_classifier())


@case(family="attention_text", part="test", batch=2)
def at_attention_pooling_healthy():
    """Healthy: a learned query attends over the tokens (MultiHeadAttention), padding masked out with 1 = attend.

    Source: the attention pooling of Zhou et al.'s attention-based classifier as built in
    keras-team/keras issue 4962, "How to add Attention on top of a Recurrent Layer (Text
    Classification)" (https://github.com/keras-team/keras/issues/4962), here with Keras'
    MultiHeadAttention and its ``attention_mask`` (True where attending is allowed,
    https://keras.io/api/layers/attention_layers/multi_head_attention/).
    """
    return _classifier_setup(_pooling_classifier(mask_marks_padding=False))


@case(family="attention_text", part="test", batch=2, report=T2T_105)
def at_seq2seq_long_warmup():
    """Fix: the Transformer with the learning rate lowered five times and a warm-up ten times longer.

    Peak learning rate 0.006 reached after 100 of the 200 steps, then rsqrt decay.

    Source: tensorflow/tensor2tensor issue 105, "Cost is not decreasing with transformer
    when src sent length is 100 more and target sent length is 10 less" (the
    maintainer: a much larger warm-up and a learning rate 3 to 5 times lower; the asker:
    "the warm up steps works", https://github.com/tensorflow/tensor2tensor/issues/105).
    """
    return _seq2seq_setup(peak=0.006, warmup_steps=100)


# --- faults ------------------------------------------------------------------------


@case(family="attention_text", part="test", batch=2, twin="at_seq2seq_long_warmup", expect=("huge-steps",),
      report=T2T_105)
def at_seq2seq_short_warmup():
    """A Transformer on long sources and short targets at peak learning rate 0.03 after a 10-step warm-up.

    Adam's first steps move every weight by about the learning rate; at 0.03 the
    attention and LayerNorm weights are thrown far from where the model could start to
    read the source. The loss hovers near ln 8 = 2.08 (the content tokens' frequencies,
    not which ones the source holds) and ends at ~1.85, with ~0.3 token accuracy, where
    the twin reaches ~0.9 in the same 200 steps.

    Source: tensorflow/tensor2tensor issue 105, "Cost is not decreasing with transformer
    when src sent length is 100 more and target sent length is 10 less" (transformer_base
    on sources of 100+ tokens and targets under 10; the cost stays high; fixed by a
    longer warm-up and a lower learning rate, https://github.com/tensorflow/tensor2tensor/issues/105).
    """
    return _seq2seq_setup(peak=0.03, warmup_steps=10)


@case(family="attention_text", part="test", batch=2, twin="at_self_attention_healthy", expect=("tiny-steps",))
def at_self_attention_lr_tiny():
    """The healthy self-attention classifier under Adam(1e-6): a thousandth of the default step.

    Every weight moves by about 1e-6 a step, ~5e-4 over the whole run against
    embeddings of scale 0.05: the loss creeps down by ~0.1, still above ln 4 at the
    end, and the accuracy stays at chance.

    Source: the Keras optimizers guide (Adam's default learning rate of 0.001,
    https://keras.io/api/optimizers/), on the Keras "Text classification with
    Transformer" model (https://keras.io/examples/nlp/text_classification_with_transformer/).
    """
    return _classifier_setup(_self_attention_classifier(), optimizer=keras.optimizers.Adam(1e-6))


@case(family="attention_text", part="test", batch=2, twin="at_self_attention_healthy", expect=("unexplained",))
def at_self_attention_labels_shifted():
    """Labels shifted by one against their headlines (np.roll): each headline carries its neighbour's topic.

    Nothing in the model or its training is wrong; the targets carry no information
    about the inputs, so the held-out loss stays at ln 4 or above while the model can
    only memorise the training pairs.

    Source: Andrej Karpathy, "A Recipe for Training Neural Networks" (look at the data
    and check that each input is paired with its own label before suspecting the model,
    https://karpathy.github.io/2019/04/25/recipe/).
    """
    return _classifier_setup(_self_attention_classifier(), shift_labels=True)


@case(family="attention_text", part="test", batch=2, twin="at_attention_pooling_healthy",
      expect=("padding-attention", "ignores-input"))
def at_attention_pooling_mask_inverted():
    """The padding mask built as the TensorFlow tutorial builds it (1 = padding) and given to Keras' MultiHeadAttention.

    Keras reads 1 as "attend here", so the learned query attends to the 50-58 padding
    slots and to nothing else: every headline pools to the same vector (the padding
    token's), the head can only learn the topic frequencies, and the loss stays at ln 4.

    Source: tensorflow/text pull request 894, "Attention warning" (the tutorial's masks
    mark what not to attend to, Keras' MultiHeadAttention marks what to attend to;
    swapping one for the other silently inverts the mask,
    https://github.com/tensorflow/text/pull/894).
    """
    return _classifier_setup(_pooling_classifier(mask_marks_padding=True))

"""Graph convolutional networks (Kipf and Welling's GCN) on small citation-like graphs, one node label per node.

Each example is one graph of 20 "papers": its node features and its adjacency matrix,
two inputs. A GCN layer is a Dense map of the node features (no bias) followed by the
product with the normalised adjacency ``D^-1/2 (A + I) D^-1/2`` (a ``Dot`` layer on the
graph's node axis), as ``tkipf/gcn`` computes it; the model outputs one row per node.
The data:

- "citation graphs": each graph mixes papers on two of 4 topics (in random shares).
  Papers cite mostly within their topic (35% of within-topic pairs are linked, 3% of
  pairs across topics, times a per-paper activity drawn log-normally, so a few papers
  are hubs and ~12% cite nothing; 3.3 links a paper on average). A paper's features
  are a bag of 3 words out of 16: each word is one of its topic's 4 indicative words
  with probability 0.35, else any word. The words alone give ~56% accuracy, words and citations ~83%. The target is
  each paper's topic (one-hot per node).
- "topic mixtures": the same graphs, with a dense 8-dimensional target per paper (not
  a class): a fixed nonlinear function of its two-hop neighbourhood's words,
  standardised (negative values half the time). A GCN under a squared error explains
  ~60% of its variance.

1024 graphs for training, 256 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

G_TRAIN, G_VALID, NODES, TOPICS, WORDS, MIXTURE = 1024, 256, 20, 4, 16, 8
EPOCHS, BATCH = 10, 32  # 320 steps

TKIPF_31 = "https://github.com/tkipf/gcn/issues/31"


@functools.cache
def _graphs():
    """Raw 0/1 adjacency (G, 20, 20), bag-of-words features (G, 20, 16), topics (G, 20)."""
    rng = np.random.default_rng(401)
    n = G_TRAIN + G_VALID
    adjacency = np.zeros((n, NODES, NODES), np.float32)
    words = np.zeros((n, NODES, WORDS), np.float32)
    topics = np.zeros((n, NODES), np.int64)
    for k in range(n):
        pair = rng.choice(TOPICS, 2, replace=False)
        topic = pair[(rng.random(NODES) < rng.uniform(0.3, 0.7)).astype(int)]
        topics[k] = topic
        activity = rng.lognormal(0.0, 0.8, NODES)
        activity /= activity.mean()
        p = np.outer(activity, activity) * np.where(topic[:, None] == topic[None, :], 0.35, 0.03)
        upper = np.triu(rng.random((NODES, NODES)) < p, 1)
        adjacency[k] = upper | upper.T
        for i in range(NODES):
            for _ in range(3):
                word = 4 * topic[i] + rng.integers(4) if rng.random() < 0.35 else rng.integers(WORDS)
                words[k, i, word] = 1.0
    return adjacency, words, topics


@functools.cache
def _normalised():
    """The renormalised adjacency with self-loops, D^-1/2 (A + I) D^-1/2, per graph."""
    adjacency = _graphs()[0] + np.eye(NODES, dtype=np.float32)
    inv_sqrt = 1.0 / np.sqrt(adjacency.sum(-1))
    return (adjacency * inv_sqrt[:, :, None] * inv_sqrt[:, None, :]).astype(np.float32)


@functools.cache
def _mixtures():
    """Dense standardised targets (G, 20, 8): a nonlinear function of each node's two-hop words."""
    rng = np.random.default_rng(402)
    words, a = _graphs()[1], _normalised()
    signal = a @ (a @ (words @ rng.normal(size=(WORDS, MIXTURE))))
    target = np.tanh(signal) + 0.5 * signal + 0.1 * rng.normal(size=signal.shape)
    mean, std = target[:G_TRAIN].mean(axis=(0, 1)), target[:G_TRAIN].std(axis=(0, 1))
    return ((target - mean) / std).astype(np.float32)


def _gcn_layer(h, adjacency, units, activation, regularizer=None):
    """One GCN layer: H' = activation(A_hat @ H @ W), W without bias as in tkipf/gcn."""
    h = keras.layers.Dense(units, use_bias=False, kernel_regularizer=regularizer)(h)
    h = keras.layers.Dot(axes=(2, 1))([adjacency, h])  # per graph: (20, 20) @ (20, units)
    return keras.layers.Activation(activation)(h) if activation else h


def _gcn(out_units=TOPICS, out_activation="softmax", hidden=16, layers=2, activation="relu", dropout=0.5,
         regularizer=None):
    """The GCN of tkipf/gcn: dropout, GCN layers, the last one with out_units and out_activation."""
    words = keras.Input((NODES, WORDS), name="words")
    adjacency = keras.Input((NODES, NODES), name="adjacency")
    h = words
    for _ in range(layers - 1):
        h = keras.layers.Dropout(dropout)(h) if dropout else h
        h = _gcn_layer(h, adjacency, hidden, activation, regularizer)
    h = keras.layers.Dropout(dropout)(h) if dropout else h
    out = _gcn_layer(h, adjacency, out_units, out_activation, regularizer)
    return keras.Model([words, adjacency], out)


def _inputs():
    words, a = _graphs()[1], _normalised()
    return [words[:G_TRAIN], a[:G_TRAIN]], [words[G_TRAIN:], a[G_TRAIN:]]


def _topic_setup(model, optimizer):
    """Per-node topic classification under categorical cross-entropy (one-hot rows per node)."""
    train, valid = _inputs()
    one_hot = np.eye(TOPICS, dtype=np.float32)[_graphs()[2]]
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    return Setup(model, train, one_hot[:G_TRAIN], EPOCHS, BATCH, validation_data=(valid, one_hot[G_TRAIN:]))


def _mixture_setup(out_activation, loss):
    """The tkipf/gcn model (Adam 0.01, dropout 0.5) on the dense 8-dimensional node targets."""
    train, valid = _inputs()
    target = _mixtures()
    model = _gcn(out_units=MIXTURE, out_activation=out_activation, hidden=32)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=["mean_squared_error"])
    return Setup(model, train, target[:G_TRAIN], EPOCHS, BATCH, validation_data=(valid, target[G_TRAIN:]))


# --- healthy ---------------------------------------------------------------------


@case(family="graphs", part="test", batch=4)
def gr_gcn_healthy():
    """Healthy: a two-layer GCN (16 hidden units, ReLU, dropout 0.5) labelling each paper's topic, Adam(0.01).

    Source: the GCN of Kipf and Welling, "Semi-Supervised Classification with Graph
    Convolutional Networks" (arXiv 1609.02907), as tkipf/gcn trains it (learning rate
    0.01, 16 hidden units, dropout 0.5), on one graph per example. Reaches ~83%
    validation accuracy; the words alone give ~56%, chance is 25%.
    """
    return _topic_setup(_gcn(), keras.optimizers.Adam(0.01))


@case(family="graphs", part="test", batch=4)
def gr_gcn_sgd_healthy():
    """Healthy: the same GCN under SGD(0.1, momentum 0.9).

    Source: the GCN of arXiv 1609.02907 with plain momentum SGD, as the Keras
    optimizer guide sets it up (https://keras.io/api/optimizers/sgd/). Reaches ~82%
    validation accuracy.
    """
    return _topic_setup(_gcn(), keras.optimizers.SGD(0.1, momentum=0.9))


@case(family="graphs", part="test", batch=4, report=TKIPF_31)
def gr_mixture_linear_mse():
    """Fix: the GCN regressing each paper's dense 8-dimensional target with a linear last layer and MSE.

    Source: tkipf/gcn issue 31, "about the training loss" (the maintainer: "Sounds like
    a regression problem to me. Have you tried mean-squared error (MSE) instead of
    cross entropy?", https://github.com/tkipf/gcn/issues/31). Validation MSE ~0.41
    against 1.0 for the best constant.
    """
    return _mixture_setup(None, "mean_squared_error")


# --- faults ----------------------------------------------------------------------


@case(family="graphs", part="test", batch=4, twin="gr_mixture_linear_mse", expect=("labels-not-class-indices",),
      report=TKIPF_31)
def gr_mixture_softmax_cce():
    """The GCN trained on dense, real-valued node targets through a softmax and a categorical cross-entropy.

    tkipf/gcn's loss is a softmax cross-entropy; fed a label that is a dense
    high-dimensional vector (not sparse, not a distribution, negative half the time),
    the loss has no minimum: raising the logits of the coordinates with negative
    targets lowers it without bound (the training loss falls to ~-220), and the
    softmax outputs, confined to (0, 1) and summing to 1, predict nothing of the
    targets (validation MSE ~0.92, a constant scores 1.0, the twin ~0.41).

    Source: tkipf/gcn issue 31, "about the training loss" ("When my label is a
    high-dimensional vector, and the label is not sparse ... the training loss has not
    been reduced", https://github.com/tkipf/gcn/issues/31).
    """
    return _mixture_setup("softmax", "categorical_crossentropy")


@case(family="graphs", part="test", batch=4, twin="gr_gcn_healthy", expect=("unexplained",))
def gr_gcn_l2_one():
    """The GCN with an L2 penalty of 1.0 on every kernel (tkipf/gcn uses 5e-4, on the first layer only).

    The penalty (~10 at initialisation, against a cross-entropy of ~1.4) pulls every
    weight to zero within the first epoch: the outputs become the uniform distribution
    and the loss sits at ln 4 (validation accuracy at chance, ~24%). No rule names an
    over-strong regulariser.

    Source: weight decay far too strong, a fault of the taxonomy of Humbatova et al.
    (ICSE 2020, "Missing/wrong regularisation"); tkipf/gcn's setting is in its
    train.py (weight_decay 5e-4, https://github.com/tkipf/gcn/blob/master/gcn/train.py).
    """
    return _topic_setup(_gcn(regularizer=keras.regularizers.l2(1.0)), keras.optimizers.Adam(0.01))


@case(family="graphs", part="test", batch=4, twin="gr_gcn_healthy", expect=("vanishing-gradients",))
def gr_gcn_eight_sigmoid_layers():
    """An eight-layer GCN with sigmoid activations between the layers (no dropout).

    Each sigmoid layer shrinks the gradient (its slope is at most 1/4) and each
    propagation averages neighbours' features, so the first layers get almost no
    gradient and the node representations blur together: the model ends at ~47%
    validation accuracy, below the words alone (~56%) and far below the two-layer
    model (~83%).

    Source: the depth experiment of Kipf and Welling (arXiv 1609.02907, appendix B:
    GCNs deeper than ~7 layers train poorly without residual connections), here with
    the saturating sigmoid between the layers.
    """
    return _topic_setup(_gcn(layers=8, activation="sigmoid", dropout=0.0), keras.optimizers.Adam(0.01))


@case(family="graphs", part="test", batch=4, twin="gr_gcn_sgd_healthy", expect=("tiny-steps", "clipping-always-fires"))
def gr_gcn_sgd_clipnorm_tiny():
    """The SGD-trained GCN with every gradient clipped to a norm of 1e-4 (clipnorm=1e-4).

    The gradient's norm is ~0.2 at the start, so every step is scaled down ~2,000
    times: the weights move by ~1e-5 a step and the model stays where it started (the
    loss at ~1.42 throughout, validation accuracy ~26%, the twin ~82%).

    Source: gradient-norm clipping (Pascanu, Mikolov and Bengio, arXiv 1211.5063, who
    pick the threshold from the norms observed in training) set four orders of
    magnitude below the gradients' norm.
    """
    return _topic_setup(_gcn(), keras.optimizers.SGD(0.1, momentum=0.9, clipnorm=1e-4))

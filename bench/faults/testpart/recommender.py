"""Two-tower recommenders: a user Embedding tower and an item Embedding tower meeting in a dot product.

The task: 200 users and 150 items with 3 hidden taste factors each. A rating is
3.3 plus the users' and items' small offsets plus the dot product of their factors,
plus noise, rounded and clipped to 1-5 stars (variance 1.1); most of it comes from
the dot product, so a model of user and item offsets alone (no working interaction)
scores a validation MSE of about 1.0, a good one about 0.4. Implicit feedback counts
how often a user played an item (Poisson, mean exp(2.5 x affinity), 0 to 35); a click is a
count above zero (58% of pairs). 8000 training interactions, 2000 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

USERS, ITEMS, FACTORS = 200, 150, 3
N_TRAIN, N_VALID = 8000, 2000
EPOCHS, BATCH = 4, 64  # 500 steps
DIM = 8


@functools.cache
def _data():
    rng = np.random.default_rng(51)
    p = rng.normal(scale=0.75, size=(USERS, FACTORS))
    q = rng.normal(scale=0.75, size=(ITEMS, FACTORS))
    bu, bi = rng.normal(scale=0.3, size=USERS), rng.normal(scale=0.3, size=ITEMS)
    n = N_TRAIN + N_VALID
    users, items = rng.integers(0, USERS, size=n), rng.integers(0, ITEMS, size=n)
    affinity = np.sum(p[users] * q[items], axis=1)
    stars = np.clip(np.round(3.3 + bu[users] + bi[items] + affinity + 0.3 * rng.normal(size=n)), 1, 5)
    plays = rng.poisson(np.exp(np.clip(2.5 * affinity, -4.0, 3.0))).astype(np.float32)
    return users.astype(np.int32), items.astype(np.int32), stars.astype(np.float32), plays


def _split(target):
    users, items, _, _ = _data()
    x = {"user": users[:, None], "item": items[:, None]}
    train = ({k: v[:N_TRAIN] for k, v in x.items()}, target[:N_TRAIN, None])
    valid = ({k: v[N_TRAIN:] for k, v in x.items()}, target[N_TRAIN:, None])
    return train, valid


def _two_towers(initializer="uniform", activation=None):
    """User and item Embedding towers, a dot product, per-user and per-item biases, one output unit.

    The Keras "Collaborative Filtering for Movie Recommendations" model, in the
    functional API: Embedding(…, 8) for each side, ``Dot``, bias embeddings, and a
    Dense(1) that adds the global offset.
    """
    user, item = keras.Input((1,), name="user", dtype="int32"), keras.Input((1,), name="item", dtype="int32")
    u = keras.layers.Flatten()(keras.layers.Embedding(USERS, DIM, embeddings_initializer=initializer,
                                                      name="user_embedding")(user))
    v = keras.layers.Flatten()(keras.layers.Embedding(ITEMS, DIM, embeddings_initializer=initializer,
                                                      name="item_embedding")(item))
    ub = keras.layers.Flatten()(keras.layers.Embedding(USERS, 1, embeddings_initializer=initializer,
                                                       name="user_bias")(user))
    ib = keras.layers.Flatten()(keras.layers.Embedding(ITEMS, 1, embeddings_initializer=initializer,
                                                       name="item_bias")(item))
    dot = keras.layers.Dot(axes=1)([u, v])
    h = keras.layers.Concatenate()([dot, ub, ib])
    return keras.Model([user, item], keras.layers.Dense(1, activation=activation)(h))


def _ratings(model, scale=1.0, optimizer=None):
    _, _, stars, _ = _data()
    train, valid = _split(stars * np.float32(scale))
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), loss="mse", metrics=["mae"])
    return Setup(model, train[0], train[1], EPOCHS, BATCH, validation_data=valid)


def _implicit(model, binarise=True):
    _, _, _, plays = _data()
    target = (plays > 0).astype(np.float32) if binarise else plays
    train, valid = _split(target)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, train[0], train[1], EPOCHS, BATCH, validation_data=valid)


# --- healthy controls -------------------------------------------------------------


@case(family="recommender", part="test")
def rec_ratings_healthy():
    """Healthy: two Embedding towers, a dot product and biases, a linear output, MSE on 1-5 stars, Adam.

    Source: the Keras example "Collaborative Filtering for Movie Recommendations"
    (user and movie embeddings, a dot product and bias embeddings,
    https://keras.io/examples/structured_data/collaborative_filtering_movielens/),
    predicting the stars themselves with a linear output and MSE, as that example's
    review asked (https://github.com/keras-team/keras-io/pull/49).
    """
    return _ratings(_two_towers())


@case(family="recommender", part="test")
def rec_implicit_healthy():
    """Healthy: the two towers with a sigmoid output and binary cross-entropy on clicked / not clicked.

    Source: He et al., "Neural Collaborative Filtering" (GMF: a sigmoid over the
    user-item product trained with log loss on implicit feedback,
    https://arxiv.org/abs/1708.05031); the Keras collaborative filtering example's
    sigmoid output (https://keras.io/examples/structured_data/collaborative_filtering_movielens/).
    """
    return _implicit(_two_towers(activation="sigmoid"))


# --- faults ------------------------------------------------------------------------


@case(family="recommender", part="test", twin="rec_ratings_healthy", expect=("constant-init",))
def rec_zero_init():
    """Every Embedding initialised to zeros: the dot product's gradient for each tower is the other tower, 0.

    The user vector's gradient is the item vector and the item vector's is the user
    vector, both zero, so neither ever moves; only the bias embeddings learn, and the
    model stays the offsets-only model.

    Source: tensorflow/tensorflow issue 28487 "Adam not learning when an embedding is
    initialized to zero" (https://github.com/tensorflow/tensorflow/issues/28487); the
    CS231n warning against all-zero initialisation
    (https://cs231n.github.io/neural-networks-2/#init).
    """
    return _ratings(_two_towers(initializer="zeros"))


@case(family="recommender", part="test", twin="rec_ratings_healthy", expect=("output-range-mismatch",))
def rec_sigmoid_output():
    """A sigmoid output unit on 1-5 star ratings under MSE: every prediction is below 1.

    The sigmoid saturates towards 1 trying to reach ratings of 3 and more; its
    gradient vanishes there and the error stays that of predicting 1 star for all.

    Source: recommenders-team/recommenders issue 796 "why ncf has no rating result?"
    (the NCF output goes through a sigmoid, so it cannot be scored on 1-5 ratings
    without rescaling, https://github.com/recommenders-team/recommenders/issues/796);
    hexiangnan/neural_collaborative_filtering issue 46 (sigmoid output for ratings,
    https://github.com/hexiangnan/neural_collaborative_filtering/issues/46).
    """
    return _ratings(_two_towers(activation="sigmoid"))


@case(family="recommender", part="test", twin="rec_ratings_healthy", expect=("unscaled-targets",))
def rec_points_unscaled():
    """The star ratings stored as points (stars x 200, 200-1000) and regressed raw under a linear head.

    Adam moves each weight by about its learning rate per step, so after 500 steps the
    output can reach only a fraction of ratings that average ~650; the squared error
    stays in the tens of thousands, a large part of the targets' variance.

    Source: the Keras collaborative filtering example's review by fchollet ("better to
    scale the target ratings than the network's outputs",
    https://github.com/keras-team/keras-io/pull/49); the TensorFlow "Basic regression"
    tutorial on scaling (https://www.tensorflow.org/tutorials/keras/regression).
    """
    return _ratings(_two_towers(), scale=200.0)


@case(family="recommender", part="test", twin="rec_implicit_healthy", expect=("labels-not-class-indices",))
def rec_play_counts_as_labels():
    """Implicit feedback fed to binary cross-entropy as raw play counts (0 to 20+), not clicked / not clicked.

    Targets above 1 make ``-y log p - (1 - y) log(1 - p)`` unbounded below as p goes to
    1; the sigmoid is driven to saturate for every pair played even once and the loss
    runs negative, while the model's clicks stop tracking the users' tastes.

    Source: Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback
    Datasets" (the preference is 1 when the count is above 0; counts only weigh the
    confidence, http://yifanhu.net/PUB/cf.pdf); "How to implement this simple
    recommender system in Keras?" (a sigmoid over the dot product with
    binary_crossentropy on click / no-click,
    https://datascience.stackexchange.com/questions/134174).
    """
    return _implicit(_two_towers(activation="sigmoid"), binarise=False)

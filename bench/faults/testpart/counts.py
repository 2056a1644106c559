"""Count regressors: Poisson models of event counts, and their bugs.

The claims task: how many claims will a policy report this year? Eight standardised
covariates; the count is Poisson with a log-rate linear in them (a mean of ~4
claims, from 0 to ~90). The views task: how many views will a page get tomorrow? The
same covariates, a log-rate around 7.5 (a mean of ~2,800 views, from a few dozen to
~50,000). The raw-covariates case keeps the covariates in the units a registry
records them in (residents, square kilometres, metres of road, dollars). 3,000
examples to train on, 1,000 held out.

The model is a Poisson regression network: two ReLU layers and one output unit with an
exponential activation (the rate), trained on keras.losses.Poisson.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, FEATURES = 3000, 1000, 8
EPOCHS, BATCH = 6, 32  # 94 steps an epoch, 564 steps
# The covariates' raw units (residents, km2, metres of road, median income in $, ...): means and spreads.
RAW_MEAN = np.array([20_000, 150, 40_000, 55_000, 35, 12, 0.4, 3], np.float32)
RAW_STD = np.array([8_000, 60, 15_000, 15_000, 10, 5, 0.15, 1], np.float32)


@functools.cache
def _covariates():
    rng = np.random.default_rng(3141)
    z = rng.normal(size=(N_TRAIN + N_VALID, FEATURES)).astype(np.float32)
    w = rng.normal(scale=0.3, size=FEATURES)
    return z, w, rng


@functools.cache
def _counts(base_log_rate):
    """Standardised and raw covariates, Poisson counts with log-rate base_log_rate + z @ w, shaped (N, 1)."""
    z, w, _ = _covariates()
    rng = np.random.default_rng(int(base_log_rate * 100))
    counts = rng.poisson(np.exp(base_log_rate + z @ w)).astype(np.float32)[:, None]
    raw = (RAW_MEAN + RAW_STD * z).astype(np.float32)
    return z, raw, counts


def _network(head="exponential", bias=0.0):
    return keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation=head, bias_initializer=keras.initializers.Constant(bias)),
    ])


def _count_setup(model, loss, base_log_rate=1.0, covariates="standardised", optimizer=None):
    z, raw, counts = _counts(base_log_rate)
    x = {"standardised": z, "raw": raw}[covariates]
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=loss, metrics=["mae"])
    return Setup(model, x[:N_TRAIN], counts[:N_TRAIN], EPOCHS, BATCH,
                 validation_data=(x[N_TRAIN:], counts[N_TRAIN:]))


# --- healthy controls -------------------------------------------------------------


@case(family="counts", part="test", batch=2)
def cnt_poisson_healthy():
    """Healthy: an exponential output unit under keras.losses.Poisson on claim counts, Adam.

    Source: the Keras Poisson loss (loss = y_pred - y_true * log(y_pred), for a positive
    predicted rate, https://keras.io/api/losses/probabilistic_losses/#poisson-class) with the
    log link of a Poisson GLM (an exponential output).
    """
    return _count_setup(_network("exponential"), keras.losses.Poisson())


@case(family="counts", part="test", batch=2)
def cnt_views_poisson_healthy():
    """Healthy: the Poisson network on page views in the thousands, its output bias at the log of the mean count.

    The network predicts the log of the rate, so a count of thousands is a
    pre-activation of ~8, and the output unit's bias starts at log(mean count), as a
    Poisson GLM's intercept would.

    Source: the Keras Poisson loss (https://keras.io/api/losses/probabilistic_losses/#poisson-class)
    with an exponential output, and the Keras "Classification on imbalanced data"
    tutorial's advice to initialise the output bias from the label statistics
    (https://www.tensorflow.org/tutorials/structured_data/imbalanced_data#optional_set_the_correct_initial_bias).
    """
    _, _, counts = _counts(7.5)
    bias = float(np.log(counts[:N_TRAIN].mean()))
    return _count_setup(_network("exponential", bias), keras.losses.Poisson(), base_log_rate=7.5)


# --- faults ------------------------------------------------------------------------


@case(family="counts", part="test", batch=2, twin="cnt_poisson_healthy", expect=("output-range-mismatch", "diverged"))
def cnt_poisson_linear_head():
    """A linear output unit under keras.losses.Poisson: the log of a negative rate is NaN at the first step.

    The loss takes log(y_pred + epsilon); a freshly initialised linear unit outputs
    negative rates for about half the policies, so the loss is NaN from the first batch
    on. Its gradient, 1 - y_true / y_pred, is positive wherever the rate is negative
    and pushes those rates further down: they never come back, and the loss stays NaN.

    Source: keras-team/keras issue 590, "nan loss with poisson objective function" (a
    Dense output with no activation under loss='poisson', NaN from the first epoch,
    https://github.com/keras-team/keras/issues/590); the Poisson loss's pull request
    says it "should be used after a softplus activation"
    (https://github.com/keras-team/keras/pull/479).
    """
    return _count_setup(_network(None), keras.losses.Poisson())


@case(family="counts", part="test", batch=2, twin="cnt_poisson_healthy", expect=("unscaled-inputs", "diverged"))
def cnt_raw_covariates():
    """The covariates fed in their recorded units (residents, metres, dollars) to the exponential-output network.

    Residents (~20,000), metres of road (~40,000) and incomes (~55,000) make the
    pre-activation of the output unit thousands: exp() of it overflows to inf, the
    Poisson loss is inf - inf = NaN on the first batch, and the weights are NaN after it.

    Source: the Keras "Structured data classification from scratch" example, which
    normalises every numerical feature before the model
    (https://keras.io/examples/structured_data/structured_data_classification_from_scratch/),
    here left out ahead of a log-link count model.
    """
    return _count_setup(_network("exponential"), keras.losses.Poisson(), covariates="raw")


@case(family="counts", part="test", batch=2, twin="cnt_views_poisson_healthy", expect=("unscaled-targets",))
def cnt_views_mse():
    """Page views in the thousands regressed with mean squared error under a linear head.

    The counts are used as they are (mean ~2,800): the linear unit starts near 0 with
    errors in the thousands, Adam moves each weight ~1e-3 a step, and after the run the
    predictions are still far below the counts; the held-out absolute error is ~9 times
    that of the twin's log-link Poisson fit.

    Source: "Regression problem with Deep Learning" (Data Science Stack Exchange 81132,
    a network regressing raw targets in the thousands,
    https://datascience.stackexchange.com/questions/81132/regression-problem-with-deep-learning).
    """
    return _count_setup(_network(None), "mean_squared_error", base_log_rate=7.5)

"""Forecasters: recurrent and dilated-convolution models predicting a series' next value, and their bugs.

The load task: an hourly electricity load in megawatts (a level of ~5,000 MW, a daily
cycle of +-1,200 MW, a weekly one of +-500 MW, a slow trend and AR(1) noise of ~250
MW); from the last 24 hours, predict the next hour. Inputs and target are
standardised with the training period's mean and deviation (a target in units of
~1,000 MW). The first 2,400 windows train, the next 600 (later in time) are held out.

The stock task ports a reported LSTM stock model (see its cases): daily open, high and
close of a share over five years (a geometric random walk with drift, between ~$280
and ~$790), 22 days in, the next close out; the last 116 windows are held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

WINDOW, N_TRAIN, N_VALID = 24, 2400, 600
STOCK_REPORT = "https://github.com/keras-team/keras/issues/6004"
STOCK_DAYS, STOCK_WINDOW, STOCK_TRAIN, STOCK_VALID = 1300, 22, 1040, 116


@functools.cache
def _load():
    """Standardised windows (N, WINDOW, 1) and next-hour targets (N, 1), and the raw targets in MW."""
    rng = np.random.default_rng(2468)
    hours = N_TRAIN + N_VALID + WINDOW
    t = np.arange(hours)
    noise = np.zeros(hours)
    shocks = rng.normal(scale=150.0, size=hours)
    for i in range(1, hours):
        noise[i] = 0.8 * noise[i - 1] + shocks[i]
    load = (5000 + 1200 * np.sin(2 * np.pi * t / 24) + 500 * np.sin(2 * np.pi * t / 168 + 1.0)
            + 0.05 * t + noise)
    windows = np.stack([load[i:i + WINDOW] for i in range(N_TRAIN + N_VALID)])[:, :, None]
    target = load[WINDOW:WINDOW + N_TRAIN + N_VALID][:, None]
    mean, std = load[:N_TRAIN + WINDOW].mean(), load[:N_TRAIN + WINDOW].std()
    scaled_x = ((windows - mean) / std).astype(np.float32)
    scaled_y = ((target - mean) / std).astype(np.float32)
    return scaled_x, scaled_y, target.astype(np.float32)


def _split(x, y):
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _recurrent(layer="lstm", head_activation=None):
    cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[layer]
    return keras.Sequential([
        keras.Input((WINDOW, 1)),
        cell(32),
        keras.layers.Dense(1, activation=head_activation),
    ])


def _dilated():
    """A WaveNet-style stack: causal Conv1D with dilations 1, 2, 4, 8, the last step's features, a linear unit."""
    inputs = keras.Input((WINDOW, 1))
    h = inputs
    for rate in (1, 2, 4, 8):
        h = keras.layers.Conv1D(16, 2, dilation_rate=rate, padding="causal", activation="relu")(h)
    h = keras.layers.Lambda(lambda s: s[:, -1, :])(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def _load_setup(model, optimizer, epochs=8, batch=32, target="scaled", shuffle_targets=False):
    x, y_scaled, y_raw = _load()
    y = {"scaled": y_scaled, "raw": y_raw}[target]
    if shuffle_targets:
        # The targets permuted apart from their windows (shuffled as a separate array):
        # the distribution of next-hour loads is intact, its link to the last 24 hours gone.
        y = np.concatenate([np.random.default_rng(7).permutation(y[:N_TRAIN]), y[N_TRAIN:]])
    (xt, yt), valid = _split(x, y)
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return Setup(model, xt, yt, epochs, batch, validation_data=valid)


@functools.cache
def _stock():
    """Daily open, high, close (dollars) of a drifting share, oldest first."""
    rng = np.random.default_rng(11)
    returns = 0.0005 + 0.015 * rng.normal(size=STOCK_DAYS)
    close = 300.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[300.0], close[:-1]]) * (1 + 0.004 * rng.normal(size=STOCK_DAYS))
    high = np.maximum(open_, close) * (1 + np.abs(0.006 * rng.normal(size=STOCK_DAYS)))
    return np.stack([open_, high, close], axis=1).astype(np.float32)


def _stock_windows(columns):
    """22 days of the columns in, the next day's close (the last column) out; train, then held-out days."""
    n = STOCK_TRAIN + STOCK_VALID
    x = np.stack([columns[i:i + STOCK_WINDOW] for i in range(n)])
    y = columns[STOCK_WINDOW:STOCK_WINDOW + n, -1:]
    return (x[:STOCK_TRAIN], y[:STOCK_TRAIN]), (x[STOCK_TRAIN:], y[STOCK_TRAIN:])


def _stock_setup(normalise):
    prices = _stock()
    if normalise:  # each column scaled to 0..1, as the asker's later code does (MinMaxScaler per column)
        low, high = prices.min(axis=0), prices.max(axis=0)
        columns = (prices - low) / (high - low)
    else:  # the notebook: the prices divided by 100
        columns = prices / 100.0
    (xt, yt), valid = _stock_windows(columns.astype(np.float32))
    uniform = keras.initializers.RandomUniform(-0.05, 0.05)  # Keras 1's init='uniform'
    model = keras.Sequential([
        keras.Input((STOCK_WINDOW, 3)),
        keras.layers.LSTM(128, return_sequences=True),
        keras.layers.Dropout(0.2),
        keras.layers.LSTM(64),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(16, activation="relu", kernel_initializer=uniform),
        keras.layers.Dense(1, activation="linear", kernel_initializer=uniform),
    ])
    model.compile(loss="mse", optimizer="adam", metrics=["mae"])
    return Setup(model, xt, yt, 7, 32, validation_data=valid)  # 33 steps an epoch, 231 steps


# --- healthy controls -------------------------------------------------------------


@case(family="forecasting", part="test", batch=2)
def fc_lstm_healthy():
    """Healthy: LSTM(32) -> Dense(1) on standardised windows and targets, Adam, MSE.

    Source: the TensorFlow "Time series forecasting" tutorial's single-step LSTM model on
    standardised features and labels (https://www.tensorflow.org/tutorials/structured_data/time_series).
    """
    return _load_setup(_recurrent("lstm"), keras.optimizers.Adam(1e-3))


@case(family="forecasting", part="test", batch=2)
def fc_gru_healthy():
    """Healthy: GRU(32) -> Dense(1) with a linear head, standardised targets, Adam, MSE.

    Source: Jason Brownlee, "How to Develop LSTM Models for Time Series Forecasting"
    (a recurrent layer and a linear Dense(1) head,
    https://machinelearningmastery.com/how-to-develop-lstm-models-for-time-series-forecasting/),
    with a GRU.
    """
    return _load_setup(_recurrent("gru"), keras.optimizers.Adam(1e-3))


@case(family="forecasting", part="test", batch=2)
def fc_dilated_healthy():
    """Healthy: four causal dilated Conv1D layers (WaveNet-style), SGD(1e-3, momentum=0.9), batches of 16, 4 epochs.

    Source: the WaveNet-style forecaster of "Hands-On Machine Learning" chapter 15
    (causal Conv1D layers with dilation rates 1, 2, 4, 8,
    https://github.com/ageron/handson-ml2/blob/master/15_processing_sequences_using_rnns_and_cnns.ipynb).
    """
    return _load_setup(_dilated(), keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9), epochs=4, batch=16)


@case(family="forecasting", part="test", batch=2, report=STOCK_REPORT)
def fc_stock_lstm_normalised():
    """Fix: the reported two-layer LSTM stock model with each price column scaled to 0..1.

    LSTM(128) -> Dropout -> LSTM(64) -> Dropout -> Dense(16, relu) -> Dense(1), Adam, MSE,
    22 days of open, high and close in, the next close out; with the columns min-max
    scaled the LSTM's gates work on inputs of unit size and the model tracks the price.

    Source: keras-team/keras issue 6004, "Inconsistency for decreasing loss" (the asker,
    closing it: "By applying normalization, the problem will be solved",
    https://github.com/keras-team/keras/issues/6004).
    """
    return _stock_setup(normalise=True)


# --- faults ------------------------------------------------------------------------


@case(family="forecasting", part="test", batch=2, twin="fc_lstm_healthy", expect=("unscaled-targets",))
def fc_raw_target():
    """Windows standardised but the target left in megawatts (~5,000 +- 1,300): the LSTM cannot reach it.

    The scaler was fitted and applied to the inputs only. The linear head starts near 0
    with errors of ~5,000: Adam moves each weight ~1e-3 a step, so after the run the
    predictions are still a small fraction of the load and the validation error is
    thousands of megawatts, where the twin's is a fraction of one standard deviation.

    Source: Jason Brownlee, "How to Scale Data for Long Short-Term Memory Networks in
    Python" (scale the output variable as well as the inputs,
    https://machinelearningmastery.com/how-to-scale-data-for-long-short-term-memory-networks-in-python/).
    """
    return _load_setup(_recurrent("lstm"), keras.optimizers.Adam(1e-3), target="raw")


@case(family="forecasting", part="test", batch=2, twin="fc_gru_healthy", expect=("output-range-mismatch",))
def fc_gru_relu_head():
    """GRU(32) -> Dense(1, activation="relu") on a standardised target, half of which is negative.

    The ReLU head cannot output a negative load deviation: every hour below the mean is
    predicted as 0 at best, and on those examples the head passes back no gradient.

    Source: ProteomicsML pull request 203, "Do not use ReLU activation for the final
    regression layer" (an LSTM returning 0 for everything because of a ReLU output,
    https://github.com/ProteomicsML/ProteomicsML/pull/203).
    """
    return _load_setup(_recurrent("gru", head_activation="relu"), keras.optimizers.Adam(1e-3))


@case(family="forecasting", part="test", batch=2, twin="fc_dilated_healthy", expect=("too-few-steps",))
def fc_dilated_one_epoch():
    """The dilated Conv1D forecaster stopped after 1 epoch (150 steps) of the 4 it needs.

    The same model, optimizer and batches as the twin; at the end of the first epoch the
    loss is still falling steeply at healthy step sizes, several times the twin's.

    Source: the WaveNet-style forecaster of "Hands-On Machine Learning" chapter 15
    (https://github.com/ageron/handson-ml2/blob/master/15_processing_sequences_using_rnns_and_cnns.ipynb),
    trained for a quarter of its epochs.
    """
    return _load_setup(_dilated(), keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9), epochs=1, batch=16)


@case(family="forecasting", part="test", batch=2, twin="fc_lstm_healthy", expect=("unexplained",))
def fc_shuffled_targets():
    """Training targets shuffled apart from their windows: no next hour belongs to its last 24 hours.

    The windows and the targets were shuffled as two separate arrays before training;
    the model can only learn the targets' mean, and the held-out error (on correctly
    aligned windows) stays at the variance of the load. No finding id names misaligned
    targets.

    Source: the TensorFlow "Time series forecasting" tutorial
    (https://www.tensorflow.org/tutorials/structured_data/time_series), with the labels
    shuffled apart from their windows.
    """
    return _load_setup(_recurrent("lstm"), keras.optimizers.Adam(1e-3), shuffle_targets=True)


@case(family="forecasting", part="test", batch=2, twin="fc_stock_lstm_normalised", expect=("unscaled-inputs",),
      report=STOCK_REPORT)
def fc_stock_lstm_prices():
    """A port of keras issue 6004: the LSTM stock model on prices divided by 100 (3 to 9): the loss stalls.

    The notebook the asker ran only divides the prices by 100: the inputs sit between 3
    and 9, the LSTMs' gates and cell inputs saturate on them, and the model settles on a
    near-constant prediction with a training loss near the variance of the close.

    Source: keras-team/keras issue 6004, "Inconsistency for decreasing loss" (the
    etai83/lstm_stock_prediction notebook, prices / 100, a loss stuck at 3.x after 1,500
    epochs, https://github.com/keras-team/keras/issues/6004).
    """
    return _stock_setup(normalise=False)

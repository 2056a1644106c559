"""Real reported bugs of tabular MLPs that would not converge, each beside its confirmed fix.

Each case ports one report (its model, loss, optimizer and bug, at small scale, on
synthetic numpy data of the same structure); its healthy twin is the fix the answer,
the maintainers or the asker confirmed. The data are the posts' own: a polynomial
or a line of one input sampled on a grid of whole numbers, the in-between points
held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

LINE_REPORT = "https://github.com/keras-team/keras/issues/3040"
LINEAR_REPORT = ("https://stats.stackexchange.com/questions/418955/"
                 "why-is-deep-neural-net-with-linear-activation-diverges")


@functools.cache
def _square():
    """y = x**2 + 3 for x = 0..99, inputs standardised; held out: the midpoints 0.5..98.5."""
    x = np.arange(100.0)
    xv = np.arange(0.5, 99.0, 1.0)
    mean, std = x.mean(), x.std()
    return ((x - mean) / std)[:, None].astype(np.float32), (x ** 2 + 3)[:, None].astype(np.float32), \
        ((xv - mean) / std)[:, None].astype(np.float32), (xv ** 2 + 3)[:, None].astype(np.float32)


def _square_setup(scaled):
    x, y, xv, yv = _square()
    if scaled:  # the asker's update: standardise the target as well
        mean, std = y.mean(), y.std()
        y, yv = (y - mean) / std, (yv - mean) / std
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation=None),
                              keras.layers.Dense(1, activation=None)])
    model.compile("sgd", loss="mse")
    # The question fits 300 epochs of the default batch (32); here 100 examples in batches
    # of 5, 20 steps an epoch, for 30 epochs: 600 steps.
    return Setup(model, x, y, 30, 5, validation_data=(xv, yv))


@functools.cache
def _line():
    """y = 2x for x = 0..199 as raw numbers; held out: the midpoints 0.5..198.5."""
    x = np.arange(200.0)
    xv = np.arange(0.5, 199.0, 1.0)
    return x[:, None].astype(np.float32), (2 * x)[:, None].astype(np.float32), \
        xv[:, None].astype(np.float32), (2 * xv)[:, None].astype(np.float32)


def _line_setup(learning_rate):
    x, y, xv, yv = _line()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.SGD(learning_rate=learning_rate))
    # One epoch with batch_size=1, as in the issue: 200 steps.
    return Setup(model, x, y, 1, 1, validation_data=(xv, yv))


# --- healthy twins (the accepted fixes) --------------------------------------------


@case(family="tabular_bugs", part="test", report=LINEAR_REPORT)
def tab_linear_net_scaled_target():
    """Fix: the two-layer linear net fitted to x**2 + 3 with the target standardised.

    Source: "Why is deep neural net with linear activation diverges?" (Cross Validated
    418955; the asker's update: the divergence is caused by the unscaled target,
    https://stats.stackexchange.com/questions/418955/why-is-deep-neural-net-with-linear-activation-diverges).
    """
    return _square_setup(scaled=True)


@case(family="tabular_bugs", part="test", report=LINE_REPORT)
def tab_line_sgd_small_lr():
    """Fix: the one-unit linear regression on y = 2x with SGD's learning rate lowered to 1e-5.

    Source: keras-team/keras issue 3040, "Simple Linear Regression Nan's after a few
    iterations" (the reporter: "realized my learning rate was too high",
    https://github.com/keras-team/keras/issues/3040).
    """
    return _line_setup(1e-5)


# --- faults ------------------------------------------------------------------------


@case(family="tabular_bugs", part="test", twin="tab_linear_net_scaled_target",
      expect=("unscaled-targets", "diverged"), report=LINEAR_REPORT)
def tab_linear_net_unscaled_target():
    """Dense(1) -> Dense(1) with SGD on x**2 + 3 (targets up to ~10,000) left unscaled: diverges.

    The squared error's gradient is ~1e4 times the output's scale; at SGD's default
    learning rate 0.01 the first steps overshoot, the weights oscillate with growing
    amplitude and the loss goes to inf and NaN within the first epoch.

    Source: "Why is deep neural net with linear activation diverges?" (Cross Validated
    418955, https://stats.stackexchange.com/questions/418955/why-is-deep-neural-net-with-linear-activation-diverges).
    """
    return _square_setup(scaled=False)



@case(family="tabular_bugs", part="test", twin="tab_line_sgd_small_lr", expect=("huge-steps", "diverged"),
      report=LINE_REPORT)
def tab_line_sgd_lr_1e3():
    """Dense(1) on y = 2x for x = 0..199 with SGD(lr=0.001), one example a step: NaN within the epoch.

    The squared error's curvature in the weight is 2x**2, up to ~80,000: any step
    size over ~2.5e-5 overshoots on the large inputs, each overshoot larger than the
    last, and the weight reaches inf and NaN within the single epoch.

    Source: keras-team/keras issue 3040, "Simple Linear Regression Nan's after a few
    iterations" (x = range(200), y = 2x, SGD(lr=0.001), batch_size=1,
    https://github.com/keras-team/keras/issues/3040).
    """
    return _line_setup(1e-3)

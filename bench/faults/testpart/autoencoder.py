"""Dense autoencoders on tabular features: reconstruct the input through a narrow code.

The data: 32 features driven by 4 hidden factors (a tanh of one random mixture plus
a second, linear one, plus noise), each feature standardised to zero mean and unit
variance, so about half of every feature's values are negative. Reconstructing with
the mean scores an MSE of 1.0; a 4-unit code can get well under 0.2. 2048 training
examples, 512 held out; the target is the input.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, FEATURES, FACTORS, CODE = 2048, 512, 32, 4, 4
EPOCHS, BATCH = 10, 32  # 640 steps


@functools.cache
def _data():
    rng = np.random.default_rng(61)
    z = rng.normal(size=(N_TRAIN + N_VALID, FACTORS))
    a = rng.normal(size=(FACTORS, FEATURES))
    b = rng.normal(size=(FACTORS, FEATURES)) * 0.5
    x = np.tanh(z @ a) + z @ b + 0.1 * rng.normal(size=(len(z), FEATURES))
    x = (x - x[:N_TRAIN].mean(axis=0)) / x[:N_TRAIN].std(axis=0)
    return x.astype(np.float32)


def _autoencoder(out_activation=None, stop_gradient=False):
    """Encoder 32 -> 64 -> 4, decoder 4 -> 64 -> 32: the Keras blog's dense autoencoder, deeper."""
    inputs = keras.Input((FEATURES,), name="features")
    h = keras.layers.Dense(64, activation="relu")(inputs)
    code = keras.layers.Dense(CODE, name="code")(h)
    if stop_gradient:
        # Meant to keep the decoder's loss from reaching a shared encoder; here it cuts
        # the only path from the reconstruction loss to the encoder.
        code = keras.ops.stop_gradient(code)
    h = keras.layers.Dense(64, activation="relu")(code)
    outputs = keras.layers.Dense(FEATURES, activation=out_activation, name="reconstruction")(h)
    return keras.Model(inputs, outputs)


def _setup(model):
    x = _data()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    xt, xv = x[:N_TRAIN], x[N_TRAIN:]
    return Setup(model, xt, xt, EPOCHS, BATCH, validation_data=(xv, xv))


# --- healthy control --------------------------------------------------------------


@case(family="autoencoder", part="test")
def ae_healthy():
    """Healthy: a dense autoencoder with a 4-unit code and a linear output, MSE, Adam.

    Source: Francois Chollet, "Building Autoencoders in Keras" (a Dense encoder and
    decoder trained to reconstruct their input,
    https://blog.keras.io/building-autoencoders-in-keras.html), with a linear output for
    standardised features.
    """
    return _setup(_autoencoder())


# --- faults ------------------------------------------------------------------------


@case(family="autoencoder", part="test", twin="ae_healthy", expect=("output-range-mismatch",))
def ae_sigmoid_output():
    """The blog's sigmoid output layer kept while the inputs are standardised (half negative).

    The sigmoid reconstructs MNIST pixels in [0, 1]; these features are not in [0, 1],
    so every negative value is reconstructed as ~0 and the MSE stays near 0.6 of the
    variance (the twin: ~0.1).

    Source: "Building Autoencoders in Keras" (Dense(784, activation='sigmoid') on pixels
    scaled to [0, 1], https://blog.keras.io/building-autoencoders-in-keras.html), and
    the Data Science Stack Exchange answer on sigmoid outputs and standardised inputs
    ("Why normalize when all features are on the same scale?",
    https://datascience.stackexchange.com/questions/39929/why-normalize-when-all-features-are-on-the-same-scale).
    """
    return _setup(_autoencoder(out_activation="sigmoid"))


@case(family="autoencoder", part="test", twin="ae_healthy", expect=("blocked-gradient",))
def ae_stop_gradient_code():
    """A keras.ops.stop_gradient between encoder and decoder: the encoder never trains.

    The decoder learns to invert whatever the randomly initialised encoder happens
    to keep of the input; the encoder's kernels receive no gradient, so the code never
    aligns with the factors and the reconstruction stays far worse than the twin's.

    Source: the TensorFlow docs of tf.stop_gradient ("the op prevents the contribution
    of its inputs to be taken into account" by the gradient,
    https://www.tensorflow.org/api_docs/python/tf/stop_gradient).
    """
    return _setup(_autoencoder(stop_gradient=True))

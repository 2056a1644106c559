"""1-D signal classifiers: convolution and pooling over synthetic waveforms, and their bugs.

The waveform task: 128 samples of one of four periodic waveforms (sine, square,
sawtooth, triangle), 2 to 6 cycles long, at a random phase and an amplitude of 0.5
to 1.5, plus white noise of standard deviation 0.3; which waveform is it? The
recordings are standardised with the training set's mean and deviation. 2,000 to
train on, 500 held out. The model is a small 1-D CNN of the Keras guides (three
Conv1D-ReLU blocks with max pooling, global average pooling, a softmax).

The engine-noise task ports the Keras "Timeseries classification with a Transformer"
example (see its cases): 128 samples of a z-normalised noise recording per example,
two classes told apart by a faint tone (5 or 9 cycles per window) under the noise.

The pixel-sequence task ports keras-tcn's sequential-MNIST example (see its cases):
10x10 glyph images of 10 classes (two strokes each, shifted by up to 2 pixels, faded
and speckled), read one pixel at a time as a sequence of 100 intensities (0-255).
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, LENGTH, CLASSES = 2000, 500, 128, 4
EPOCHS, BATCH = 8, 32  # 63 steps an epoch, 504 steps
ADC_OFFSET, ADC_GAIN = 2048.0, 400.0  # a 12-bit converter: mid-scale and counts per unit

GAP_REPORT = "https://github.com/keras-team/keras-io/issues/1813"
ENGINE_TRAIN, ENGINE_VALID = 1600, 400
TCN_REPORT = "https://github.com/philipperemy/keras-tcn/issues/27"
GLYPH_SIDE, GLYPH_TRAIN, GLYPH_VALID = 10, 2000, 500


@functools.cache
def _waveforms():
    """Standardised recordings (N, LENGTH, 1), the raw volts, and the waveform labels."""
    rng = np.random.default_rng(4096)
    n = N_TRAIN + N_VALID
    t = np.arange(LENGTH) / LENGTH
    cycles = rng.uniform(2, 6, n)[:, None]
    phase = rng.uniform(0, 1, n)[:, None]
    amplitude = rng.uniform(0.5, 1.5, n)[:, None]
    u = (cycles * t + phase) % 1.0  # position within the cycle, 0..1
    shapes = np.stack([
        np.sin(2 * np.pi * u),  # sine
        np.where(u < 0.5, 1.0, -1.0),  # square
        2 * u - 1,  # sawtooth
        1 - 4 * np.abs(u - 0.5),  # triangle
    ])
    y = rng.integers(0, CLASSES, n)
    volts = amplitude * shapes[y, np.arange(n)] + 0.3 * rng.normal(size=(n, LENGTH))
    volts = volts[:, :, None].astype(np.float32)
    mean, std = volts[:N_TRAIN].mean(), volts[:N_TRAIN].std()
    return ((volts - mean) / std).astype(np.float32), volts, y.astype(np.int32)


def _cnn(kernel_initializer="glorot_uniform"):
    """Three Conv1D-ReLU blocks with max pooling, global average pooling, a softmax over the waveforms."""
    conv = functools.partial(keras.layers.Conv1D, activation="relu", padding="same",
                             kernel_initializer=kernel_initializer)
    return keras.Sequential([
        keras.Input((LENGTH, 1)),
        conv(16, 7), keras.layers.MaxPooling1D(2),
        conv(32, 5), keras.layers.MaxPooling1D(2),
        conv(32, 3),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])


def _waveform_setup(model, optimizer, recording="standardised"):
    scaled, volts, y = _waveforms()
    x = {"standardised": scaled, "adc": (ADC_OFFSET + ADC_GAIN * volts).round().astype(np.float32)}[recording]
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


@functools.cache
def _engine():
    """Z-normalised noise recordings (N, LENGTH, 1), a faint tone of 5 (class 0) or 9 (class 1) cycles."""
    rng = np.random.default_rng(5005)
    n = ENGINE_TRAIN + ENGINE_VALID
    t = np.arange(LENGTH) / LENGTH
    y = rng.integers(0, 2, n)
    cycles = np.where(y == 1, 9.0, 5.0)[:, None]
    tone = 0.8 * np.sin(2 * np.pi * (cycles * t + rng.uniform(0, 1, (n, 1))))
    noise = np.cumsum(rng.normal(size=(n, LENGTH)), axis=1) * 0.15 + rng.normal(size=(n, LENGTH))
    x = tone + noise
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)  # each series z-normalised, as UCR's
    return x[:, :, None].astype(np.float32), y.astype(np.int32)


def _transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout):
    """The example's encoder block: attention, dropout, LayerNorm and a residual; a kernel-1 Conv1D feed-forward."""
    x = keras.layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs
    x = keras.layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def _engine_setup(data_format):
    x, y = _engine()
    inputs = keras.Input((LENGTH, 1))
    h = inputs
    # The example stacks 4 blocks of head_size 256 with 4 heads; one block of 32 with 2 heads here.
    h = _transformer_encoder(h, head_size=32, num_heads=2, ff_dim=4, dropout=0.25)
    h = keras.layers.GlobalAveragePooling1D(data_format=data_format)(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dropout(0.4)(h)
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    # The example's Adam(1e-4) needs its 150 epochs; 1e-3 reaches the same accuracy in the 250 steps here.
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  metrics=["sparse_categorical_accuracy"])
    return Setup(model, x[:ENGINE_TRAIN], y[:ENGINE_TRAIN], 5, 32,  # 50 steps an epoch, 250 steps
                 validation_data=(x[ENGINE_TRAIN:], y[ENGINE_TRAIN:]))


@functools.cache
def _glyph_pixels():
    """Pixel sequences (N, 100, 1) of 10x10 glyphs in 0-255, and the glyph classes."""
    rng = np.random.default_rng(28)
    canvas, n = GLYPH_SIDE + 2, GLYPH_TRAIN + GLYPH_VALID
    templates = np.zeros((10, canvas, canvas))
    for k in range(10):  # two straight strokes of up to 9 pixels per class
        for _ in range(2):
            r0, c0 = rng.integers(1, canvas - 1, 2)
            dr, dc = [(0, 1), (1, 0), (1, 1), (1, -1)][rng.integers(4)]
            for t in range(-4, 5):
                r, c = r0 + dr * t, c0 + dc * t
                if 0 <= r < canvas and 0 <= c < canvas:
                    templates[k, r, c] = 1
    y = rng.integers(0, 10, n)
    shift = rng.integers(0, 3, (n, 2))
    images = np.stack([templates[y[i], shift[i, 0]:shift[i, 0] + GLYPH_SIDE, shift[i, 1]:shift[i, 1] + GLYPH_SIDE]
                       for i in range(n)])
    images = np.clip(images * rng.uniform(0.6, 1.0, (n, 1, 1)) + 0.15 * rng.random(images.shape), 0, 1)
    pixels = (255 * images).round().reshape(n, GLYPH_SIDE * GLYPH_SIDE, 1).astype(np.float32)
    return pixels, y.astype(np.int32)


def _channel_normalization(x):
    """keras-tcn's "norm_relu" normalisation: each step's channels divided by their largest magnitude."""
    return x / (keras.ops.max(keras.ops.abs(x), axis=2, keepdims=True) + 1e-5)


def _tcn(filters=12, kernel_size=4, dilations=(1, 2, 4, 8, 16)):
    """keras-tcn's TCN of 2018: a 1x1 Conv1D, causal dilated residual blocks with "norm_relu" and skip
    connections, the last step's summed skips, a softmax."""
    inputs = keras.Input((GLYPH_SIDE * GLYPH_SIDE, 1))
    x = keras.layers.Conv1D(filters, 1, padding="causal")(inputs)
    skips = []
    for rate in dilations:
        h = keras.layers.Conv1D(filters, kernel_size, dilation_rate=rate, padding="causal")(x)
        h = keras.layers.Lambda(_channel_normalization)(keras.layers.Activation("relu")(h))
        h = keras.layers.Conv1D(filters, 1, padding="same")(h)
        x = keras.layers.add([x, h])
        skips.append(h)
    x = keras.layers.Activation("relu")(keras.layers.add(skips))
    x = keras.layers.Lambda(lambda t: t[:, -1, :])(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def _tcn_setup(scale):
    pixels, y = _glyph_pixels()
    x = pixels / np.float32(scale)
    model = _tcn()
    # compiled_tcn's optimizer: Adam(lr=0.002) with gradients clipped to norm 1.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.002, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x[:GLYPH_TRAIN], y[:GLYPH_TRAIN], 5, 32,  # 63 steps an epoch, 315 steps
                 validation_data=(x[GLYPH_TRAIN:], y[GLYPH_TRAIN:]))


# --- healthy controls -------------------------------------------------------------


@case(family="signals", part="test", batch=2)
def sig_healthy():
    """Healthy: standardised recordings, three Conv1D blocks, global average pooling, Adam.

    Source: the Keras "Timeseries classification from scratch" example (Conv1D-ReLU
    blocks, GlobalAveragePooling1D, a softmax, Adam, sparse categorical cross-entropy,
    https://keras.io/examples/timeseries/timeseries_classification_from_scratch/), with
    max pooling between the blocks.
    """
    return _waveform_setup(_cnn(), keras.optimizers.Adam(1e-3))


@case(family="signals", part="test", batch=2)
def sig_sgd_healthy():
    """Healthy: the same CNN trained with SGD(0.05, momentum=0.9).

    Source: Jason Brownlee, "How to Develop 1D Convolutional Neural Network Models for
    Human Activity Recognition" (Conv1D, pooling and a softmax over windows of sensor
    signals,
    https://machinelearningmastery.com/cnn-models-for-human-activity-recognition-time-series-classification/),
    trained with SGD and momentum.
    """
    return _waveform_setup(_cnn(), keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))


@case(family="signals", part="test", batch=2, report=GAP_REPORT)
def sig_transformer_pool_features():
    """Fix: the Transformer classifier pooled with data_format="channels_first", as the example prints it.

    After the encoder block the tensor is (batch, 128 steps, 1 feature); pooling with
    "channels_first" averages over the size-1 axis and keeps the 128 steps, so the
    classifier head reads the whole processed recording. (With one feature the block's
    LayerNormalizations output their biases alone, as in the published example: the
    block adds a constant to the recording and its attention receives no gradient.)

    Source: keras-team/keras-io issue 1813, "model not converging the sparse categorical
    accuracy stays same for the whole epochs." (the fix found there:
    GlobalAveragePooling1D(data_format="channels_first"), which restores the example's
    published model; also keras-io issue 1908 and pull request 2006,
    https://github.com/keras-team/keras-io/issues/1813).
    """
    return _engine_setup("channels_first")


@case(family="signals", part="test", batch=2, report=TCN_REPORT)
def sig_tcn_pixels_scaled():
    """Fix: keras-tcn's pixel-sequence classifier with the pixels divided by 255, as the example's loader does.

    Causal dilated Conv1D residual blocks (dilations 1-16, kernel 4, "norm_relu",
    skip connections) over the glyph read pixel by pixel, the last step's features, a
    softmax; Adam(0.002, clipnorm=1), sparse categorical cross-entropy.

    Source: philipperemy/keras-tcn issue 27, "I got inexplicable results on
    "mnist_pixel"" (the reporter: "The result become good after input data
    normalization"; the maintainer: "Happy to hear that it worked!",
    https://github.com/philipperemy/keras-tcn/issues/27).
    """
    return _tcn_setup(255.0)


# --- faults ------------------------------------------------------------------------


@case(family="signals", part="test", batch=2, twin="sig_healthy", expect=("unscaled-inputs",))
def sig_adc_counts():
    """The recordings fed as raw 12-bit converter counts (2048 +- ~600) instead of standardised volts.

    Every sample carries the converter's mid-scale offset of 2048: the first Conv1D's
    outputs are ~1e3 times those of the twin and dominated by the constant offset, so
    the filters' ReLUs are all on or all off whatever the waveform, and Adam's small
    steps cannot undo weights sized for unit inputs; accuracy stays far below the twin's.

    Source: the Keras "Timeseries classification from scratch" example, whose series are
    standardised before the model
    (https://keras.io/examples/timeseries/timeseries_classification_from_scratch/), here
    with the converter's raw counts left in.
    """
    return _waveform_setup(_cnn(), keras.optimizers.Adam(1e-3), recording="adc")


@case(family="signals", part="test", batch=2, twin="sig_sgd_healthy", expect=("huge-steps",))
def sig_sgd_lr_huge():
    """The SGD-trained CNN at learning rate 2.0 with momentum 0.9, 40 times the twin's.

    The first steps move every kernel by far more than its own size; the ReLUs of a
    block go dead or the logits blow up, and the loss thrashes at or above chance.

    Source: "Why is learning rate causing my neural network's weights to skyrocket?"
    (Data Science Stack Exchange 15962,
    https://datascience.stackexchange.com/questions/15962/why-is-learning-rate-causing-my-neural-networks-weights-to-skyrocket),
    on a 1-D CNN.
    """
    return _waveform_setup(_cnn(), keras.optimizers.SGD(learning_rate=2.0, momentum=0.9))


@case(family="signals", part="test", batch=2, twin="sig_healthy", expect=("constant-init", "no-gradient"))
def sig_zero_kernels():
    """Every Conv1D kernel initialised to zeros: the convolutions output 0 and pass back no gradient.

    With zero kernels (and zero biases) every block outputs ReLU(0) = 0, the pooled
    features are all 0, and the gradient reaching each kernel is a product with the
    next block's zero kernel or zero activations: only the softmax's bias learns, and
    the model predicts the class frequencies for every recording.

    Source: "What is the purpose of setting an initial weight on deep learning model?"
    (Data Science Stack Exchange 19170, on zero initialisation,
    https://datascience.stackexchange.com/questions/19170/what-is-the-purpose-of-setting-an-initial-weight-on-deep-learning-model).
    """
    return _waveform_setup(_cnn(kernel_initializer="zeros"), keras.optimizers.Adam(1e-3))


@case(family="signals", part="test", batch=2, twin="sig_transformer_pool_features", expect=("unexplained",),
      report=GAP_REPORT)
def sig_transformer_pool_time():
    """A port of keras-io issue 1813: GlobalAveragePooling1D over the time axis of a one-feature tensor.

    The Transformer example's classifier with the pooling layer's data_format set to
    "channels_last": the (batch, 128, 1) output of the encoder block is averaged over
    its 128 steps into one number per recording. With a single feature each
    LayerNormalization outputs its bias alone, so the block returns its input plus a
    constant, and the time average of a z-normalised recording is 0: the head receives
    the same number for every recording and the accuracy stays at chance. No finding id
    names an information bottleneck.

    Source: keras-team/keras-io issue 1813, "model not converging the sparse categorical
    accuracy stays same for the whole epochs." (GlobalAveragePooling1D returns (None, 1)
    on the (None, 500, 1) tensor; also keras-io issues 1908 and 2018,
    https://github.com/keras-team/keras-io/issues/1813).
    """
    return _engine_setup("channels_last")


@case(family="signals", part="test", batch=2, twin="sig_tcn_pixels_scaled", expect=("unscaled-inputs",),
      report=TCN_REPORT)
def sig_tcn_pixels_raw():
    """A port of keras-tcn issue 27: the pixel-sequence TCN fed raw intensities (0-255).

    The same TCN on the glyphs' pixels as 0-255: the 1x1 input convolution puts values
    of ~100 on the residual stream that every block adds to, the blocks' normalised
    ReLUs are dominated by a few channels, and the classifier learns far more slowly;
    the validation accuracy stays far below the twin's.

    Source: philipperemy/keras-tcn issue 27, "I got inexplicable results on
    "mnist_pixel"" (val_accuracy ~0.11 for many epochs until the inputs were normalised,
    https://github.com/philipperemy/keras-tcn/issues/27).
    """
    return _tcn_setup(1.0)

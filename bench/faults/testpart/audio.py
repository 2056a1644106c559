"""Keyword spotting on short audio clips: log-mel spectrogram classifiers, and the audio pipeline's bugs.

The data, "keywords": half-second clips sampled at 16 kHz (8,000 samples) of 10
synthetic spoken words. Each word is three "syllables" in a fixed order, picked from 6
(no two words share the same three); a syllable is a 80-120 ms harmonic tone with
its own pitch (110-260 Hz, +-5%) and its own formant (a band of emphasised harmonics),
under a rising and falling envelope. A clip starts at a random point in its first
eighth of a second, has a random loudness (peak 0.2-0.8) and background noise. The
clips are kept as a WAV file would hold them, 16-bit PCM (the float waveform times
32,767, as integers) and read back as floats in [-1, 1]. 2048 clips for training, 512
held out; chance is 10%.

Two models. The on-the-fly spectrogram model (kapre's design, here with Keras 3's own
``MelSpectrogram`` layer): raw waveforms in, a 40-band mel spectrogram in decibels
computed inside the model (512-sample FFT, 10 ms hop: 51 frames), BatchNormalization,
three Conv2D-ReLU layers and global max pooling. The frame-wise model: 40 log-mel
filterbank energies per frame (natural log, as ``python_speech_features.logfbank``
gives them) standardised by an adapted Normalization layer, three dilated Conv1D-ReLU
layers, per-frame word posteriors (a softmax per frame) averaged over the clip.
"""

from __future__ import annotations

import functools
import itertools

import keras
import numpy as np

from .. import Setup, case

SR, SAMPLES, WORDS, SYLLABLES = 16000, 8000, 10, 6
N_TRAIN, N_VALID = 2048, 512
FFT, HOP, MELS = 512, 160, 40
EPOCHS, BATCH = 5, 32  # 320 steps

KAPRE_36 = "https://github.com/keunwoochoi/kapre/issues/36"


@functools.cache
def _clips():
    """Float waveforms (N, 8000) in [-1, 1], before the PCM round trip, and word labels (N,)."""
    rng = np.random.default_rng(421)
    n = N_TRAIN + N_VALID
    pitch = rng.uniform(110, 260, SYLLABLES)
    formant = rng.uniform(500, 3500, SYLLABLES)
    combos = list(itertools.combinations(range(SYLLABLES), 3))
    words = [rng.permutation(combos[i]) for i in rng.choice(len(combos), WORDS, replace=False)]
    labels = rng.integers(0, WORDS, n)
    audio = np.zeros((n, SAMPLES), np.float32)
    for i, word in enumerate(labels):
        signal = np.zeros(SAMPLES)
        pos = rng.integers(0, 2000)
        for s in words[word]:
            length = rng.integers(1300, 1900)
            t = np.arange(length) / SR
            f0 = pitch[s] * rng.uniform(0.95, 1.05)
            tone = sum(np.exp(-((k * f0 - formant[s]) / 600.0) ** 2) * np.sin(2 * np.pi * k * f0 * t)
                       for k in range(1, 16))
            end = min(pos + length, SAMPLES)
            signal[pos:end] += (tone * np.sin(np.pi * np.arange(length) / length) ** 2)[:end - pos]
            pos = end
        signal *= rng.uniform(0.2, 0.8) / (np.abs(signal).max() + 1e-9)
        audio[i] = signal + rng.uniform(0.005, 0.03) * rng.normal(size=SAMPLES)
    return np.clip(audio, -1.0, 1.0).astype(np.float32), labels.astype(np.int32)


@functools.cache
def _pcm_waveforms(scaled):
    """The clips written as 16-bit PCM and read back as floats in [-1, 1].

    ``scaled``: the float waveform is multiplied by 32,767 before the cast to int16, as
    ``scipy.io.wavfile`` expects; otherwise it is cast as it is, which truncates every
    sample in (-1, 1) to 0.
    """
    audio = _clips()[0]
    pcm = (audio * 32767.0 if scaled else audio).astype(np.int16)
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


@functools.cache
def _log_filterbanks():
    """Natural-log mel filterbank energies (N, 51 frames, 40 bands), floored at 1e-10 as logfbank does."""
    mel = keras.layers.MelSpectrogram(fft_length=FFT, sequence_stride=HOP, sampling_rate=SR, num_mel_bins=MELS,
                                      power_to_db=False)
    waves = _pcm_waveforms(True)
    power = np.concatenate([np.asarray(mel(waves[i:i + 256])) for i in range(0, len(waves), 256)])
    return np.log(np.maximum(np.transpose(power, (0, 2, 1)), 1e-10)).astype(np.float32)


def _spectrogram_cnn(kernel_initializer="glorot_uniform"):
    """Raw waveform -> MelSpectrogram (dB) -> BatchNormalization -> three Conv2D-ReLU -> global max pool -> softmax."""
    waves = keras.Input((SAMPLES,), name="waveform")
    h = keras.layers.MelSpectrogram(fft_length=FFT, sequence_stride=HOP, sampling_rate=SR, num_mel_bins=MELS)(waves)
    h = keras.layers.Reshape((MELS, -1, 1))(h)  # (bands, frames, 1)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(16, 3, activation="relu", kernel_initializer=kernel_initializer)(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=kernel_initializer)(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=kernel_initializer)(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    out = keras.layers.Dense(WORDS, activation="softmax", kernel_initializer=kernel_initializer)(h)
    return keras.Model(waves, out)


def _spectrogram_setup(scaled_pcm=True, kernel_initializer="glorot_uniform"):
    x, y = _pcm_waveforms(scaled_pcm), _clips()[1]
    model = _spectrogram_cnn(kernel_initializer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


def _framewise_setup(softmax_axis):
    """The frame-wise spotter: per-frame word posteriors from a softmax over ``softmax_axis``, averaged over frames."""
    x, y = _log_filterbanks(), _clips()[1]
    frames = keras.Input(x.shape[1:], name="log_filterbanks")
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(x[:N_TRAIN])
    h = norm(frames)
    for dilation in (1, 2, 4):
        h = keras.layers.Conv1D(48, 5, padding="same", dilation_rate=dilation, activation="relu")(h)
    h = keras.layers.Dense(WORDS)(h)  # per-frame word scores (batch, frames, words)
    h = keras.layers.Softmax(axis=softmax_axis)(h)
    model = keras.Model(frames, keras.layers.GlobalAveragePooling1D()(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], y[:N_TRAIN], EPOCHS, BATCH, validation_data=(x[N_TRAIN:], y[N_TRAIN:]))


# --- healthy ---------------------------------------------------------------------


@case(family="audio", part="test", batch=4, report=KAPRE_36)
def au_melspec_pcm_scaled():
    """Fix: the on-the-fly mel spectrogram CNN on clips whose 16-bit PCM was written from waveform x 32767.

    Source: keunwoochoi/kapre issue 36, "Spectrogram integration issues" (the asker:
    "Fixed! ... the way i was creating the pickled raw audio numpy arrays was flawed";
    with the arrays made right, "the kapre version is training very similar to my
    original model", https://github.com/keunwoochoi/kapre/issues/36). Reaches ~86%
    validation accuracy.
    """
    return _spectrogram_setup(scaled_pcm=True)


@case(family="audio", part="test", batch=4)
def au_framewise_posteriors():
    """Healthy: the frame-wise keyword spotter, a softmax over the words at every frame, averaged over the clip.

    Source: posterior averaging over frames, the keyword-spotting scheme of Chen,
    Parada and Heigold (ICASSP 2014) as a small convolutional model reads it (Sainath
    and Parada, Interspeech 2015), on log filterbank energies as the TensorFlow
    speech-commands example feeds them,
    https://www.tensorflow.org/tutorials/audio/simple_audio. Reaches ~85% validation
    accuracy.
    """
    return _framewise_setup(softmax_axis=-1)


# --- faults ----------------------------------------------------------------------


@case(family="audio", part="test", batch=4, twin="au_melspec_pcm_scaled", expect=("unexplained", "ignores-input"),
      report=KAPRE_36)
def au_melspec_pcm_truncated():
    """The mel spectrogram CNN on clips whose float waveforms were cast to int16 without the x32767 scaling.

    Every sample of a waveform in (-1, 1) truncates to 0, so every clip is silence: the
    MelSpectrogram layer returns its floor (-100 dB) everywhere and the model sees one
    and the same input for every word. The loss stays at ln 10 and the accuracy at
    chance. No rule reads whether inputs vary at all.

    Source: keunwoochoi/kapre issue 36, "Spectrogram integration issues" (a model with
    kapre's Melspectrogram layer would not train on the asker's pickled raw audio;
    "the result was pretty much all -inf or -80dB. Which obviously wouldn't train
    well", https://github.com/keunwoochoi/kapre/issues/36).
    """
    return _spectrogram_setup(scaled_pcm=False)


@case(family="audio", part="test", batch=4, twin="au_melspec_pcm_scaled", expect=("unexplained",))
def au_melspec_kernels_normal_10():
    """The mel spectrogram CNN with every kernel drawn from RandomNormal(stddev=10) instead of Glorot.

    Each layer multiplies its input's scale by ~10 x sqrt(fan-in): the logits start in
    the millions and the first epoch's cross-entropy averages ~7e7. Adam moves each
    weight by ~1e-3 a step, nothing against weights of ~10, so the softmax stays
    saturated: the loss is still ~2.6e7 after 320 steps and the validation accuracy
    ~16% (the twin ~86%). A badly scaled random initialiser has no rule of its own
    (constant-init is for constants).

    Source: weights initialised far too large, "Wrong weights initialisation" in the
    taxonomy of Humbatova et al. (ICSE 2020); the scale a ReLU network's kernels need
    is He et al.'s (arXiv 1502.01852), ~sqrt(2 / fan-in), about 0.1 here.
    """
    return _spectrogram_setup(kernel_initializer=keras.initializers.RandomNormal(stddev=10.0))


@case(family="audio", part="test", batch=4, twin="au_framewise_posteriors", expect=("unexplained", "no-gradient"))
def au_framewise_softmax_over_frames():
    """The frame-wise spotter with Softmax(axis=1): each word's scores normalised over the frames, not the words.

    The softmax now makes every word's weights sum to one across the 51 frames, and
    their mean over the frames is exactly 1/51 for every word, whatever the input: the
    output is constant, so the loss is ln 10 from the first step and every weight's
    gradient is exactly zero. Validation accuracy ~10%.

    Source: a softmax over the wrong axis, "Wrong tensor shape / wrong indexing" in the
    taxonomy of Humbatova et al. (ICSE 2020); Keras' Softmax layer normalises over
    ``axis`` (https://keras.io/api/layers/activation_layers/softmax/), the last axis by
    default.
    """
    return _framewise_setup(softmax_axis=1)

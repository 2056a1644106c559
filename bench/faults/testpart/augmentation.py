"""Image classifiers with their augmentation and rescaling as layers inside the model (Keras 3 style).

The task: which way a glyph points. Each 24x24 RGB image holds one asymmetric "hook"
glyph (a 10x10 pattern of 2-pixel strokes) at a random place, in a random colour and
contrast, over a grey background with noise, stored as 0-255 pixel values like the
datasets ``image_dataset_from_directory`` loads; the label (4 classes) is how many
quarter turns the glyph was rotated by. Flips and small shifts or zooms keep or
mirror the glyph; rotations by up to a half turn destroy the label. 2048 images for
training, 512 held out.

The models follow the Keras and TensorFlow image-classification tutorials:
``Rescaling(1/255)``, an augmentation block (``RandomTranslation``, ``RandomZoom``),
then a small convolutional base and a softmax head. No BatchNormalization, which
would hide an input scale.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, SIZE, CLASSES = 2048, 512, 24, 4
EPOCHS, BATCH = 8, 32  # 512 steps

CNN_NOT_IMPROVING = "https://newbedev.com/cnn-with-keras-accuracy-not-improving"


@functools.cache
def _glyphs():
    """0-255 valued float32 images (N, 24, 24, 3) and orientation labels (N,) int32."""
    rng = np.random.default_rng(81)
    glyph = np.zeros((10, 10))
    glyph[1:9, 2:4] = 1  # the stem
    glyph[7:9, 2:8] = 1  # the foot
    glyph[1:3, 2:6] = 1  # the hook at the top
    n = N_TRAIN + N_VALID
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    images = np.empty((n, SIZE, SIZE, 3))
    for i, k in enumerate(labels):
        canvas = np.zeros((SIZE, SIZE))
        r, c = rng.integers(1, SIZE - 11, 2)
        canvas[r:r + 10, c:c + 10] = np.rot90(glyph, k)
        colour = rng.uniform(0.4, 1.0, 3) * rng.uniform(0.6, 1.0)
        images[i] = canvas[:, :, None] * colour + 0.2 + 0.1 * rng.normal(size=(SIZE, SIZE, 3))
    return np.clip(np.round(images * 255), 0, 255).astype(np.float32), labels


def _augmentation(rotation=None):
    layers = [keras.layers.RandomTranslation(0.1, 0.1), keras.layers.RandomZoom(0.1)]
    if rotation is not None:
        layers.append(keras.layers.RandomRotation(rotation))
    return keras.Sequential(layers, name="augmentation")


def _conv_base(trainable=True):
    base = keras.Sequential([
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
    ], name="conv_base")
    base.trainable = trainable
    return base


def _classifier(augmentation=None, rescale=True, trainable_base=True, sigmoid_head=False):
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Rescaling(1.0 / 255)(inputs) if rescale else inputs
    h = (augmentation or _augmentation())(h)
    h = _conv_base(trainable_base)(h)
    h = keras.layers.Dropout(0.25)(h)
    head = keras.layers.Dense(1, activation="sigmoid") if sigmoid_head else keras.layers.Dense(
        CLASSES, activation="softmax")
    return keras.Model(inputs, head(h))


def _setup(model, loss="sparse_categorical_crossentropy", prescale=1.0, column_labels=False):
    x, y = _glyphs()
    x = x * np.float32(prescale)
    targets = y.astype(np.float32)[:, None] if column_labels else y
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    return Setup(model, x[:N_TRAIN], targets[:N_TRAIN], EPOCHS, BATCH,
                 validation_data=(x[N_TRAIN:], targets[N_TRAIN:]))


# --- healthy controls -------------------------------------------------------------


@case(family="augmentation", part="test", batch=2)
def aug_healthy():
    """Healthy: Rescaling(1/255), RandomTranslation and RandomZoom inside the model, a small convnet, softmax.

    Source: the TensorFlow "Data augmentation" tutorial's first option, the
    preprocessing and augmentation layers made part of the model
    (https://www.tensorflow.org/tutorials/images/data_augmentation), with the
    "Image classification" tutorial's Rescaling layer first
    (https://www.tensorflow.org/tutorials/images/classification).
    """
    return _setup(_classifier())


# --- faults ------------------------------------------------------------------------


@case(family="augmentation", part="test", batch=2, twin="aug_healthy", expect=("unscaled-inputs",))
def aug_rescaled_twice():
    """Pixels divided by 255 before fit and again by the model's Rescaling(1/255): inputs of ~0.004 at most.

    The convolutions see images about 255 times fainter than the twin's; their
    outputs, the gradients reaching the first kernels and the logits are all tiny, and
    at Adam's default step the kernels cannot grow by the needed factor of ~255 within
    the run: the loss stays at ln 4 and the accuracy at chance.

    Source: the TensorFlow "Image classification" tutorial's two ways of standardizing
    (a Rescaling layer in the model, or ``dataset.map`` with it beforehand; doing both
    scales twice, https://www.tensorflow.org/tutorials/images/classification), and
    Priyanshu-byte-coder/devtrack issue 927, "Inference applies duplicate pixel
    normalization despite model Rescaling layer"
    (https://github.com/Priyanshu-byte-coder/devtrack/issues/927).
    """
    return _setup(_classifier(), prescale=1.0 / 255.0)


@case(family="augmentation", part="test", batch=2, twin="aug_healthy", expect=("unexplained",))
def aug_rotation_destroys_labels():
    """RandomRotation(0.5) added to the augmentation: each training glyph turned by up to half a turn either way.

    The label is the glyph's orientation; a random rotation by up to 180 degrees maps
    every class onto every other, so the training images carry no information about
    their labels. Nothing in the optimisation is wrong: the model learns the class
    prior and stays at chance on the (unrotated) validation images.

    Source: the Keras RandomRotation documentation (``factor`` as a fraction of 2 pi:
    0.5 rotates by up to a half turn either way,
    https://keras.io/api/layers/preprocessing_layers/image_augmentation/random_rotation/),
    and the TensorFlow data-augmentation tutorial's warning that augmentations must
    keep the label (https://www.tensorflow.org/tutorials/images/data_augmentation).
    """
    return _setup(_classifier(augmentation=_augmentation(rotation=0.5)))


@case(family="augmentation", part="test", batch=2, twin="aug_healthy", expect=("frozen-layers",))
def aug_frozen_random_base():
    """The convolutional base frozen (``base.trainable = False``) although it was never pretrained.

    The transfer-learning recipe freezes a base that holds ImageNet weights; here the
    base was built with random weights (``weights=None`` in keras.applications, or
    layers of one's own), so only the softmax head trains, on random features pooled
    over the image, which do not tell the glyph's orientation: accuracy stays near
    chance.

    Source: the Keras "Transfer learning & fine-tuning" guide (freeze the base with
    ``base_model.trainable = False``, which assumes pretrained weights,
    https://keras.io/guides/transfer_learning/), and MaharshSuryawala/Food-Image-Recognition
    issue 3 on ``weights=None`` giving a randomly initialised base
    (https://github.com/MaharshSuryawala/Food-Image-Recognition/issues/3).
    """
    return _setup(_classifier(trainable_base=False))


@case(family="augmentation", part="test", batch=2, twin="aug_healthy",
      expect=("loss-target-mismatch", "labels-not-class-indices"))
def aug_sigmoid_head_four_classes():
    """Four classes (labels 0-3) fed to one sigmoid unit under binary cross-entropy.

    Binary cross-entropy against a label of 2 or 3 is -y log p - (1 - y) log(1 - p)
    with a negative second weight: it is minimised by pushing p to 1 and has no
    floor but the clipping, so the loss goes negative and the single unit cannot
    separate four classes; accuracy (thresholding p at 0.5 against labels 0-3) stays
    low whatever happens.

    Source: "CNN with keras, accuracy not improving" (the Keras blog's small-data
    convnet with ImageDataGenerator augmentation, Dense(1, sigmoid), binary
    cross-entropy and class_mode='binary' on three classes; the answer: Dense(3,
    softmax), categorical cross-entropy, class_mode='categorical'; mirrored at
    https://newbedev.com/cnn-with-keras-accuracy-not-improving).
    """
    return _setup(_classifier(sigmoid_head=True), loss="binary_crossentropy", column_labels=True)

"""Small segmentation networks (U-Net, SegNet) labelling every pixel of synthetic 16x16 images.

The task: grey images of noise holding two to four bright shapes, each a filled
square (class 1) or a plus sign (class 2) on the background (class 0); both shapes
have the same brightness, so only their form tells them apart. Each image has its
own exposure (a gain of 0.4-2.5 and an offset of +-0.4), as photographs do. Masks are
stored as image files store them: grey levels 0 / 128 / 255 for the three classes,
and, for the binary (shape / no shape) task, a 16-bit PNG's 0 / 65535. 384 training
images (the SegNet pair uses the first 304), 128 held out; 80% of the pixels are
background, 14% squares, 6% plus signs, so predicting the class shares everywhere
scores a cross-entropy of 0.62.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID, SIZE, CLASSES = 384, 128, 16, 3
EPOCHS, BATCH = 8, 16  # 192 steps
SEGNET_TRAIN = 304  # the SegNet pair: 608 steps at batch size 1, 152 at 4
GAIN, OFFSET = (0.4, 2.5), 0.4
GREY_LEVELS = np.array([0, 128, 255], np.float32)  # how the mask files store classes 0, 1, 2


@functools.cache
def _images():
    """Images (N, 16, 16, 1) after exposure (about -0.4 to 2.9), class indices (N, 16, 16), grey-level masks."""
    rng = np.random.default_rng(71)
    n = N_TRAIN + N_VALID
    images = rng.uniform(0.0, 0.35, size=(n, SIZE, SIZE)).astype(np.float32)
    classes = np.zeros((n, SIZE, SIZE), np.int32)
    for i in range(n):
        for _ in range(rng.integers(2, 5)):
            kind, r, c = rng.integers(1, 3), rng.integers(3, SIZE - 3), rng.integers(3, SIZE - 3)
            if kind == 1:
                half = rng.integers(1, 4)
                rows, cols = slice(r - half, r + half + 1), slice(c - half, c + half + 1)
                classes[i, rows, cols] = 1
                images[i, rows, cols] = rng.uniform(0.65, 1.0)
            else:
                arm = rng.integers(2, 5)
                classes[i, r - arm:r + arm + 1, c] = 2
                classes[i, r, c - arm:c + arm + 1] = 2
                value = rng.uniform(0.65, 1.0)
                images[i, r - arm:r + arm + 1, c] = value
                images[i, r, c - arm:c + arm + 1] = value
    gain = rng.uniform(GAIN[0], GAIN[1], size=(n, 1, 1)).astype(np.float32)
    offset = rng.uniform(-OFFSET, OFFSET, size=(n, 1, 1)).astype(np.float32)
    images = images * gain + offset
    return images[..., None], classes, GREY_LEVELS[classes]


def _split(x, y):
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _block(h, filters, batchnorm=False, dropout=0.0):
    """Two 3x3 convolutions, each optionally batch-normalised, with ReLU (the TGS U-Net's conv2d_block)."""
    for _ in range(2):
        h = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(h)
        if batchnorm:
            h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("relu")(h)
    if dropout:
        h = keras.layers.Dropout(dropout)(h)
    return h


def _unet(out_units=CLASSES, out_activation="softmax", filters=12, batchnorm=False, dropout=0.0):
    """A two-level U-Net: conv blocks down with max pooling, Conv2DTranspose up, skip concatenations."""
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    c1 = _block(inputs, filters, batchnorm)
    c2 = _block(keras.layers.Dropout(dropout)(keras.layers.MaxPooling2D()(c1)), filters * 2, batchnorm)
    c3 = _block(keras.layers.Dropout(dropout)(keras.layers.MaxPooling2D()(c2)), filters * 3, batchnorm)
    u2 = keras.layers.Conv2DTranspose(filters * 2, 3, strides=2, padding="same")(c3)
    c4 = _block(keras.layers.Dropout(dropout)(keras.layers.Concatenate()([u2, c2])), filters * 2, batchnorm)
    u1 = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same")(c4)
    c5 = _block(keras.layers.Dropout(dropout)(keras.layers.Concatenate()([u1, c1])), filters, batchnorm)
    return keras.Model(inputs, keras.layers.Conv2D(out_units, 1, activation=out_activation)(c5))


def _segnet():
    """A SegNet-style encoder-decoder: three Conv-BN-ReLU stages down to 2x2, upsampling back, no skips."""
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    h = inputs
    for filters in (16, 24, 32):
        h = _block(h, filters, batchnorm=True)
        h = keras.layers.MaxPooling2D()(h)
    for filters in (32, 24, 16):
        h = keras.layers.UpSampling2D()(h)
        h = _block(h, filters, batchnorm=True)
    return keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1, activation="softmax")(h))


def _multiclass(model, targets, optimizer=None, epochs=EPOCHS, batch_size=BATCH, n_train=N_TRAIN):
    images, _, _ = _images()
    train, valid = _split(images, targets)
    train = (train[0][:n_train], train[1][:n_train])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return Setup(model, train[0], train[1], epochs, batch_size, validation_data=valid)


def _class_indices():
    """The fix: grey levels mapped back to class indices (0 / 128 / 255 -> 0 / 1 / 2)."""
    _, _, grey = _images()
    return np.searchsorted(GREY_LEVELS, grey).astype(np.int32)[..., None]


def _binary(mask_scale):
    """The TGS U-Net on shape / no shape, masks read from 16-bit files (0 / 65535) and divided by ``mask_scale``."""
    images, classes, _ = _images()
    masks = (classes > 0).astype(np.float32)[..., None] * np.float32(65535.0) / np.float32(mask_scale)
    train, valid = _split(images, masks)
    model = _unet(out_units=1, out_activation="sigmoid", filters=8, batchnorm=True, dropout=0.05)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return Setup(model, train[0], train[1], EPOCHS, BATCH, validation_data=valid)


# --- healthy controls -------------------------------------------------------------


@case(family="segmentation", part="test")
def seg_unet_healthy():
    """Healthy: a small U-Net, per-pixel softmax, sparse categorical cross-entropy on class-index masks, Adam.

    Source: the Keras example "Image segmentation with a U-Net-like architecture"
    (per-pixel softmax, sparse_categorical_crossentropy on integer masks,
    https://keras.io/examples/vision/oxford_pets_image_segmentation/), on synthetic shapes.
    """
    return _multiclass(_unet(), _class_indices())


@case(family="segmentation", part="test", report="https://github.com/hlamba28/UNET-TGS/issues/8")
def seg_tgs_masks_healthy():
    """Healthy (the fix of UNET-TGS issue 8): the TGS U-Net with its 16-bit masks normalised to 0 / 1.

    Conv-BN-ReLU blocks, dropout, Conv2DTranspose, a sigmoid output, Adam and binary
    cross-entropy, as the repository's notebook; the masks divided by their maximum,
    65535, so that salt is 1 and sediment 0.

    Source: hlamba28/UNET-TGS issue 8 "normalization code for image data in mask
    directory does not work" (the masks had to be normalised separately,
    https://github.com/hlamba28/UNET-TGS/issues/8).
    """
    return _binary(mask_scale=65535.0)


@case(family="segmentation", part="test", report="https://github.com/alexgkendall/caffe-segnet/issues/109")
def seg_segnet_batch4_healthy():
    """Healthy (the fix of caffe-segnet issue 109): the BatchNorm SegNet trained with batches of 4 images.

    Source: alexgkendall/caffe-segnet issue 109 "Batch Normalization Issue in SegNet"
    (predictions with the computed BN statistics look wrong after training with batch
    size 1; with batch size 4 they are as expected,
    https://github.com/alexgkendall/caffe-segnet/issues/109).
    """
    return _multiclass(_segnet(), _class_indices(), optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                       epochs=2, batch_size=4, n_train=SEGNET_TRAIN)


# --- faults ------------------------------------------------------------------------


@case(family="segmentation", part="test", twin="seg_unet_healthy", expect=("labels-not-class-indices",))
def seg_masks_divided_by_255():
    """Grey-level masks divided by 255 like the images: the labels become 0, 0.502 and 1.0, not 0, 1, 2.

    The sparse cross-entropy casts its labels to integers, so the squares' 0.502 turns
    into background and the plus signs' 1.0 into class 1: the model learns to call
    squares background and never predicts class 2, and its pixel accuracy against the
    stored masks stays below the share of non-square pixels.

    Source: "How to load Image Masks (Labels) for Image Segmentation in Keras" (masks
    must hold class indices, not colours, https://newbedev.com/how-to-load-image-masks-labels-for-image-segmentation-in-keras);
    the Keras U-Net example subtracting 1 from its trimap masks so that they are 0, 1, 2
    (https://keras.io/examples/vision/oxford_pets_image_segmentation/).
    """
    _, _, grey = _images()
    return _multiclass(_unet(), (grey / np.float32(255.0))[..., None])


@case(family="segmentation", part="test", twin="seg_tgs_masks_healthy", expect=("labels-not-class-indices",),
      report="https://github.com/hlamba28/UNET-TGS/issues/8")
def seg_tgs_masks_257():
    """A port of UNET-TGS issue 8: 16-bit masks (0 / 65535) divided by 255, so salt is 257, not 1.

    Binary cross-entropy with a target of 257 is ``-257 log p + 256 log(1 - p)``,
    unbounded below as p goes to 1: the loss runs negative and the sigmoid is pushed to
    1 on every pixel the model can, background included.

    Source: hlamba28/UNET-TGS issue 8 "normalization code for image data in mask
    directory does not work" (dividing the masks by 255.0 left them unnormalised and
    the binary cross-entropy went negative, https://github.com/hlamba28/UNET-TGS/issues/8).
    """
    return _binary(mask_scale=255.0)


@case(family="segmentation", part="test", twin="seg_segnet_batch4_healthy", expect=("batchnorm-small-batch",),
      report="https://github.com/alexgkendall/caffe-segnet/issues/109")
def seg_segnet_batch1():
    """A port of caffe-segnet issue 109: the BatchNorm SegNet trained one image per batch.

    In training each BatchNormalization normalises with one image's statistics: they
    undo its exposure, and at the 2x2 and 4x4 stages they are means and variances of 4
    or 16 numbers. The moving averages used at inference mix all images, so validation
    sees activations on another scale than training ever did, and its loss ends above
    that of predicting the class shares everywhere while the training loss falls.

    Source: alexgkendall/caffe-segnet issue 109 "Batch Normalization Issue in SegNet"
    (trained with batch size 1, the network's predictions with the global BN
    statistics are very bad; batch size 4 fixes them,
    https://github.com/alexgkendall/caffe-segnet/issues/109).
    """
    return _multiclass(_segnet(), _class_indices(), optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                       epochs=2, batch_size=1, n_train=SEGNET_TRAIN)

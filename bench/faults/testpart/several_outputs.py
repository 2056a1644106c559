"""Models with several outputs: functional Keras models with two to four heads, each with its own loss.

Each model shares a trunk between its heads and is compiled with a list or a dict of
losses (by output layer name) and loss weights. Each fault is confined to one head, or
is one the whole model shares (its optimizer, its inputs); the other heads are healthy.
The data:

- "tickets": the customer-support ticket model of "Deep Learning with Python" and of the
  Keras functional-API guide. Three inputs: the title and the body as bags of words
  (multi-hot over a 400-word vocabulary) and 16 tags (multi-hot). Four departments
  own 30 keywords each; a ticket goes to one department (half of them), two (a third)
  or three, and its title and body carry keywords of those. Two targets: the
  departments (multi-hot, 4) and a priority score in (0, 1), a logistic function of
  the urgent words in the body (20 words) and of three tags. 2048 tickets to train
  on, 512 held out.
- "faces": face attributes read from a 32-feature face embedding (what a frozen face
  encoder returns): age (18 to 80 years, a smooth nonlinear function of the features),
  gender (a noisy threshold of another) and one of 5 ethnic groups (the largest of
  five linear scores, plus noise). 2048 faces to train on, 512 held out.
- "listings": house listings, 16 standardised columns, three targets: the price
  (standardised; a nonlinear function of the columns), a market segment (4 classes,
  the largest of four linear scores) and whether it sold within a month (a noisy
  threshold). 2048 listings to train on, 512 held out.
- "captchas": 24x64 grey images holding 4 digits drawn from 10 fixed 5x7 glyphs
  (scaled 2x, jittered by up to 2 pixels), on a noisy background, stored as 0-255
  pixels; one target per position (one-hot, 10 digits). 2048 to train on, 512 held out.
- "road marks": 48x64 grey frames (downscaled from a 480x640 camera) holding one road
  mark of 3 kinds (a bar, a cross, a ring) of random size at a random place, on a
  noisy road texture; the targets are its kind (one-hot) and its bounding box (x0,
  y0, x1, y1), either in the camera's pixels (0-640, 0-480) or as fractions of the
  frame. 1536 frames to train on, 512 held out.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .. import Setup, case

N_TRAIN, N_VALID = 2048, 512
VOCAB, TAGS, DEPARTMENTS = 400, 16, 4
FACE_FEATURES, GROUPS, MAX_AGE = 32, 5, 100.0
LISTING_FEATURES, SEGMENTS = 16, 4
GLYPHS, POSITIONS, CAPTCHA_H, CAPTCHA_W = 10, 4, 24, 64
FRAME_H, FRAME_W, CAMERA_H, CAMERA_W, MARKS = 48, 64, 480.0, 640.0, 3
N_FRAMES_TRAIN = 1536

CAPTCHA_16 = "https://github.com/ypwhs/captcha_break/issues/16"
VPGNET_53 = "https://github.com/SeokjuLee/VPGNet/issues/53"


def _split(n_train, *arrays):
    """(train, valid) pairs of the given arrays, split at n_train."""
    return [a[:n_train] for a in arrays], [a[n_train:] for a in arrays]


# --- data --------------------------------------------------------------------------


@functools.cache
def _tickets():
    """Title and body bags of words (N, 400), tags (N, 16), priority (N, 1), departments (N, 4) multi-hot."""
    rng = np.random.default_rng(301)
    n = N_TRAIN + N_VALID
    keywords = np.arange(DEPARTMENTS * 30).reshape(DEPARTMENTS, 30)
    urgent = np.arange(120, 140)
    filler = np.arange(140, VOCAB)
    title = np.zeros((n, VOCAB), np.float32)
    body = np.zeros((n, VOCAB), np.float32)
    departments = np.zeros((n, DEPARTMENTS), np.float32)
    tags = (rng.random((n, TAGS)) < 0.15).astype(np.float32)
    urgent_count = rng.poisson(1.0, n)
    for i in range(n):
        k = rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])
        for d in rng.choice(DEPARTMENTS, k, replace=False):
            departments[i, d] = 1.0
            title[i, rng.choice(keywords[d], 1)] = 1.0
            body[i, rng.choice(keywords[d], 3, replace=False)] = 1.0
        title[i, rng.choice(filler, 4, replace=False)] = 1.0
        body[i, rng.choice(filler, 20, replace=False)] = 1.0
        body[i, rng.choice(urgent, urgent_count[i], replace=False)] = 1.0
    score = 1.2 * (urgent_count - 1.0) + 1.0 * tags[:, 0] + 0.8 * tags[:, 1] - 0.8 * tags[:, 2]
    priority = 1.0 / (1.0 + np.exp(-(score + 0.3 * rng.normal(size=n))))
    return title, body, tags, priority.astype(np.float32)[:, None], departments


@functools.cache
def _faces():
    """Face embeddings (N, 32), age in years (N, 1), gender (N, 1), ethnic group one-hot (N, 5)."""
    rng = np.random.default_rng(302)
    n = N_TRAIN + N_VALID
    z = rng.normal(size=(n, FACE_FEATURES)).astype(np.float32)
    s = 1.2 * z[:, 0] + 0.8 * z[:, 1] * z[:, 2] + 0.6 * np.sin(2.0 * z[:, 3]) + 0.3 * rng.normal(size=n)
    age = 18.0 + 62.0 / (1.0 + np.exp(-s))
    gender = (z[:, 4] + 0.6 * z[:, 5] * z[:, 6] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    scores = z[:, 8:20] @ rng.normal(size=(12, GROUPS)) + 0.5 * rng.normal(size=(n, GROUPS))
    group = np.eye(GROUPS, dtype=np.float32)[np.argmax(scores, axis=1)]
    return z, age.astype(np.float32)[:, None], gender[:, None], group


@functools.cache
def _listings():
    """Listing columns (N, 16), standardised price (N, 1), segment ids (N,), sold (N, 1)."""
    rng = np.random.default_rng(303)
    n = N_TRAIN + N_VALID
    x = rng.normal(size=(n, LISTING_FEATURES)).astype(np.float32)
    price = 0.9 * x[:, 0] + 0.6 * x[:, 1] * x[:, 2] + 0.5 * np.sin(2.0 * x[:, 3]) + 0.2 * rng.normal(size=n)
    price = (price - price.mean()) / price.std()
    scores = x[:, 4:12] @ rng.normal(size=(8, SEGMENTS)) + 0.4 * rng.normal(size=(n, SEGMENTS))
    segment = np.argmax(scores, axis=1).astype(np.int32)
    sold = (0.9 * x[:, 12] - 0.6 * x[:, 0] + 0.6 * x[:, 13] * x[:, 14] + 0.3 * rng.normal(size=n) > 0)
    return x, price.astype(np.float32)[:, None], segment, sold.astype(np.float32)[:, None]


@functools.cache
def _captchas():
    """0-255 grey images (N, 24, 64, 1) and digits (N, 4)."""
    rng = np.random.default_rng(304)
    n = N_TRAIN + N_VALID
    glyphs = np.kron(rng.random((GLYPHS, 7, 5)) < 0.5, np.ones((2, 2))).astype(np.float32)  # 14x10 each
    images = 0.25 * rng.random((n, CAPTCHA_H, CAPTCHA_W)).astype(np.float32)
    digits = rng.integers(0, GLYPHS, (n, POSITIONS))
    for i in range(n):
        for p in range(POSITIONS):
            top = 5 + rng.integers(-2, 3)
            left = 3 + 15 * p + rng.integers(-2, 3)
            patch = images[i, top:top + 14, left:left + 10]
            images[i, top:top + 14, left:left + 10] = np.maximum(patch, glyphs[digits[i, p]] * rng.uniform(0.6, 1.0))
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.float32)
    return pixels[..., None], digits


@functools.cache
def _road_marks():
    """Frames (N, 48, 64, 1) in [0, 1], mark kinds (N,), boxes (N, 4) as fractions of the frame."""
    rng = np.random.default_rng(305)
    n = N_FRAMES_TRAIN + N_VALID
    frames = 0.3 + 0.1 * rng.normal(size=(n, FRAME_H, FRAME_W))
    kinds = rng.integers(0, MARKS, n)
    boxes = np.zeros((n, 4), np.float32)
    rows, cols = np.mgrid[0:FRAME_H, 0:FRAME_W]
    for i in range(n):
        h, w = rng.integers(10, 30), rng.integers(10, 40)
        y0, x0 = rng.integers(0, FRAME_H - h + 1), rng.integers(0, FRAME_W - w + 1)
        inside = (rows >= y0) & (rows < y0 + h) & (cols >= x0) & (cols < x0 + w)
        v, u = (rows - y0 + 0.5) / h - 0.5, (cols - x0 + 0.5) / w - 0.5  # -0.5 to 0.5 across the box
        if kinds[i] == 0:  # a bar across the box
            shape = np.abs(v) < 0.2
        elif kinds[i] == 1:  # a cross
            shape = (np.abs(v) < 0.12) | (np.abs(u) < 0.12)
        else:  # a ring
            r = np.sqrt(u ** 2 + v ** 2)
            shape = (r > 0.3) & (r < 0.5)
        frames[i][inside & shape] = 0.9 + 0.05 * rng.normal()
        boxes[i] = (x0 / FRAME_W, y0 / FRAME_H, (x0 + w) / FRAME_W, (y0 + h) / FRAME_H)
    return np.clip(frames, 0.0, 1.0).astype(np.float32)[..., None], kinds, boxes


# --- models ------------------------------------------------------------------------


def _ticket_setup(department_activation, department_loss):
    """The ticket model: the three inputs concatenated, Dense(64, relu), a priority head and a department head.

    RMSprop at 1e-3 and loss weights 1.0 / 0.2 (priority / department), as in the Keras
    functional-API guide; the priority under mean squared error, as in the book.
    """
    title, body, tags, priority, departments = _tickets()
    (tt, bt, gt, pt, dt), (tv, bv, gv, pv, dv) = _split(N_TRAIN, title, body, tags, priority, departments)
    title_in = keras.Input((VOCAB,), name="title")
    body_in = keras.Input((VOCAB,), name="text_body")
    tags_in = keras.Input((TAGS,), name="tags")
    features = keras.layers.Concatenate()([title_in, body_in, tags_in])
    features = keras.layers.Dense(64, activation="relu")(features)
    priority_out = keras.layers.Dense(1, activation="sigmoid", name="priority")(features)
    department_out = keras.layers.Dense(DEPARTMENTS, activation=department_activation, name="department")(features)
    model = keras.Model([title_in, body_in, tags_in], [priority_out, department_out])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=["mean_squared_error", department_loss],
                  loss_weights=[1.0, 0.2], metrics=[["mean_absolute_error"], ["binary_accuracy"]])
    return Setup(model, [tt, bt, gt], [pt, dt], 8, 32,  # 512 steps
                 validation_data=([tv, bv, gv], [pv, dv]))


def _face_setup(age_divisor):
    """The UTKFace multi-output recipe on face embeddings: one branch per attribute, outputs named, dict losses.

    Each attribute has its own branch from the embedding (two Dense(32, relu) layers,
    as the notebook gives each its own convolutional branch): the age through a
    sigmoid under mean squared error, the ethnic group through a softmax under
    categorical cross-entropy, the gender through a sigmoid under binary
    cross-entropy; loss weights 4 / 1.5 / 0.1 and Adam, as in the notebook.
    """
    z, age, gender, group = _faces()
    (zt, at, gt, rt), (zv, av, gv, rv) = _split(N_TRAIN, z, age / np.float32(age_divisor), gender, group)
    inputs = keras.Input((FACE_FEATURES,), name="embedding")

    def branch():
        h = keras.layers.Dense(32, activation="relu")(inputs)
        return keras.layers.Dense(32, activation="relu")(h)

    age_out = keras.layers.Dense(1, activation="sigmoid", name="age_output")(branch())
    race_out = keras.layers.Dense(GROUPS, activation="softmax", name="race_output")(branch())
    gender_out = keras.layers.Dense(1, activation="sigmoid", name="gender_output")(branch())
    model = keras.Model(inputs, [age_out, race_out, gender_out])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"age_output": "mse", "race_output": "categorical_crossentropy",
                        "gender_output": "binary_crossentropy"},
                  loss_weights={"age_output": 4.0, "race_output": 1.5, "gender_output": 0.1},
                  metrics={"age_output": ["mae"], "race_output": ["accuracy"], "gender_output": ["accuracy"]})

    def targets(a, r, g):
        return {"age_output": a, "race_output": r, "gender_output": g}

    return Setup(model, zt, targets(at, rt, gt), 8, 32,  # 512 steps
                 validation_data=(zv, targets(av, rv, gv)))


def _listing_setup(learning_rate=0.01, segment_divisor=1.0, shuffle_sold=False):
    """A shared Dense(64)-Dense(64) trunk and three heads keyed by name: price, segment, sold; SGD with momentum."""
    x, price, segment, sold = _listings()
    segment = segment.astype(np.float32) / np.float32(segment_divisor)
    if shuffle_sold:
        sold = sold[np.random.default_rng(313).permutation(len(sold))]
    (xt, pt, st, dt), (xv, pv, sv, dv) = _split(N_TRAIN, x, price, segment, sold)
    inputs = keras.Input((LISTING_FEATURES,), name="columns")
    h = keras.layers.Dense(64, activation="relu")(inputs)
    h = keras.layers.Dense(64, activation="relu")(h)
    outputs = {"price": keras.layers.Dense(1, name="price")(h),
               "segment": keras.layers.Dense(SEGMENTS, activation="softmax", name="segment")(h),
               "sold": keras.layers.Dense(1, activation="sigmoid", name="sold")(h)}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  loss={"price": "mean_squared_error", "segment": "sparse_categorical_crossentropy",
                        "sold": "binary_crossentropy"},
                  loss_weights={"price": 1.0, "segment": 0.5, "sold": 0.5},
                  metrics={"segment": ["accuracy"], "sold": ["accuracy"]})

    def targets(p, s, d):
        return {"price": p, "segment": s, "sold": d}

    return Setup(model, xt, targets(pt, st, dt), 8, 32,  # 512 steps
                 validation_data=(xv, targets(pv, sv, dv)))


def _captcha_setup(batchnorm):
    """captcha_break's CNN, scaled down: conv-conv-pool blocks, Flatten, Dropout(0.25), one softmax per character.

    Two blocks of two 3x3 convolutions (16 then 32 filters, 'valid' padding, ReLU),
    each block ending in 2x2 max pooling; four Dense(10, softmax) outputs c1-c4, one
    categorical cross-entropy each, Adadelta at the learning rate of 1.0 that Keras
    1 and 2 gave it by default. The pixels go in as stored, 0-255.
    """
    pixels, digits = _captchas()
    one_hot = [np.eye(GLYPHS, dtype=np.float32)[digits[:, p]] for p in range(POSITIONS)]
    inputs = keras.Input((CAPTCHA_H, CAPTCHA_W, 1), name="captcha")
    x = inputs
    for filters in (16, 32):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
            if batchnorm:
                x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.25)(x)
    outputs = [keras.layers.Dense(GLYPHS, activation="softmax", name=f"c{p + 1}")(x) for p in range(POSITIONS)]
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
                  loss=["categorical_crossentropy"] * POSITIONS, loss_weights=[1.0] * POSITIONS,
                  metrics=[["accuracy"]] * POSITIONS)
    return Setup(model, pixels[:N_TRAIN], [y[:N_TRAIN] for y in one_hot], 6, 32,  # 384 steps
                 validation_data=(pixels[N_TRAIN:], [y[N_TRAIN:] for y in one_hot]))


def _road_setup(box_units):
    """A small VPGNet-style multi-task CNN: a shared conv trunk, then a mark-kind branch and a box branch.

    Three conv-pool stages (16, 32, 32 filters) shared by both tasks; each task has its
    own Dense(64) branch (ReLU for the kind, tanh for the box), as VPGNet gives each
    task its own layers after the shared ones; the kind through a softmax under
    categorical cross-entropy, the box through 4 linear units under mean absolute
    error (the L1 loss VPGNet uses for its grid boxes); Adam, loss weights 1 / 1.
    """
    frames, kinds, boxes = _road_marks()
    boxes = boxes * np.array(box_units, np.float32)
    one_hot = np.eye(MARKS, dtype=np.float32)[kinds]
    inputs = keras.Input((FRAME_H, FRAME_W, 1), name="frame")
    x = inputs
    for filters in (16, 32, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    kind = keras.layers.Dense(64, activation="relu")(x)
    box = keras.layers.Dense(64, activation="tanh")(x)
    kind_out = keras.layers.Dense(MARKS, activation="softmax", name="mark_kind")(kind)
    box_out = keras.layers.Dense(4, name="grid_box")(box)
    model = keras.Model(inputs, {"mark_kind": kind_out, "grid_box": box_out})
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"mark_kind": "categorical_crossentropy", "grid_box": "mean_absolute_error"},
                  loss_weights={"mark_kind": 1.0, "grid_box": 1.0},
                  metrics={"mark_kind": ["accuracy"]})
    n = N_FRAMES_TRAIN
    return Setup(model, frames[:n], {"mark_kind": one_hot[:n], "grid_box": boxes[:n]}, 8, 32,  # 384 steps
                 validation_data=(frames[n:], {"mark_kind": one_hot[n:], "grid_box": boxes[n:]}))


# --- healthy controls -------------------------------------------------------------


@case(family="several_outputs", part="test", batch=3)
def so_tickets_healthy():
    """Healthy: the ticket model's two heads, a sigmoid priority under MSE and sigmoid departments under BCE.

    A ticket can go to several departments, so the department head has one sigmoid per
    department under binary cross-entropy (from the sigmoids' probabilities); the
    losses are a list in the order of the outputs, with loss weights 1.0 / 0.2.

    Source: the Keras functional-API guide's multi-input, multi-output ticket model
    (title, body and tags in; priority and department out; loss_weights [1.0, 0.2],
    https://keras.io/guides/functional_api/#models-with-multiple-inputs-and-outputs),
    and the same model in "Deep Learning with Python", chapter 7 (dense
    bag-of-words inputs, priority under mean squared error,
    https://github.com/fchollet/deep-learning-with-python-notebooks/blob/master/chapter07_working-with-keras.ipynb).
    """
    return _ticket_setup("sigmoid", "binary_crossentropy")


@case(family="several_outputs", part="test", batch=3)
def so_faces_healthy():
    """Healthy: age, ethnic group and gender from a face embedding, one branch each, dict losses by output name.

    The age goes in as a fraction of 100 years, under a sigmoid head (the notebook's head
    is linear; a sigmoid fits targets in [0, 1] as well).

    Source: rodrigobressan/keras-multi-output-model-utk-face, "Building a multi-output
    model with Keras" on UTKFace (age divided by the largest age, a branch per output,
    losses and loss_weights as dicts keyed by age_output, race_output and gender_output,
    https://github.com/rodrigobressan/keras-multi-output-model-utk-face/blob/master/notebook.py).
    """
    return _face_setup(MAX_AGE)


@case(family="several_outputs", part="test", batch=3)
def so_listings_healthy():
    """Healthy: a listing model with a shared trunk and three named heads (price, segment, sold), SGD with momentum.

    The model's outputs are a dict; the losses, loss weights and metrics are dicts
    keyed by the output names, the segment under sparse categorical cross-entropy on
    integer ids.

    Source: the Keras "Training & evaluation with the built-in methods" guide, section
    "Passing data to multi-input, multi-output models" (losses and loss weights as dicts
    keyed by output name, https://keras.io/guides/training_with_built_in_methods/).
    """
    return _listing_setup()


@case(family="several_outputs", part="test", batch=3, report=CAPTCHA_16)
def so_captcha_batchnorm():
    """Fix: the captcha CNN with a BatchNormalization layer after each convolution, the pixels still 0-255.

    Source: ypwhs/captcha_break issue 16 (the CNN, without BN, would not converge and
    its loss kept rising; the asker added BN and training converged; the maintainer put
    it down to the images being in the 0-255 range,
    https://github.com/ypwhs/captcha_break/issues/16); the model of the repository's
    README (https://github.com/ypwhs/captcha_break).
    """
    return _captcha_setup(batchnorm=True)


@case(family="several_outputs", part="test", batch=3, report=VPGNET_53)
def so_road_boxes_fractions():
    """Fix: the VPGNet-style multi-task CNN with its box targets given as fractions of the frame (0 to 1).

    Source: SeokjuLee/VPGNet issue 53, "Bounding Box Regression task not learning, it has
    constant loss" (a Keras VPGNet whose classification tasks learn while the grid box
    regression, linear outputs under an L1 loss on box coordinates left in pixels,
    0-640 by 0-480, stays at its first loss; the thread has no reply, and the fix here
    is the one the report itself points at, normalising the coordinates,
    https://github.com/SeokjuLee/VPGNet/issues/53).
    """
    return _road_setup((1.0, 1.0, 1.0, 1.0))


# --- faults ------------------------------------------------------------------------


@case(family="several_outputs", part="test", batch=3, twin="so_tickets_healthy", expect=("loss-target-mismatch",))
def so_tickets_department_softmax_cce():
    """The ticket model's department head as the book has it: softmax, categorical cross-entropy, multi-hot targets.

    Half the tickets go to two or three departments, but a softmax shares one unit of
    probability among them and the categorical cross-entropy only asks that the
    departments of a ticket outrank the others: a ticket's two departments can each
    get 0.5 at best, three 0.33, so thresholded at 0.5 the head misses most of the
    second and third departments. Its binary accuracy stalls near 0.8 where the
    twin's reaches ~1.0; the priority head still learns.

    Source: "Deep Learning with Python", chapter 7 (department targets
    drawn as np.random.randint(0, 2, size=(num_samples, num_departments)), several ones a
    row, under a softmax and categorical_crossentropy,
    https://github.com/fchollet/deep-learning-with-python-notebooks/blob/master/chapter07_working-with-keras.ipynb);
    the Keras functional-API guide's ticket model does the same with
    CategoricalCrossentropy(from_logits=True)
    (https://keras.io/guides/functional_api/#models-with-multiple-inputs-and-outputs).
    """
    return _ticket_setup("softmax", "categorical_crossentropy")


@case(family="several_outputs", part="test", batch=3, twin="so_faces_healthy", expect=("output-range-mismatch",))
def so_faces_age_years_sigmoid():
    """The face model's age head, a sigmoid, trained on the age in years (18 to 80) instead of a fraction.

    The sigmoid can only say 0 to 1: it saturates at 1 on every face within the first
    steps, where its gradient vanishes, and the age error stays ~48 years (an MSE
    ~2,600) while the twin's is ~8 years. The age head has its own branch, so the
    ethnic group and gender heads learn exactly as in the twin.

    Source: rodrigobressan/keras-multi-output-model-utk-face (the age must be divided by
    the largest age before training,
    https://github.com/rodrigobressan/keras-multi-output-model-utk-face/blob/master/notebook.py),
    here left in years under a bounded head.
    """
    return _face_setup(1.0)


@case(family="several_outputs", part="test", batch=3, twin="so_listings_healthy", expect=("labels-not-class-indices",))
def so_listings_segment_min_max_scaled():
    """The listing model's segment ids (0-3) min-max scaled to [0, 1] with the other target columns: 0, 0.33, 0.67, 1.

    The sparse categorical cross-entropy casts its labels to integers, so segments 0, 1
    and 2 all become class 0 and segment 3 class 1: the head learns to tell segment 3
    from the rest and never predicts classes 2 or 3, and its accuracy against the
    stored segments is ~0.16, below the largest segment's share (0.42), while the
    twin's reaches ~0.9. The price and sold heads learn as in the twin.

    Source: the scikit-learn MinMaxScaler applied to a whole target frame, class column
    included, before a Keras fit (class labels must stay integer ids for a sparse
    categorical cross-entropy, https://keras.io/api/losses/probabilistic_losses/#sparsecategoricalcrossentropy-class).
    """
    return _listing_setup(segment_divisor=SEGMENTS - 1)


@case(family="several_outputs", part="test", batch=3, twin="so_listings_healthy", expect=("unexplained",))
def so_listings_sold_labels_shuffled():
    """The listing model's sold labels joined from a differently sorted table: shuffled against the rows.

    Nothing in the columns predicts a shuffled label: the sold head stays at chance
    (loss ~0.69, accuracy ~0.5) while the price and segment heads, whose labels are in
    order, learn as in the twin. The training itself is sound (finite losses,
    moderate steps, standardised inputs); no finding id names labels that do not
    belong to their rows, and the model as a whole does use its input.

    Source: pandas' merge and join documentation (a join on a key, not on position,
    keeps labels with their rows, https://pandas.pydata.org/docs/user_guide/merging.html),
    the usual way two tables lose their alignment.
    """
    return _listing_setup(shuffle_sold=True)


@case(family="several_outputs", part="test", batch=3, twin="so_listings_healthy", expect=("huge-steps", "diverged"))
def so_listings_sgd_lr_100x():
    """The listing model under SGD with momentum at a learning rate of 1.0, 100 times the twin's 0.01.

    With three losses summed into one gradient, the shared trunk takes steps a hundred
    times too large: the losses run off in the first steps and every head's loss is
    non-finite by the end of the first epoch.

    Source: the Keras SGD optimizer's documentation (learning_rate defaults to 0.01,
    https://keras.io/api/optimizers/sgd/); a rate of 1.0 typed for 0.01.
    """
    return _listing_setup(learning_rate=1.0)


@case(family="several_outputs", part="test", batch=3, twin="so_captcha_batchnorm", expect=("unscaled-inputs",),
      report=CAPTCHA_16)
def so_captcha_raw_pixels():
    """A port of captcha_break issue 16: the four-headed captcha CNN on 0-255 pixels with no BatchNormalization.

    The first convolutions see inputs 255 times the unit scale, and Adadelta at 1.0
    makes steps to match: in the first epoch each head's training loss averages
    3.2-3.6, above a uniform guess's 2.3, and the four heads then stay near chance, at
    15-30% accuracy, where the twin reads every digit.

    Source: ypwhs/captcha_break issue 16 (the README's CNN, four softmax outputs under
    Adadelta, would not converge without BN layers, its loss rising; adding BN fixed it,
    and the maintainer's explanation was the 0-255 pixel range,
    https://github.com/ypwhs/captcha_break/issues/16).
    """
    return _captcha_setup(batchnorm=False)


@case(family="several_outputs", part="test", batch=3, twin="so_road_boxes_fractions", expect=("unscaled-targets",),
      report=VPGNET_53)
def so_road_boxes_pixels():
    """A port of VPGNet issue 53: the multi-task CNN's box head regressing coordinates in camera pixels (0-640, 0-480).

    The box targets average ~300 while the linear box outputs start near 0 and read a
    tanh branch: Adam moves each weight by ~1e-3 a step, so in 384 steps the outputs
    get nowhere near the targets and the box loss stays at ~250 pixels, above a
    constant guess's ~90. The mark-kind head learns (though the shared trunk pushed by
    the box loss costs it some accuracy).

    Source: SeokjuLee/VPGNet issue 53, "Bounding Box Regression task not learning, it has
    constant loss" (a Keras VPGNet: the classification tasks learn, the grid box
    regression with a linear output under mean absolute error, its coordinates not
    normalised, 0-640 and 0-480, stays at its first loss,
    https://github.com/SeokjuLee/VPGNet/issues/53).
    """
    return _road_setup((CAMERA_W, CAMERA_H, CAMERA_W, CAMERA_H))

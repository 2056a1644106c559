"""The numbers several rules (and the outcome of a run) share, each with the reason for its value.

A number only one rule module compares against sits in that module, above its rules,
with its reason too. Losses are in the loss's own units: nats for a cross-entropy (per
token for a language model), the loss's units for a squared error or a loss of the
user's own, where the margins below are read as shares of the targets' variance or of
a constant prediction's loss (:func:`~diagnose.findings.base.loss_scale`). "Late"
means the last :data:`LATE_FRACTION` of the logged rows that hold the column in
question, so a figure describes where training ended up rather than how it started.
"""

import math

# --- windows -------------------------------------------------------------------

# The last fifth of the logged rows: long enough to average out per-interval noise
# (tens of rows in a normal run), short enough to describe the end of training.
LATE_FRACTION = 0.2
# The first tenth of the rows is the "early" reference for gradient growth or decay:
# before the model has moved far from its initialisation.
EARLY_FRACTION = 0.1

# --- output layer ----------------------------------------------------------------

# Keras' cross-entropy clips probabilities to [1e-7, 1 - 1e-7]; a target at the floor
# costs -ln(1e-7) nats and passes back no useful gradient.
CLIP_FLOOR = 1e-7
FLOOR_NATS = -math.log(CLIP_FLOOR)  # 16.1 nats
# Loss names that expect probabilities unless from_logits=True (Keras' defaults).
PROBABILISTIC_LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
# ... and those that expect one probability per unit: a sigmoid's (Keras clips the rest into
# [1e-7, 1 - 1e-7], where a linear output outside it gets no gradient).
BINARY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy")

# --- ignores its input --------------------------------------------------------------

# Loss within 0.1 nats of the unigram entropy (or above): the model predicts no
# better than word frequencies, which needs no input at all.
UNIGRAM_MARGIN = 0.1
# The squared-error counterpart: a mean squared error within 5% of the targets'
# variance explains less than 5% of it (R^2 below 0.05), which a model that reads
# its input beats by far.
VARIANCE_MARGIN = 0.05
# Shuffled inputs costing less than 0.05 nats more than the real ones: the probe
# batch is fixed and evaluated without dropout, so a model that uses its input loses
# far more than that when each example gets another's input. (Zeroed inputs are
# evidence only: all-zero inputs can be out of distribution for a model with
# normalisation and cost more for that reason alone.)
PROBE_MARGIN = 0.05

# --- optimisation ------------------------------------------------------------------

# Healthy SGD moves weights by ~1e-3 of their norm per step (the usual rule of
# thumb); a median ten times below that means training crawls, and a median below it
# is too small for a run that learned little (LEARNED_LITTLE) in its budget while its
# loss was still going down at the end (a run with nothing to learn is flat instead).
# (Healthy runs of the fault suite log 1.1e-3 to 1.4e-2 late.) The median is over
# weight matrices only: biases and normalisation scales start at 0 or 1 by
# construction, and a freshly zero-initialised bias has a huge ratio whatever the rate.
TINY_UPDATE_RATIO = 1e-4
HEALTHY_UPDATE_RATIO = 1e-3
# ... unless the run got 90% of the way from its starting loss to the best reachable
# (the Bayes floor, else 0): a converged model's gradients, hence its steps, are
# small because there is little left to learn, not because the rate is.
CONVERGED_PROGRESS = 0.9
# A run that got less than half of that way has gone wrong: what it showed at the
# start (a table drowning its content) can be why.
LEARNED_LITTLE = 0.5
# The late global gradient norm a thousandth of its early median, or below 1e-7
# in absolute terms (float32 round-off on weights of order 1e-2): nothing flows back.
VANISH_FACTOR = 1e-3
VANISH_ABSOLUTE = 1e-7
# A dead network: at least half the weight matrices get no gradient late in the run
# (below VANISH_ABSOLUTE) although they had one early. Dead ReLUs pass back exactly 0,
# so every matrix behind a dead layer goes silent at once; a network that merely
# learns slowly keeps gradients everywhere.
DEAD_SHARE = 0.5

# --- a run that learned nothing: at chance, or no better than a constant ----------------

# A validation (or training) accuracy within 2 points of always predicting the largest
# class: what a model that learned nothing from its input scores (256 held-out examples
# measure an accuracy to about 3 points).
CHANCE_ACCURACY_MARGIN = 0.02
# A task error on the probe batch (a classifier's balanced error, 1 - R^2) within 5 points of
# a constant prediction's (1 - 1/classes, 1): the 256 held-out examples of the probe measure
# a balanced error to about 3 points, so 5 is beyond their noise.
CHANCE_ERROR_MARGIN = 0.05
# For a loss with no closed-form baseline (MAE, Huber, hinge, a loss of the user's own),
# a loss within 5% of the best constant prediction's is no better than it: the counterpart
# of VARIANCE_MARGIN (an R^2 below 0.05) in the loss's own units.
CONSTANT_MARGIN = 0.05

# --- the loss curve -----------------------------------------------------------------

# Plateau: over the last 30% of rows, the loss fell by less than 1% of itself ...
PLATEAU_WINDOW = 0.3
PLATEAU_REL_DROP = 0.01
# The fewest rows a curve rule looks at: fewer cannot show a trend or a flip.
MIN_ROWS = 4

"""Every number the rules compare against, in one place, each with the reason for its value.

Losses are in nats per token. "Late" means the last :data:`LATE_FRACTION` of the
logged rows that hold the column in question, so a figure describes where
training ended up rather than how it started.
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

# --- branch balance ---------------------------------------------------------------

# rms(temporal) / rms(word) above 8: the temporal encoding then carries
# 64 / 65 = 98.5% of the memory vector's energy and the match scores barely see the
# words. Not lower: the paper's own learned encoding (N(0, 0.05), like the words)
# grows to 1.5-5x the word embedding on the synthetic corpora while training well,
# as position is informative there; a constant init of ones or a unit-amplitude
# sinusoid gives 10-35x.
TEMPORAL_RATIO = 8.0

# --- attention ----------------------------------------------------------------

# Mean attention mass on padded slots above 5%: padded slots hold no word, so any
# mass there is read-out wasted on the pad embedding; with masking it is exactly 0.
PAD_MASS = 0.05
# With padding encoded and a temporal encoding, any measurable mass on pads shows
# the position signal pulling attention onto them; 0.1% is above float noise.
PAD_MASS_ANY = 1e-3
# Normalised entropy >= 0.95 on every hop: attention is within 5% of uniform over the
# real slots, i.e. the hops average the window instead of selecting from it.
UNIFORM_ENTROPY = 0.95
# One slot winning >= 90% of the argmaxes on a hop, late in training: the winner is
# fixed whatever the content.
COLLAPSED_SHARE = 0.9
# ... reported only while the model has gained less than half of what it can (of the
# way from the unigram entropy down to the Bayes floor): when one relative position
# decides the next word (the previous word, a copy lag), a fixed winner is the right
# answer, and paper-config runs on the synthetic corpora do that while getting most
# of the way to the floor.
COLLAPSED_MAX_GAIN = 0.5
# Mean top-1 weight >= 0.95: attention is one-hot; reported beside a collapse.
COLLAPSED_TOP1 = 0.95
# "At the floor": within 0.05 nats of the Bayes floor there is nothing left to
# learn, so uniform attention is then no symptom.
FLOOR_MARGIN = 0.05

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

# --- inputs -----------------------------------------------------------------------------

# An input RMS above 10: initialisers (Glorot, He) assume inputs of about unit scale,
# so the first layer's pre-activations and gradients are then ten times (and its
# gradient step's effect a hundred times) what the rest of the network is sized for.
# Standardised features have RMS 1; pixels in 0-255 about 100-150.
INPUT_RMS = 10.0
# ... and below 0.01, a hundred times under unit scale (pixels scaled by 1/255 twice are
# ~0.002): the first layer's pre-activations and its weights' gradients are as many times
# too small, and its weights must grow a hundredfold to use the input. One-hot inputs of up
# to 10,000 categories stay above it.
INPUT_RMS_LOW = 0.01
# More than half of an integer input is padding (id 0): a recurrent layer reading it
# unmasked then runs through more padding than content.
PAD_SHARE = 0.5

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
# A variable whose weights change by almost a third of their norm per step, over the
# late half of a run: ten times the largest late ratio of a healthy paper run (0.024,
# H on PTB) and above a learned encoding started at unit scale (0.14-0.23 on the
# synthetic corpus), which trains; a learning rate 100x too large gives 0.4-0.9.
HUGE_UPDATE_RATIO = 0.3
# The same bound on the median over weight matrices of one logged row, anywhere in the
# run: most of the network moving by a third of its size per step is a blow-up even
# when it is over early (a network whose ReLUs then died logs ratios of 0 afterwards).
# Weight matrices grown tenfold in norm while the loss ended no lower than it started:
# adaptive optimizers move each weight by about the learning rate per step whatever
# the gradient, so at a huge rate the weights, not the ratios, show the blow-up (the
# ratio falls as the weights it is divided by grow); training that works grows weight
# norms by a small factor and lowers the loss.
WEIGHT_GROWTH = 10.0
# A logged training loss (a mean over many steps) twice the larger of where the run
# started and a uniform guess (ln V): only confident wrong predictions cost that much,
# and only oversized steps make a model that confident that fast. A run that learns
# never logs a loss above its start by more than noise.
LOSS_BLOWUP = 2.0
# A gradient collapse: the weight matrices' gradients fell a hundredfold from the first
# rows to the last (median over matrices) while the model did not converge. A small
# learning rate leaves gradients where they started (the weights barely move); a
# converged model is excluded by CONVERGED_PROGRESS.
GRADIENT_COLLAPSE = 1e-2
# ... after first steps that moved the weight matrices by a tenth of their norm per
# step on average over the first logged row (a hundred times the healthy 1e-3): the
# blow-up is over within a row, so its row mean is diluted below HUGE_UPDATE_RATIO.
EARLY_UPDATE_RATIO = 0.1
# Clipping "never fires while gradients are small": the largest global gradient norm
# seen is below a tenth of the clip threshold, an order of magnitude of headroom.
CLIP_IDLE_FRACTION = 0.1
# Clipping on more than 90% of the logged steps: the step length is then set by
# the clip threshold, not by the gradient.
CLIP_ALWAYS = 0.9
# The peak global gradient norm 100 times its early median: two orders of magnitude
# of growth is beyond the noise of minibatch gradients.
EXPLODE_FACTOR = 100.0
# The late global gradient norm a thousandth of its early median, or below 1e-7
# in absolute terms (float32 round-off on weights of order 1e-2): nothing flows back.
VANISH_FACTOR = 1e-3
VANISH_ABSOLUTE = 1e-7
# A dead network: at least half the weight matrices get no gradient late in the run
# (below VANISH_ABSOLUTE) although they had one early. Dead ReLUs pass back exactly 0,
# so every matrix behind a dead layer goes silent at once; a network that merely
# learns slowly keeps gradients everywhere.
DEAD_SHARE = 0.5

# --- the model-task contract (summary.json's "contract", read before the first step) ----

# Multi-hot rows: a multi-class task has exactly one label per example, so rows with two
# or more ones are multi-label by construction. 1% of the rows read (a share the 4,096
# rows measure to about 0.2%) rather than any one row, so that a stray corrupt row does not
# turn a one-hot task into a multi-label one.
MULTI_HOT_SHARE = 0.01
# Labels that are not class indices: a class index is an integer in [0, classes); Keras
# casts the rest to integers (0.73 -> class 0) or reads them out of range. 1% of the
# labels read, as above.
LABEL_SHARE = 0.01
# The output's range alone costs at least a tenth of what a constant prediction costs:
# predicting every target exactly where the range allows and the nearest bound elsewhere
# still leaves 10% of the constant's loss (an R^2 capped at 0.9 for a squared error), so
# no model with this output can fit the task, however it trains.
RANGE_SHARE = 0.1
# Regression targets whose RMS is over 10, under an output with no bounding activation:
# initialisers make a network's outputs about unit scale at the start (as INPUT_RMS
# assumes of its inputs), so the output has to grow tenfold or more before it predicts the
# targets' scale, while the loss and its gradients are a hundred times what a unit-scale
# target gives.
TARGET_RMS = 10.0
# A dropout rate above one half drops most of the units at every step (the id's own
# definition): the next layer sees more noise than signal (a rate r scales the survivors
# by 1 / (1 - r), a variance of r / (1 - r) per unit, above 1 past one half). Typical
# rates are 0.1-0.5, 0.5 the usual ceiling; 0.6-0.9 is what a keep probability
# (TensorFlow 1's keep_prob, commonly 0.5-0.9) passed as a rate gives. Named only in a run
# that failed or learned little.
DROPOUT_RATE = 0.5
# A model that is one affine map of its input sends the midpoint of two inputs to the
# midpoint of their outputs up to float32 rounding (~1e-6 of the outputs' distance after
# a few layers); any activation that bends, a ReLU switching or a tanh curving, moves some
# pair's midpoint by a percent or more. 1e-4 sits between the two, two decades from each.
AFFINE_DEVIATION = 1e-4
# BatchNormalization normalises each channel over the values a batch gives it (the batch
# size times the positions in an image or sequence). With 1 value the normalised output is
# exactly 0 (the layer outputs its beta whatever the input); with 2 it is exactly +-1 (only
# the sign of the pair's difference gets through). Both pass almost nothing of the input.
BN_MIN_VALUES = 3
# A lookup (TextVectorization, StringLookup) mapping half its tokens or more to the
# out-of-vocabulary index: its vocabulary does not fit the data it is given (adapted on
# other data, never adapted), and the model loses more than half its input. A vocabulary
# capped at the frequent words of the right data leaves a few percent to a fifth out.
OOV_SHARE = 0.5
# The largest class holding 90% of the labels or more: always predicting it is right 90%
# of the time, and the other classes' examples give at most a tenth of the gradient.
IMBALANCE_SHARE = 0.9
# A validation (or training) accuracy within 2 points of always predicting the largest
# class: what a model that learned nothing from its input scores (256 held-out examples
# measure an accuracy to about 3 points).
CHANCE_ACCURACY_MARGIN = 0.02
# A task error on the probe batch (a classifier's balanced error, 1 - R^2) within 5 points of
# a constant prediction's (1 - 1/classes, 1): the 256 held-out examples of the probe measure
# a balanced error to about 3 points, so 5 is beyond their noise.
CHANCE_ERROR_MARGIN = 0.05
# Still falling at the end: over the last 30% of the logged rows (PLATEAU_WINDOW) the
# training loss fell by 5% of itself or more, five times what the plateau rule calls flat
# (PLATEAU_REL_DROP) and well above the ~1% noise of logged means: going down, not stuck.
STILL_FALLING = 0.05
# ... at half the run's mean rate of fall since step 0 or more: a run cut short in its steep
# part falls as fast at the end as on average (ratio ~1); one that trained long enough has
# bent over (a decaying curve's late rate is a small fraction of its mean rate).
LEVELLING = 0.5
# For a loss with no closed-form baseline (MAE, Huber, hinge, a loss of the user's own),
# a loss within 5% of the best constant prediction's is no better than it: the counterpart
# of VARIANCE_MARGIN (an R^2 below 0.05) in the loss's own units.
CONSTANT_MARGIN = 0.05

# --- the loss curve -----------------------------------------------------------------

# Oscillation: over the last half of the rows, consecutive logged losses differ by
# more than 5% of the loss the run started from on average, and the direction flips
# on at least half the rows. Logged losses are means over many steps, so their noise
# is ~1% of the starting loss. Measured against the starting loss, not the current
# one: a healthy run whose loss nears 0 swings by a large fraction of almost nothing.
OSCILLATION_WINDOW = 0.5
OSCILLATION_REL_SWING = 0.05
OSCILLATION_FLIPS = 0.5
# ... and the swings are three times what minibatch noise alone gives between two
# logged means (their per-step spread, loss_sd, over the square root of the steps
# they average): small batches logged every few steps swing by noise, not by overshoot.
OSCILLATION_NOISE = 3.0
# Plateau: over the last 30% of rows, the loss fell by less than 1% of itself ...
PLATEAU_WINDOW = 0.3
PLATEAU_REL_DROP = 0.01
# ... while still 0.25 nats above the Bayes floor (a 28% higher perplexity than the
# best reachable), or no better than the unigram entropy when the floor is unknown.
PLATEAU_GAP = 0.25
# Overfitting: the final validation loss at least 0.05 nats above its best, seen at
# two or more validations after the best, while the training loss fell by at least
# 0.02 nats since then (logged losses are precise to ~0.01 nats). For a squared error
# both are shares of the targets' variance (base.loss_scale): the validation R^2 fell
# by 0.05 from its best while the training R^2 rose by 0.02.
OVERFIT_RISE = 0.05
OVERFIT_MIN_VALIDATIONS_AFTER = 2
OVERFIT_TRAIN_DROP = 0.02
# The fewest rows a curve rule looks at: fewer cannot show a trend or a flip.
MIN_ROWS = 4

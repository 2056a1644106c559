"""The fault suite: small Keras models people really write, each healthy or with one known convergence bug.

Each case is one function in the module of its model family, registered with
:func:`case`. It builds a compiled Keras model and its data (numpy, fixed seed, no
downloads) and returns them with the fit settings as a :class:`Setup`. The decorator
holds what the case is judged by, written before anything ran:

    @case(family="mlp", twin="mlp_sgd_healthy", expect=("huge-steps",))
    def mlp_sgd_lr_huge():
        \"\"\"Source: <the question, issue or example it comes from, with its address>. ...\"\"\"

``expect`` lists the finding ids a correct diagnosis contains, the cause that should
rank first at its head; a healthy control expects ``()``. ``twin`` names the healthy
case that differs from this one only in the fault.

The suite has two parts. The **tuning** part (the modules named in :data:`FAMILIES`)
is what the rules and their thresholds were developed on. The **test** part
(``bench/faults/testpart/``, families in :data:`TEST_FAMILIES`) is never tuned on:
its cases and expected ids are written before the rules they exercise change, and
its figures are reported as they come, on the first pass. A test case that ports a
real reported bug (a Stack Overflow question, a GitHub issue) names it in
``report``, with the accepted fix as its healthy twin. The Stack Overflow posts of
the DeepLocalize benchmark (:data:`bench.faults.excluded.EXCLUDED_POSTS`), which the
research tools were scored on, are kept out of both parts for evaluation.

The scorer (``bench/fault_suite.py``) reads :func:`load_cases`; nothing here knows
about it or about ``diagnose``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

__all__ = ["Case", "Setup", "case", "load_cases", "FAMILIES", "TEST_FAMILIES", "PARTS", "KNOWN_IDS", "NEW_IDS",
           "take"]

# One module per model family, in the order the suite runs them: the tuning part ...
FAMILIES = ("mlp", "regression", "convnet", "rnn", "transformer", "timeseries", "memn2n")
# ... and the test part (modules of bench/faults/testpart/), families the tuning part lacks.
TEST_FAMILIES = ("multilabel", "textcls", "preprocessing", "siamese", "recommender", "sets", "segmentation",
                 "bn_mlp", "regression_heads", "autoencoder", "tabular_bugs", "image_bugs", "sequence_bugs",
                 # the second batch (batch=2), written after the first batch had been scored and the rules
                 # changed from what it showed: unseen by them until its own first pass
                 "wide_deep", "signals", "forecasting", "attention_text", "counts", "augmentation", "more_bugs",
                 # the third batch (batch=3): models with several outputs, written before diagnose could
                 # diagnose a model with more than one output
                 "several_outputs",
                 # the fourth batch (batch=4): graph networks, audio, time-series transfer; cases and expected
                 # ids written before diagnose ever ran on them
                 "graphs", "audio", "ts_transfer")
PARTS = ("tuning", "test")

# Finding ids diagnose emits today (diagnose/findings/rules_*.py).
KNOWN_IDS = frozenset({
    "relu-output-crossentropy", "linear-on-attention-scores", "temporal-encoding-dominates", "padding-attention",
    "ignores-input", "attention-uniform", "attention-collapsed", "tiny-steps", "huge-steps",
    "clipping-never-fires", "clipping-always-fires", "exploding-gradients", "vanishing-gradients", "no-gradient",
    "diverged", "oscillating-loss", "plateau", "overfitting",
})
# Ids a reported fault needs that diagnose lacks today, each with what a rule would read.
NEW_IDS = {
    "single-unit-softmax": "a softmax over a one-unit output: the output is always 1 and passes back no gradient",
    "dead-network": "gradients that were there went to zero everywhere after the first steps (a blow-up that "
                    "killed every ReLU)",
    "constant-init": "a layer's kernel initialised to a constant, so its units stay identical",
    "unscaled-inputs": "inputs far from unit scale (pixels 0-255, features in thousands) into a model with no "
                       "normalisation ahead of its first weights",
    "unmasked-padding": "padded sequences read by a recurrent layer without a mask, padding filling most steps",
    # Written for issue 27 before any rule for them existed (the test part's expectations).
    "loss-target-mismatch": "the compiled loss does not fit the targets' structure: a categorical cross-entropy "
                            "over multi-hot (multi-label) targets, a regression loss (MSE, MAE) over class "
                            "targets, a binary cross-entropy over more than two classes",
    "labels-not-class-indices": "targets of a classifier's loss that are not class labels: fractions (labels "
                                "divided by 255), negatives, indices beyond the output's units, binary targets "
                                "outside [0, 1]",
    "output-range-mismatch": "an output activation whose range excludes the targets (a sigmoid, tanh, softmax or "
                             "ReLU head on regression targets outside its range)",
    "unscaled-targets": "regression targets far from unit scale (thousands, millions) under a linear head",
    "excessive-dropout": "a dropout rate so high that most units are dropped (a keep-probability passed as a rate)",
    "frozen-layers": "weight layers left non-trainable (trainable=False) on the path to the output, so the model "
                     "cannot learn what they would",
    "blocked-gradient": "weight matrices on the path to the loss that never receive a gradient: a stop_gradient "
                        "or a non-differentiable op (argmax, round, a cast to int) between them and the loss",
    "batchnorm-small-batch": "BatchNormalization trained on batches too small for its statistics (batch size 1 "
                             "or 2 on a Dense layer's features)",
    "unadapted-preprocessing": "preprocessing layers inside the model never adapted (Normalization without "
                               "mean/variance, TextVectorization or StringLookup without a vocabulary)",
    "missing-activation": "stacked Dense or Conv layers with no nonlinearity between them, which collapse to one "
                          "linear map, in a run that could not fit its task",
    "class-imbalance": "one class holds nearly all the labels and the model predicts it for everything",
    "too-few-steps": "training stopped while the loss was still falling at healthy step sizes, far from where "
                     "it was heading (too few epochs)",
    "unexplained": "the run failed (at chance, flat, diverged, worse than a constant) and no root cause's "
                   "mechanism was measured: the first line says so and lists what was ruled out",
}


@dataclass
class Setup:
    """What a case function returns: a compiled model, its data and how to fit it.

    Attributes:
        model: a compiled Keras model (one output or several).
        x: training inputs (an array, a list or a dict by input name).
        y: training targets.
        epochs: passes over ``x``.
        batch_size: examples per step.
        validation_data: ``(x, y)`` held out, or None.
        sample_weight: per-example weights for ``fit``, or None.
        class_weight: per-class weights for ``fit``, or None.
    """

    model: Any
    x: Any
    y: Any
    epochs: int
    batch_size: int
    validation_data: tuple | None = None
    sample_weight: Any = None
    class_weight: dict | None = None

    def fit_kwargs(self) -> dict:
        """The keyword arguments of ``model.fit`` this setup asks for."""
        kwargs = {"epochs": self.epochs, "batch_size": self.batch_size, "validation_data": self.validation_data}
        if self.sample_weight is not None:
            kwargs["sample_weight"] = self.sample_weight
        if self.class_weight is not None:
            kwargs["class_weight"] = self.class_weight
        return kwargs


@dataclass(frozen=True)
class Case:
    """One registered case.

    Attributes:
        name: the function's name, unique in the suite.
        family: the model family (a module of this package).
        build: the function; returns a :class:`Setup`.
        expect: expected finding ids, the first ranking first; ``()`` for a healthy control.
        twin: the healthy case differing only in the fault (None for a healthy case).
        doc: the function's docstring, naming the case's source.
        part: "tuning" (rules were developed on it) or "test" (never tuned on).
        report: the address of the real bug report the case ports (a Stack Overflow
            question, a GitHub issue), or None for a fault written from a tutorial or
            a known pattern. A healthy twin of a port names the same report.
        batch: which batch of the test part it was written in. Batch 1 was scored
            first on 2026-12-05 and the rules then changed from what it showed; a
            later batch is unseen by the rules until its own first pass.
        tensorflow_only: why the case runs on Keras' TensorFlow backend only (raw
            strings inside the model: Keras' string layers take tf.string tensors), or
            None for a case every backend runs.
    """

    name: str
    family: str
    build: Callable[[], Setup]
    expect: tuple[str, ...] = ()
    twin: str | None = None
    doc: str = field(default="", repr=False)
    part: str = "tuning"
    report: str | None = None
    batch: int = 1
    tensorflow_only: str | None = None

    @property
    def healthy(self) -> bool:
        return not self.expect

    @property
    def summary(self) -> str:
        """The docstring's first line: what the case is."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


_REGISTRY: dict[str, Case] = {}


def case(*, family: str, expect: tuple[str, ...] = (), twin: str | None = None, part: str = "tuning",
         report: str | None = None, batch: int = 1, tensorflow_only: str | None = None):
    """Registers the decorated function as a case of ``family`` in ``part`` of the suite.

    Raises:
        ValueError: a second case with the same name, a part other than "tuning" or
            "test", or a family that part does not list.
    """
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; one of {PARTS}")
    families = FAMILIES if part == "tuning" else TEST_FAMILIES
    if family not in families:
        name = "FAMILIES" if part == "tuning" else "TEST_FAMILIES"
        raise ValueError(f"unknown {part} family {family!r}; add it to {name} (one of {families})")

    def register(fn):
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"two fault cases are named {fn.__name__!r}; rename one")
        _REGISTRY[fn.__name__] = Case(fn.__name__, family, fn, tuple(expect), twin, fn.__doc__ or "", part, report,
                                      batch, tensorflow_only)
        return fn

    return register


def load_cases(part: str | None = None, batch: int | None = None) -> dict[str, Case]:
    """Imports the family modules and returns the cases by name, in family order.

    Args:
        part: "tuning" or "test" for one part of the suite; None for both (tuning first).
        batch: only the test part's cases of this batch.
    """
    modules = [f"{__name__}.{family}" for family in FAMILIES]
    modules += [f"{__name__}.testpart.{family}" for family in TEST_FAMILIES
                if importlib.util.find_spec(f"{__name__}.testpart.{family}") is not None]
    for module in modules:
        importlib.import_module(module)
    order = {family: i for i, family in enumerate(FAMILIES + TEST_FAMILIES)}
    cases = sorted(_REGISTRY.items(), key=lambda item: (PARTS.index(item[1].part), order[item[1].family]))
    return {name: c for name, c in cases if (part is None or c.part == part)
            and (batch is None or (c.part == "test" and c.batch == batch))}


def take(data, n: int):
    """The first ``n`` examples of an array, or of each array in a list or dict of inputs."""
    if isinstance(data, dict):
        return {k: v[:n] for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(v[:n] for v in data)
    return data[:n]

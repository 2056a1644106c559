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

The scorer (``bench/fault_suite.py``) reads :func:`load_cases`; nothing here knows
about it or about ``diagnose``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

__all__ = ["Case", "Setup", "case", "load_cases", "FAMILIES", "KNOWN_IDS", "NEW_IDS", "take"]

# One module per model family, in the order the suite runs them.
FAMILIES = ("mlp", "regression", "convnet", "rnn", "transformer", "timeseries", "memn2n")

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
}


@dataclass
class Setup:
    """What a case function returns: a compiled model, its data and how to fit it.

    Attributes:
        model: a compiled Keras model with one output.
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
    """

    name: str
    family: str
    build: Callable[[], Setup]
    expect: tuple[str, ...] = ()
    twin: str | None = None
    doc: str = field(default="", repr=False)

    @property
    def healthy(self) -> bool:
        return not self.expect

    @property
    def summary(self) -> str:
        """The docstring's first line: what the case is."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


_REGISTRY: dict[str, Case] = {}


def case(*, family: str, expect: tuple[str, ...] = (), twin: str | None = None):
    """Registers the decorated function as a case of ``family``.

    Raises:
        ValueError: a second case with the same name, or a family the suite does not list.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; add it to FAMILIES (one of {FAMILIES})")

    def register(fn):
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"two fault cases are named {fn.__name__!r}; rename one")
        _REGISTRY[fn.__name__] = Case(fn.__name__, family, fn, tuple(expect), twin, fn.__doc__ or "")
        return fn

    return register


def load_cases() -> dict[str, Case]:
    """Imports every family module and returns the cases by name, in family order."""
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    order = {family: i for i, family in enumerate(FAMILIES)}
    return dict(sorted(_REGISTRY.items(), key=lambda item: order[item[1].family]))


def take(data, n: int):
    """The first ``n`` examples of an array, or of each array in a list or dict of inputs."""
    if isinstance(data, dict):
        return {k: v[:n] for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(v[:n] for v in data)
    return data[:n]

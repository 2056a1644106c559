"""Mechanical fixes: for each finding id, the change to a Keras model that would undo its cause.

A proof (:mod:`diagnose.userstudy.prove`) tests a finding by training the model with
its fix over seeds. Each fix is declared once, in its rule's module beside the rule,
keyed by the rule's id, as a pure function of the run's :class:`RunView` that returns
the change (a JSON dict :mod:`diagnose.userstudy.transforms` applies to the rebuilt
model) with a label, or None where it cannot apply to this run (a linear output where
a softmax would be set...)::

    @fix("single-unit-softmax", what="a sigmoid on the one output unit", judged_by="error")
    def _single_unit_softmax(view):
        return Remedy({"op": "output_activation", "activation": "sigmoid"}, "sigmoid", "a sigmoid output")

This module holds the declaration (:func:`fix`, :data:`FIXES`), its resolution for a
run (:func:`remedy_for`) and the step-size fixes that several rules share. Symptoms get
the fix of their likeliest mechanical cause (a dead network: a learning rate too
large), so a proof can refute a symptom's usual reading too. Findings with no
mechanical fix (the input ignored, a plateau, overfitting) stay untested.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

from diagnose.findings import thresholds as T
from diagnose.findings.base import RunView, late, number, series, variable_columns, weight_matrices
from diagnose.findings.outputs import output_views

__all__ = ["Remedy", "MechanicalFix", "FIXES", "fix", "remedy_for", "raise_rate", "lower_rate", "LR_FACTOR",
           "LR_FACTOR_MAX", "OUTPUT_OPS"]

# A step size found off is first moved by one order of magnitude, the usual first try.
LR_FACTOR = 10.0
# ... or by what the update ratios suggest (to ~1e-3 per step), rounded to a power of ten
# and at most three orders: beyond that the counterfactual trains a different model (a
# rate that far off learns nothing in the same budget, whichever way it was wrong).
LR_FACTOR_MAX = 1000.0


@dataclass(frozen=True)
class Remedy:
    """A fix resolved for one run: the change, a short label (a variant name) and the words."""

    change: dict
    label: str
    text: str


@dataclass(frozen=True)
class MechanicalFix:
    """A declared fix: the finding it answers, what it changes, and how it resolves against a run."""

    finding: str
    what: str
    resolve: Callable[[RunView], Remedy | None]
    # What the proof judges the fix by: "loss" (the validation loss), "error" (1 -
    # validation accuracy) for a fault the loss cannot show, or "task" (the task's error on
    # the probe batch, whatever the loss) for a fix that changes the loss itself.
    judged_by: str = "loss"


FIXES: dict[str, MechanicalFix] = {}


def fix(finding: str, *, what: str, judged_by: str = "loss"):
    """Declares ``resolve(view) -> Remedy | None`` as the mechanical fix of ``finding``.

    ``judged_by="error"`` has the proof judge it by the validation error instead of the
    loss, for a fault that leaves the loss as it would be without it.
    """
    if judged_by not in ("loss", "error", "task"):
        raise ValueError(f"judged_by is 'loss', 'error' or 'task', not {judged_by!r}")

    def register(resolve):
        if finding in FIXES:
            raise ValueError(f"a fix for {finding} is declared twice")
        FIXES[finding] = MechanicalFix(finding, what, resolve, judged_by)
        return resolve

    return register


def remedy_for(finding: str, view: RunView) -> Remedy | None:
    """The fix of ``finding`` resolved for this run, or None (none declared, or none applies).

    On a model with several outputs, a finding about one output (a rule of scope
    "output") is fixed on the first output it is found on: the fix resolved on that
    output's view, each change naming the output.
    """
    declared = FIXES.get(finding)
    if declared is None or not view.is_keras:
        return None
    from diagnose.findings.registry import RULES

    rule = next((r for r in RULES if r.spec.id == finding), None)
    outputs = output_views(view)
    if not outputs or rule is None or rule.spec.scope != "output":
        return declared.resolve(view)
    for name, each in outputs:
        if rule(each) is None:
            continue
        remedy = declared.resolve(each)
        if remedy is None:
            return None
        if remedy.change.get("op") == "fit":
            return None  # fit's settings (class weights) are the whole model's, not one output's
        return Remedy(_for_output(remedy.change, name), remedy.label, f"{remedy.text} (output '{name}')")
    return None


def _for_output(change: dict, name: str) -> dict:
    """A change (or a change of several parts) applied to the output named ``name``."""
    if change.get("op") == "all":
        return {**change, "changes": [_for_output(c, name) for c in change.get("changes") or []]}
    if change.get("op") in OUTPUT_OPS:
        return {**change, "output": name}
    return change


# The changes that act on one output (its layer, its loss, its targets), given an ``output`` on a model with several.
OUTPUT_OPS = ("loss", "from_logits", "loss_reduction", "output_activation", "standardize_targets")


# --- the step size: huge-steps' and tiny-steps' fixes, shared with the symptoms they cause ---------


def _rate(view: RunView) -> float | None:
    optimizer = (view.config.get("train") or {}).get("optimizer")
    return number(optimizer.get("learning_rate")) if isinstance(optimizer, dict) else None


def _power_of_ten(ratio: float | None) -> float:
    """``ratio`` rounded to a power of ten within [LR_FACTOR, LR_FACTOR_MAX]; LR_FACTOR when unknown."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return LR_FACTOR
    return min(LR_FACTOR_MAX, max(LR_FACTOR, 10.0 ** round(math.log10(ratio))))


def _scaled(view: RunView, factor: float) -> Remedy:
    rate = _rate(view)
    times = f"x{factor:g}"
    text = f"learning rate {times}" + (f" ({rate:g} -> {rate * factor:g})" if rate is not None else "")
    return Remedy({"op": "learning_rate", "factor": factor}, f"lr {times}", text)


def _ratios(view: RunView) -> list:
    return [s for c in (weight_matrices(view) or variable_columns(view, "update_ratio"))
            if (s := series(view, c)) is not None]


def raise_rate(view: RunView) -> Remedy:
    """tiny-steps' fix: the learning rate raised to what the update ratios suggest (to ~1e-3 per step)."""
    late_means = [float(late(s).mean()) for s in _ratios(view)]
    median = statistics.median(late_means) if late_means else None
    return _scaled(view, _power_of_ten(T.HEALTHY_UPDATE_RATIO / median if median else None))


def lower_rate(view: RunView) -> Remedy:
    """huge-steps' fix, and that of the symptoms a rate too large causes (a dead network, a swinging
    loss, a divergence), so that they share their runs and cannot disagree: the learning rate lowered
    to what the update ratios suggest."""
    import pandas as pd

    found = _ratios(view)
    if not found:
        return _scaled(view, 1.0 / LR_FACTOR)
    per_row = pd.concat(found, axis=1).median(axis=1).dropna()
    # Where the steps stayed huge, the late ratios say by how much; where they killed the
    # network (late ratios 0), the blow-up's peak does.
    ratio = float(late(per_row).mean()) if len(per_row) else 0.0
    if ratio < LR_FACTOR * T.HEALTHY_UPDATE_RATIO:
        ratio = float(per_row.max()) if len(per_row) else 0.0
    return _scaled(view, 1.0 / _power_of_ten(ratio / T.HEALTHY_UPDATE_RATIO if ratio else None))

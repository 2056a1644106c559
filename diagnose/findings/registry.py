"""The rule registry: every rule declared once, with its id, kind, default severity and figure.

A rule is a pure function ``rule(view) -> Hit | None`` of a
:class:`~diagnose.findings.base.RunView`, declared with :func:`rule`; the
declaration is the only place its id, kind and the report figure that shows its
evidence are written. Importing :mod:`diagnose.findings` imports every
``rules_*`` module of the package (found by name), so a new rule touches its rule
module and its test; the numbers only it compares against and its mechanical fix
(:func:`~diagnose.findings.fixes.fix`, found by its id) sit beside it::

    # A median update ratio ten times below healthy SGD's ~1e-3: training crawls.
    TINY_UPDATE_RATIO = 1e-4

    @rule("tiny-steps", kind="root-cause", severity="medium", figure="updates",
          what="weights move far less per step than healthy training")
    def tiny_steps(view):
        ...
        return Hit(title, evidence, explanation, fix)

    fix("tiny-steps", what="the learning rate raised to what the update ratios suggest")(raise_rate)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from diagnose.findings.base import KINDS, SEVERITIES, Evidence, Finding, RunView
from diagnose.findings.figures import FIGURES

__all__ = ["rule", "Hit", "RuleSpec", "RULES", "SCOPES", "FIGURES", "spec_of", "UNEXPLAINED", "UNEXPLAINED_SPEC"]

RULES: list = []  # the registered rule functions, in declaration order
SCOPES = ("run", "output")


@dataclass(frozen=True)
class RuleSpec:
    """What a rule's declaration says about it."""

    id: str
    kind: str  # its usual kind; a hit may say otherwise (a symptom where no config choice is to blame)
    severity: str
    figure: str | None  # one of FIGURES (diagnose.findings.figures)
    what: str  # one line: the pattern the rule detects
    explains: tuple[str, ...] = ()  # findings this one causes when both are there: it is listed before them
    scope: str = "run"  # "output": about one output (its loss, layer, targets), checked on each of several


@dataclass(frozen=True)
class Hit:
    """What a rule returns when its pattern is there; the declaration supplies id and kind."""

    title: str
    evidence: tuple[Evidence, ...] | list
    explanation: str
    fix: str
    kind: str | None = None  # overrides the declared kind
    severity: str | None = None  # overrides the declared severity


def rule(id: str, *, kind: str, severity: str, figure: str | None, what: str, explains: tuple[str, ...] = (),
         scope: str = "run"):
    """Declares and registers a rule function (see the module docstring).

    ``explains`` names the findings this one causes (inputs far from unit scale make
    huge steps; huge steps kill ReLUs): when both are found, this one comes first.
    ``scope="output"``: the rule reads one output (its loss, layer, targets and
    columns); on a model with several outputs it is checked on each output's view
    (:func:`~diagnose.findings.base.output_views`) and its findings name the output.
    """
    if kind not in KINDS or severity not in SEVERITIES or (figure is not None and figure not in FIGURES) \
            or scope not in SCOPES:
        raise ValueError(f"rule {id}: kind {kind!r}, severity {severity!r}, figure {figure!r} or scope {scope!r} "
                         "is not known")
    if any(r.spec.id == id for r in RULES):
        raise ValueError(f"rule {id} is declared twice")
    spec = RuleSpec(id, kind, severity, figure, what, tuple(explains), scope)

    def register(fn):
        @functools.wraps(fn)
        def apply(view: RunView) -> Finding | None:
            hit = fn(view)
            if hit is None:
                return None
            return Finding(id=spec.id, kind=hit.kind or spec.kind, severity=hit.severity or spec.severity,
                           title=hit.title, evidence=tuple(hit.evidence), explanation=hit.explanation, fix=hit.fix,
                           figure=spec.figure)

        apply.spec = spec
        RULES.append(apply)
        return apply

    return register


def spec_of(finding_id: str) -> RuleSpec | None:
    if finding_id == UNEXPLAINED:
        return UNEXPLAINED_SPEC
    return next((r.spec for r in RULES if r.spec.id == finding_id), None)


# What a run cannot show: the causes left when every rule has been checked.
UNMEASURED = ("labels that do not depend on the inputs (shuffled, misaligned or noisy labels)",
               "a model too small (or of the wrong kind) for the task",
               "training and validation data prepared differently",
               "a fault in the data pipeline before the model (wrong features, a leak, a bad split)")
UNEXPLAINED = "unexplained"
UNEXPLAINED_SPEC = RuleSpec(UNEXPLAINED, "unexplained", "high", "loss",
                            "a run that failed (diverged, at chance, flat) with no root cause measured; lists what "
                            "was ruled out")

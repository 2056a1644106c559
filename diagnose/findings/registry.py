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
import os
from dataclasses import dataclass

from diagnose.findings.base import KINDS, SEVERITIES, Evidence, Finding, RunView
from diagnose.findings.outputs import of_output, output_views

__all__ = ["rule", "Hit", "RuleSpec", "RULES", "SCOPES", "FIGURES",
           "spec_of", "check_view", "check_run", "format_findings"]

# The report's figures a finding can point at (the report draws one of each it has data for).
FIGURES = ("loss", "gradients", "updates", "attention-entropy", "attention-map", "branches", "output")

RULES: list = []  # the registered rule functions, in declaration order
SCOPES = ("run", "output")


@dataclass(frozen=True)
class RuleSpec:
    """What a rule's declaration says about it."""

    id: str
    kind: str  # its usual kind; a hit may say otherwise (a symptom where no config choice is to blame)
    severity: str
    figure: str | None  # one of FIGURES
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


def check_view(view: RunView) -> list[Finding]:
    """Applies every rule to an in-memory run.

    Returns:
        The findings: a failure no root cause explains first (``unexplained``, added
        when the run failed and no root cause was found), then root causes; among
        each kind, a finding that another found one explains after it; then by
        severity (high, medium, low), then by id.
    """
    outputs = output_views(view)  # a model with several outputs: one view per output
    findings = [finding for r in RULES if not (outputs and r.spec.scope == "output") and (finding := r(view))]
    for name, each in outputs:
        findings += [of_output(finding, name) for r in RULES if r.spec.scope == "output" and (finding := r(each))]
    if not any(f.kind == "root-cause" for f in findings):
        unexplained = _unexplained(view, findings)
        for name, each in outputs if unexplained is None else ():  # one output failed while the others learned
            unexplained = _unexplained(each, findings)
            if unexplained is not None:
                unexplained = of_output(unexplained, name)
                break
        if unexplained is not None:
            findings.append(unexplained)
    found = {f.id for f in findings}
    causes = {f.id: {c for c in found if c != UNEXPLAINED and f.id in spec_of(c).explains and c != f.id}
              for f in findings}
    depth: dict[str, int] = {}

    def chain(fid: str, seen: frozenset = frozenset()) -> int:
        """How many found findings stand before this one in a chain of causes."""
        if fid not in depth:
            parents = causes[fid] - seen - {fid}
            depth[fid] = 1 + max(chain(p, seen | {fid}) for p in parents) if parents else 0
        return depth[fid]

    def key(f: Finding) -> tuple:
        kind, severity, fid = f.sort_key()
        return kind, chain(f.id), severity, fid

    return sorted(findings, key=key)


# What a run cannot show: the causes left when every rule has been checked.
_UNMEASURED = ("labels that do not depend on the inputs (shuffled, misaligned or noisy labels)",
               "a model too small (or of the wrong kind) for the task",
               "training and validation data prepared differently",
               "a fault in the data pipeline before the model (wrong features, a leak, a bad split)")
UNEXPLAINED = "unexplained"
UNEXPLAINED_SPEC = RuleSpec(UNEXPLAINED, "unexplained", "high", "loss",
                            "a run that failed (diverged, at chance, flat) with no root cause measured; lists what "
                            "was ruled out")


def _unexplained(view: RunView, findings: list[Finding]) -> Finding | None:
    """The failure no root cause explains, with what was ruled out (None when the run did not fail)."""
    from diagnose.findings.outcome import failure

    failed = failure(view)
    if failed is None:
        return None
    found = {f.id for f in findings}
    checked = [r.spec for r in RULES if r.spec.kind == "root-cause" and r.spec.id not in found]
    symptoms = [f.id for f in findings if f.kind == "symptom"]
    from diagnose.findings.outcome import constant_output
    from diagnose.findings.rules_inputs import zero_inputs

    silent, same = zero_inputs(view), constant_output(view)
    evidence = list(failed.evidence) + silent + ([same] if same is not None else [])
    evidence.append(Evidence("root causes checked, none found", len(checked), None))
    shown = f" It shows {', '.join(symptoms)}." if symptoms else ""
    ruled_out = "; ".join(f"{spec.id} ({spec.what})" for spec in checked)
    return Finding(
        id=UNEXPLAINED, kind="unexplained", severity="high",
        title=f"Unexplained: the run {failed.words}, and no root cause that diagnose measures explains it",
        evidence=tuple(evidence),
        explanation=(f"The run failed ({failed.kind}).{shown} Ruled out, each checked on this run's record: "
                     f"{ruled_out}. What a run's record cannot show remains: " + "; ".join(_UNMEASURED) + "."),
        fix=(("An input is 0 everywhere (" + ", ".join(e.metric.split(" ")[0] for e in silent) + "): the model "
              "has nothing to tell its examples apart by; check how it was prepared (values under 1 cast to an "
              "integer type, a wrong column). " if silent else "") +
             ("The model's output was the same for every example from the first step: find the operation that "
              "makes it constant (a softmax or normalisation over the wrong axis, then averaged away; an axis "
              "of size 1). " if same is not None else "") +
             "Check what no rule measures, in that order: that each label belongs to its input (train on 100 "
             "examples until the loss is near 0: a model that cannot memorise them has a bug before the loss); "
             "that validation data is prepared as training data is; that the model can represent the task. To "
             "test a suspicion, prove it: diagnose check RUN --prove --also ID."),
        figure="loss")


def check_run(run_dir: str | os.PathLike) -> list[Finding]:
    """Reads a run directory and applies every rule (see :func:`check_view`).

    Raises:
        DiagnoseError: ``run_dir`` holds no run record.
    """
    return check_view(RunView.load(run_dir))


def format_findings(findings: list[Finding]) -> str:
    """Plain text, one block per finding: header, evidence lines, explanation, fix."""
    if not findings:
        return "No findings: no rule matched this run.\n"
    blocks = []
    for f in findings:
        lines = [f"[{f.kind}/{f.severity}] {f.id}: {f.title}"]
        lines += [f"  - {e.line()}" for e in f.evidence]
        lines.append(f"  why: {f.explanation}")
        lines.append(f"  fix: {f.fix}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"

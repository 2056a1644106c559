"""The rule registry: every rule declared once, with its id, kind, default severity and figure.

A rule is a pure function ``rule(view) -> Hit | None`` of a
:class:`~diagnose.findings.base.RunView`, declared with :func:`rule`; the
declaration is the only place its id, kind and the report figure that shows its
evidence are written. Importing :mod:`diagnose.findings` registers every rule
module, so a new rule touches its rule module and its test.

    @rule("tiny-steps", kind="root-cause", severity="medium", figure="updates",
          what="weights move far less per step than healthy training")
    def tiny_steps(view):
        ...
        return Hit(title, evidence, explanation, fix)
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from diagnose.findings.base import KINDS, SEVERITIES, Evidence, Finding, RunView

__all__ = ["rule", "Hit", "RuleSpec", "RULES", "FIGURES", "spec_of", "check_view", "check_run", "format_findings"]

# The report's figures a finding can point at (the report draws one of each it has data for).
FIGURES = ("loss", "gradients", "updates", "attention-entropy", "attention-map", "branches", "output")

RULES: list = []  # the registered rule functions, in declaration order


@dataclass(frozen=True)
class RuleSpec:
    """What a rule's declaration says about it."""

    id: str
    kind: str  # its usual kind; a hit may say otherwise (a symptom where no config choice is to blame)
    severity: str
    figure: str | None  # one of FIGURES
    what: str  # one line: the pattern the rule detects


@dataclass(frozen=True)
class Hit:
    """What a rule returns when its pattern is there; the declaration supplies id and kind."""

    title: str
    evidence: tuple[Evidence, ...] | list
    explanation: str
    fix: str
    kind: str | None = None  # overrides the declared kind
    severity: str | None = None  # overrides the declared severity


def rule(id: str, *, kind: str, severity: str, figure: str | None, what: str):
    """Declares and registers a rule function (see the module docstring)."""
    if kind not in KINDS or severity not in SEVERITIES or (figure is not None and figure not in FIGURES):
        raise ValueError(f"rule {id}: kind {kind!r}, severity {severity!r} or figure {figure!r} is not known")
    if any(r.spec.id == id for r in RULES):
        raise ValueError(f"rule {id} is declared twice")
    spec = RuleSpec(id, kind, severity, figure, what)

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
    return next((r.spec for r in RULES if r.spec.id == finding_id), None)


def check_view(view: RunView) -> list[Finding]:
    """Applies every rule to an in-memory run.

    Returns:
        The findings, root causes first, then by severity (high, medium, low),
        then by id.
    """
    findings = [finding for r in RULES if (finding := r(view)) is not None]
    return sorted(findings, key=Finding.sort_key)


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

"""Applying the rules to a run: every registered rule on the run (and on each output of several), then
``unexplained`` where the run failed and no root cause was found, all in order of cause.

Above the rules (it reads what they registered, and the outcome and input facts the
``unexplained`` finding cites), so the registry below them imports none of them.
"""

from __future__ import annotations

import os

from diagnose.findings.base import Evidence, Finding, RunView
from diagnose.findings.outcome import constant_output, failure
from diagnose.findings.outputs import of_output, output_views
from diagnose.findings.registry import UNMEASURED, RULES, UNEXPLAINED, spec_of
from diagnose.findings.rules_inputs import zero_inputs

__all__ = ["check_view", "check_run", "format_findings"]


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


def _unexplained(view: RunView, findings: list[Finding]) -> Finding | None:
    """The failure no root cause explains, with what was ruled out (None when the run did not fail)."""
    failed = failure(view)
    if failed is None:
        return None
    found = {f.id for f in findings}
    checked = [r.spec for r in RULES if r.spec.kind == "root-cause" and r.spec.id not in found]
    symptoms = [f.id for f in findings if f.kind == "symptom"]
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
                     f"{ruled_out}. What a run's record cannot show remains: " + "; ".join(UNMEASURED) + "."),
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

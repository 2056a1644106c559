"""The rule registry and the functions that apply it.

A rule is a pure function ``rule(view) -> Finding | None``: it reads a
:class:`~diagnose.findings.base.RunView` and returns a finding when its pattern
is there, None when it is not or when the run lacks what the rule needs. The
rules themselves live by family in ``rules_architecture``, ``rules_attention``,
``rules_optimization`` and ``rules_curve``; thresholds in ``thresholds``.
"""

from __future__ import annotations

import os
from typing import Callable

from diagnose.findings.base import Finding, RunView
from diagnose.findings.rules_architecture import (linear_on_attention_scores, padding_attention,
                                                  relu_output_crossentropy, temporal_encoding_dominates)
from diagnose.findings.rules_attention import attention_collapsed, attention_uniform, ignores_input
from diagnose.findings.rules_curve import oscillating_loss, overfitting, plateau
from diagnose.findings.rules_optimization import (clipping_always_fires, clipping_never_fires, diverged,
                                                  exploding_gradients, huge_steps, no_gradient, tiny_steps,
                                                  vanishing_gradients)

__all__ = ["RULES", "check_view", "check_run", "format_findings"]

Rule = Callable[[RunView], "Finding | None"]

# Root causes first, then symptoms; the order only matters for reading (check_view sorts).
RULES: list[Rule] = [
    relu_output_crossentropy,
    linear_on_attention_scores,
    temporal_encoding_dominates,
    padding_attention,
    tiny_steps,
    huge_steps,
    ignores_input,
    attention_uniform,
    attention_collapsed,
    clipping_never_fires,
    clipping_always_fires,
    exploding_gradients,
    vanishing_gradients,
    no_gradient,
    diverged,
    oscillating_loss,
    plateau,
    overfitting,
]


def check_view(view: RunView) -> list[Finding]:
    """Applies every rule to an in-memory run.

    Returns:
        The findings, root causes first, then by severity (high, medium, low),
        then by id.
    """
    findings = [finding for rule in RULES if (finding := rule(view)) is not None]
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

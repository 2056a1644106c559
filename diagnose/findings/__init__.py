"""Findings: rules that read a run record and name root causes and symptoms.

    from diagnose.findings import check_run, format_findings
    print(format_findings(check_run("runs/as-posted")))

Each rule is a pure function of a :class:`RunView` (config, summary, metrics,
attention), declared once with :func:`~diagnose.findings.registry.rule`;
:data:`RULES` lists them in declaration order and
:mod:`diagnose.findings.thresholds` holds every number they compare against.
"""

# Importing the rule modules registers their rules.
from diagnose.findings import (rules_architecture, rules_attention, rules_contract,  # noqa: F401
                               rules_curve, rules_gradients, rules_inputs, rules_optimization, rules_output)
from diagnose.findings.base import Evidence, Finding, RunView
from diagnose.findings.registry import RULES, Hit, check_run, check_view, format_findings, rule, spec_of

__all__ = ["Evidence", "Finding", "RunView", "RULES", "Hit", "rule", "spec_of", "check_run", "check_view",
           "format_findings"]

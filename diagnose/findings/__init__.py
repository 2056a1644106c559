"""Findings: rules that read a run record and name root causes and symptoms.

    from diagnose.findings import check_run, format_findings
    print(format_findings(check_run("runs/as-posted")))

Each rule is a pure function of a :class:`RunView` (config, summary, metrics,
attention), declared once with :func:`~diagnose.findings.registry.rule` in a
``rules_*`` module, with the thresholds only it compares against and its mechanical
fix (:func:`~diagnose.findings.fixes.fix`) beside it; :mod:`diagnose.findings.thresholds`
holds the numbers several rules share. Every ``rules_*`` module of this package is
imported here, by name order, so a new rule is its module (or a function in one)
and its test; :data:`RULES` lists the rules in the order they were declared.
"""

import importlib
import pkgutil

from diagnose.findings.base import Evidence, Finding, RunView
from diagnose.findings.registry import RULES, Hit, rule, spec_of

# Importing the rule modules registers their rules (a module imported by another registers first).
RULE_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("rules_")))
for _name in RULE_MODULES:
    importlib.import_module(f"{__name__}.{_name}")

from diagnose.findings.check import check_run, check_view, format_findings  # noqa: E402  (after the rules)

__all__ = ["Evidence", "Finding", "RunView", "RULES", "RULE_MODULES", "Hit", "rule", "spec_of", "check_run",
           "check_view", "format_findings"]

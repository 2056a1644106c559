"""Findings: rules that read a run record and name root causes and symptoms.

    from diagnose.findings import check_run, format_findings
    print(format_findings(check_run("runs/as-posted")))

Each rule is a pure function of a :class:`RunView` (config, summary, metrics,
attention) returning a :class:`Finding` or None; :data:`RULES` lists them and
:mod:`diagnose.findings.thresholds` holds every number they compare against.
"""

from diagnose.findings.base import Evidence, Finding, RunView
from diagnose.findings.rules import RULES, check_run, check_view, format_findings

__all__ = ["Evidence", "Finding", "RunView", "RULES", "check_run", "check_view", "format_findings"]

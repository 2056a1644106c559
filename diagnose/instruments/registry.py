"""The registry of instrument families: each declared once, used by both train steps.

Adding an instrument means one module declaring its :class:`~diagnose.instruments.family.Family`,
one line in :data:`FAMILIES`, and its test.
"""

from __future__ import annotations

from diagnose.instruments import (attention, branch_balance, grad_norms, inputs, output_health, probes,
                                  update_ratios)
from diagnose.instruments.family import HISTOGRAM, Family, Step

__all__ = ["FAMILIES", "measure", "documented", "family_of"]

FAMILIES: tuple[Family, ...] = (
    grad_norms.FAMILY,
    update_ratios.FAMILY,
    attention.FAMILY,
    branch_balance.FAMILY,
    output_health.FAMILY,
    inputs.FAMILY,
    probes.FAMILY,
)


def measure(step: Step) -> tuple[dict, object]:
    """Every in-step family's columns for one step, and the attention histogram (or None)."""
    row, histogram = {}, None
    for family in FAMILIES:
        if family.measure is None:
            continue
        found = family.measure(step)
        histogram = found.pop(HISTOGRAM, histogram)
        row.update(found)
    return row, histogram


def family_of(column: str) -> Family | None:
    """The family that documents a metrics.csv column, or None (a base column, or unknown)."""
    return next((f for f in FAMILIES if f.documents(column)), None)


def documented(column: str) -> bool:
    return family_of(column) is not None

"""The registry of instrument families: each declared once, used by both train steps.

Adding an instrument means one module declaring its :class:`~diagnose.instruments.family.Family`,
one line in :data:`FAMILIES`, and its test.
"""

from __future__ import annotations

from diagnose.instruments import (attention, branch_balance, grad_norms, inputs, loss_noise, output_health,
                                  probes, update_ratios)
from diagnose.instruments.family import HISTOGRAM, Family, Step

__all__ = ["FAMILIES", "measure", "documented", "family_of"]

FAMILIES: tuple[Family, ...] = (
    loss_noise.FAMILY,
    grad_norms.FAMILY,
    update_ratios.FAMILY,
    attention.FAMILY,
    branch_balance.FAMILY,
    output_health.FAMILY,
    inputs.FAMILY,
    probes.FAMILY,
)


def measure(step: Step, every_step: bool | None = None) -> tuple[dict, object]:
    """The in-step families' columns for one step, and the attention histogram (or None).

    Args:
        every_step: None measures every family; True only those measured on every
            step, False only the others (a sampled step's).
    """
    row, histogram = {}, None
    for family in FAMILIES:
        if family.measure is None or (every_step is not None and family.every_step != every_step):
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

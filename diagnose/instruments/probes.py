"""The ignores-input probe: the loss on a fixed batch with real, shuffled and zeroed inputs.

Taken outside the train step, on a schedule (:func:`next_probe`), by both training
paths, with the same input variants (:func:`variants`). Shuffling pairs every
example's input with another example's target, so a model that uses its input
loses much more on it; zeroing feeds all-zero (all-padding) inputs, which can be
out of distribution for a model with normalisation, so the findings lean on the
shuffled loss.
"""

from __future__ import annotations

from diagnose.instruments.family import Column, Family

__all__ = ["FAMILY", "variants", "next_probe", "auto_due", "PROBE_SPACING", "spaced"]

# A probe is three forward passes over its P examples; a training step a forward pass and a backward one (about
# twice the forward's work) over a batch of B: a probe costs about P / B steps. Where the Monitor picks the
# probes' cadence, a probe is taken only once the steps since the last one number PROBE_SPACING times that, so
# that probing costs at most 1/PROBE_SPACING of the training between probes (5%).
PROBE_SPACING = 20


def variants(x) -> list:
    """``[x, shuffled, zeroed]`` for any input structure (in-graph; the batch axis is 0)."""
    import keras

    shuffled = keras.tree.map_structure(lambda t: keras.ops.roll(t, shift=1, axis=0), x)
    zeroed = keras.tree.map_structure(keras.ops.zeros_like, x)
    return [x, shuffled, zeroed]


def next_probe(step: int, every: int) -> int:
    """The first step after ``step`` at which a logged row takes a probe (every ``every`` steps)."""
    return (step // every + 1) * every


def auto_due(row: int) -> bool:
    """Whether logged row number ``row`` (1-based) takes a probe when the user sets no cadence.

    Rows 1, 2, 4, 8, ... (and the last row, which the caller adds): a run of four rows
    gets three probes, a long one a probe per doubling, so the probes cost next to
    nothing however long the run (three forward passes of one batch each). The Monitor
    also skips a row the steps since the last probe cannot pay for (:func:`spaced`).
    """
    return row > 0 and row & (row - 1) == 0


def spaced(steps_since: int, probe_rows: int | None, batch_size: int | None) -> bool:
    """Whether a probe of ``probe_rows`` examples, ``steps_since`` steps of ``batch_size`` after the last one,
    costs at most 1/PROBE_SPACING of those steps (True where either size is unknown)."""
    if not probe_rows or not batch_size:
        return True
    return steps_since * batch_size >= PROBE_SPACING * probe_rows


FAMILY = Family(
    name="probes",
    reads="a fixed batch (held out when the run has validation data), forward passes without dropout",
    columns=(
        Column("probe_loss_real", "loss on the fixed probe batch"),
        Column("probe_loss_shuffled", "... with inputs shuffled across the batch (each input paired with another "
                                      "example's target)"),
        Column("probe_loss_zeroed", "... with all-zero (all-padding) inputs"),
        Column("probe_task_error", "the task's error on the probe batch, whatever the loss: a classifier's "
                                   "balanced error, 1 - R^2 for continuous targets (task_error.task_error)"),
    ),
)

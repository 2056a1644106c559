"""When a run has diverged without a NaN: the one definition both training loops use.

A non-finite loss or gradient at any step is caught inside the compiled step (see
:mod:`diagnose.instruments.accumulate`). Two more signs need no NaN and are read
from each logged row by the host loops, :mod:`diagnose.memn2n.train` (MemN2N) and
:class:`diagnose.Monitor` (any Keras model):

* the global gradient norm is not finite: every gradient is finite but together
  they overflow float32, so clipping and the update are meaningless;
* the training loss is far beyond ln(number of classes), see :data:`LOSS_BOUND_FACTOR`.

The run then ends as ``diverged`` at that row's step.
"""

from __future__ import annotations

import math

__all__ = ["LOSS_BOUND_FACTOR", "loss_bound", "divergence"]

# ln V nats per token is a uniform guess over V classes: an untrained model sits
# there and a stalled one near it. A cross-entropy of many times ln V means the
# model puts almost no probability on its targets while putting it elsewhere:
# confident and wrong everywhere, which only blown-up logits reach (a learning rate
# 1e4x too large ended at 2.7e15 nats without a NaN). 100 x ln V stays far above
# anything training reaches without blowing up: above -ln(1e-7) = 16.1 nats, where
# Keras' clipped cross-entropy puts a target at its floor, even for two classes
# (100 ln 2 = 69 nats), and above a badly initialised model's first losses.
LOSS_BOUND_FACTOR = 100.0


def loss_bound(n_classes: int | None) -> float:
    """The training loss (nats per example) beyond which a run has diverged; inf when unknown."""
    if not n_classes or n_classes < 2:
        return math.inf
    return LOSS_BOUND_FACTOR * math.log(n_classes)


def divergence(row: dict, n_classes: int | None) -> dict | None:
    """``{"variable", "error"}`` when a logged row shows a diverged run, else None.

    Args:
        row: a metrics row: ``loss`` (the interval's mean training loss) and, with
            the instruments on, ``grad_norm/global``.
        n_classes: the number of classes the loss is over (V for a language model),
            or None when the output is not a classification: then only a non-finite
            gradient norm counts.
    """
    step = row.get("step")
    norm = row.get("grad_norm/global")
    if isinstance(norm, float) and not math.isfinite(norm) and not math.isnan(norm):
        return {"variable": "grad_norm/global",
                "error": (f"infinite global gradient norm at step {step} (in the steps since the previous row): the "
                          "gradients overflow together")}
    loss, bound = row.get("loss"), loss_bound(n_classes)
    if isinstance(loss, float) and loss > bound:
        return {"variable": "loss",
                "error": (f"training loss {loss:.3g} nats at step {step} (mean since the previous row), beyond "
                          f"{LOSS_BOUND_FACTOR:g} x ln {n_classes} = {bound:.3g}: the weights blew up")}
    return None

"""Loss noise: the spread of the per-step training loss within each logged interval.

A logged loss is a mean over the interval's steps; its noise is the per-step
spread over the square root of the steps. The findings compare the swings between
logged rows with it: a swing far beyond what minibatch noise explains is an
oscillation, one within it is not.

The step records the loss's square; the accumulator reads the interval's second
moment back as ``loss_sd`` (see :mod:`diagnose.instruments.accumulate`).
"""

from __future__ import annotations

from keras import ops

from diagnose.instruments.family import Column, Family, Step


def measure(step: Step) -> dict:
    if step.loss is None:
        return {}
    return {"loss_sq": ops.square(ops.cast(step.loss, "float32"))}


FAMILY = Family(
    name="loss noise",
    reads="the step's training loss",
    columns=(Column("loss_sd", "standard deviation of the per-step training loss within the interval"),),
    measure=measure,
    every_step=True,
)

"""Gradient norms per variable and overall, before clipping, and whether clipping fired."""

from __future__ import annotations

from keras import ops

from diagnose.instruments.gradients import CLIP_MODES
from diagnose.instruments.family import Column, Family, Step
from diagnose.instruments.measures import block, vector


def _fired(mode: str, global_norm, norms, clip_norm):
    if mode == "global":
        return ops.cast(global_norm > clip_norm, "float32")
    if mode == "per_tensor":
        return ops.cast(ops.any(norms > clip_norm), "float32")
    return ops.zeros((), "float32")


def measure(step: Step) -> dict:
    # One vector for every variable: a few kernels for any number of variables.
    norms = vector(step.norms)  # (n,)
    global_norm = ops.sqrt(ops.sum(ops.square(norms)))
    if isinstance(step.clip_mode, str):
        fired = _fired(step.clip_mode, global_norm, norms, step.clip_norm)
    else:  # an index into CLIP_MODES, read when the step runs
        by_mode = [_fired(name, global_norm, norms, step.clip_norm) for name in CLIP_MODES]
        fired = ops.take(ops.stack(by_mode), step.clip_mode)
    return {"grad_norm/global": global_norm, **block([f"grad_norm/{n}" for n in step.names], norms),
            "clip_fired": fired}


FAMILY = Family(
    name="gradients",
    reads="each variable's gradient of the step, before clipping",
    columns=(
        Column("grad_norm/global", "L2 norm of all gradients together, before clipping"),
        Column("grad_norm/NAME", "L2 norm of one variable's gradient, before clipping (embedding rows looked up "
                                 "twice are summed first)"),
        Column("clip_fired", "share of steps on which clipping rescaled a gradient (global norm or per-tensor "
                             "norm above the threshold; 0 without clipping)"),
    ),
    measure=measure,
)

"""Input scale: the RMS of each float input, and the share of zeros (padding) in each integer input.

Keras' initialisers (Glorot, He) size the first weights for inputs of unit scale;
an input a hundred times larger makes the first layer's pre-activations, and its
gradients, a hundred times too large for any learning rate that suits the rest.
Integer inputs are token ids, where 0 is padding by convention.
"""

from __future__ import annotations

import keras
from keras import ops

from diagnose.instruments.family import Column, Family, Step
from diagnose.instruments.measures import block


def measure(step: Step) -> dict:
    names, values = [], []
    for name, x in step.inputs:
        if not ops.is_tensor(x):
            continue
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" in dtype:
            names.append(f"input_rms/{name}")
            values.append(ops.sqrt(ops.mean(ops.square(ops.cast(x, "float32")))))
        elif dtype.startswith(("int", "uint")):
            names.append(f"input_zero_frac/{name}")
            values.append(ops.mean(ops.cast(ops.equal(x, 0), "float32")))
    return block(names, ops.stack(values)) if names else {}


FAMILY = Family(
    name="inputs",
    reads="the batch's inputs as the model receives them",
    columns=(
        Column("input_rms/NAME", "RMS of a float input over the batch (unit scale is what initialisers assume)"),
        Column("input_zero_frac/NAME", "share of zeros (padding) in an integer input"),
    ),
    measure=measure,
)

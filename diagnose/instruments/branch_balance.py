"""Branch balance: the RMS of each term added together at a site of the model.

On the MemN2N, site ``A`` (each memory embedding) has branches ``content`` (the word
embedding) and ``position`` (the temporal encoding added to it), and site ``hopK``
has ``h_term`` (H u, or H(scores) as posted) and ``readout`` (the attention
read-out o). On any Keras model, a layer that adds a table of its own to its
output whatever the input (a position embedding, the question's ``Added_Weights``)
is a site with ``content`` and ``position``; an ``Add`` layer is a site whose
branches are named after the layers that produce them.
"""

from __future__ import annotations

from keras import ops

from diagnose.instruments.family import Column, Family, Step
from diagnose.instruments.measures import block, rms


def measure(step: Step) -> dict:
    names, values = [], []
    for site in step.branches:
        for branch, tensor in site.tensors.items():
            names.append(f"rms/{site.site}/{branch}")
            values.append(rms(tensor))
        for branch, value in site.rms.items():
            names.append(f"rms/{site.site}/{branch}")
            values.append(ops.reshape(ops.cast(value, "float32"), ()))
    if not names:
        return {}
    return block(names, ops.stack(values))


FAMILY = Family(
    name="branch balance",
    reads="the terms added together at each additive site of the model",
    columns=(
        Column("rms/SITE/content", "RMS of the input-dependent term at a site where a table is added (the MemN2N's "
                                   "word embedding; a layer's output minus the table it adds)"),
        Column("rms/SITE/position", "RMS of the table added whatever the input (a temporal or position encoding, a "
                                    "learned bias map)"),
        Column("rms/SITE/BRANCH", "RMS of one term at an additive site: the MemN2N's h_term and readout per hop, an "
                                  "Add layer's inputs by producing layer"),
    ),
    measure=measure,
)

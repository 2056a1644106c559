"""The built-in MemN2N's attention and branch sites, read from ``model(x, return_internals=True)``.

Model-specific, beside the generic wrapper's discovery (:mod:`diagnose.instruments.taps`):
both hand the same families (:mod:`diagnose.instruments.registry`) the same kinds
of sites, so the columns mean the same on both paths.
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.family import AttentionSite, BranchSite
from diagnose.instruments.measures import rms_per

tf = import_tensorflow_quietly()

__all__ = ["sites"]


def sites(internals: dict, mcfg, windows, row_sq: dict) -> tuple[list, list]:
    """Attention sites (one per hop) and branch sites (each memory embedding, each hop).

    Args:
        internals: the model's internals for the step's batch.
        mcfg: its MemN2NConfig.
        windows: (B, M) the batch's token ids.
        row_sq: encoder name -> squared row norms of its embedding table (the
            word RMS is read from them: the same number as the RMS of the (B, M, D)
            lookup, without another pass over it).
    """
    attention = [AttentionSite(a, internals["pad_mask"]) for a in internals["attention"]]
    names, temporal = [], []
    for enc in internals["encoders"]:
        for side in ("a", "c"):
            if enc[f"{side}_name"] not in names:
                names.append(enc[f"{side}_name"])
                temporal.append(enc[f"{side}_temporal"])
    looked_up = tf.gather(tf.stack([row_sq[n] for n in names]), windows, axis=1)  # (E, B, M)
    word = tf.sqrt(tf.reduce_mean(looked_up, axis=[1, 2]) / float(mcfg.embed_dim))  # (E,)
    position = None if temporal[0] is None else rms_per(tf.stack([tf.cast(t, tf.float32) for t in temporal]))
    branches = []
    for i, name in enumerate(names):
        rms = {"content": word[i]}
        if position is not None:
            rms["position"] = position[i]
        branches.append(BranchSite(name, rms=rms))
    k = mcfg.hops
    both = rms_per(tf.stack(internals["h_term"] + internals["readout"]))  # (2K,): H terms, then read-outs
    for hop in range(k):
        branches.append(BranchSite(f"hop{hop + 1}", rms={"h_term": both[hop], "readout": both[k + hop]}))
    return attention, branches

"""Rules about the model's design: H wiring, position encodings, padding, constant initialisation.

These read the configuration first (the MemN2N fields, or a Keras model's layer
classes, configs and edges) and back it with metrics where the run logged them.
"""

from __future__ import annotations

import re

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, RunView, all_layers, hop_columns, late, progress, series, steps_of
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.graph import KerasGraph
from diagnose.findings.outcome import underperformed
from diagnose.findings.registry import Hit, rule

__all__ = ["linear_on_attention_scores", "temporal_encoding_dominates", "padding_attention", "constant_init",
           "constant_weights"]

# rms(temporal) / rms(word) above 8: the temporal encoding then carries
# 64 / 65 = 98.5% of the memory vector's energy and the match scores barely see the
# words. Not lower: the paper's own learned encoding (N(0, 0.05), like the words)
# grows to 1.5-5x the word embedding on the synthetic corpora while training well,
# as position is informative there; a constant init of ones or a unit-amplitude
# sinusoid gives 10-35x.
TEMPORAL_RATIO = 8.0
# Mean attention mass on padded slots above 5%: padded slots hold no word, so any
# mass there is read-out wasted on the pad embedding; with masking it is exactly 0.
PAD_MASS = 0.05
# With padding encoded and a temporal encoding, any measurable mass on pads shows
# the position signal pulling attention onto them; 0.1% is above float noise.
PAD_MASS_ANY = 1e-3


def _late_mean(view: RunView, column: str) -> tuple[float, tuple[int, int]] | None:
    window = late(series(view, column))
    return None if window is None else (float(window.mean()), steps_of(window))


@rule("linear-on-attention-scores", kind="root-cause", severity="medium", figure="branches",
      what="a linear map (H) applied to match scores or attention weights instead of the hidden state",
      # Scores grow with the state and H feeds them back into it: activations grow hop over hop.
      explains=("attention-collapsed", "attention-uniform", "ignores-input", "plateau", "exploding-gradients",
                "huge-steps"))
def linear_on_attention_scores(view: RunView) -> Hit | None:
    model = view.model
    evidence: list[Evidence] = []
    if view.is_keras:
        graph = KerasGraph(model)
        hits = graph.linear_on_attention()
        if not hits:
            return None
        seen = set()
        for linear, source, soft, how in hits:
            if (linear, source) in seen:
                continue
            seen.add((linear, source))
            observed = (f"{graph.describe(linear)} reads {graph.describe(source)}"
                        + (f", the scores fed to {graph.describe(soft)}" if how == "scores" else
                           ", attention probabilities"))
            evidence.append(Evidence(graph.field(linear, "inbound"), observed, "the hidden state"))
        fix = ("Apply the Dense to the hidden state instead: u_next = Dense(u) + o, where u is the query/"
               "previous hop's output and o the attention read-out (Dot(attention, content)); "
               "leave the scores to the Softmax alone.")
    elif model.get("h_wiring") == "scores":
        evidence.append(Evidence("model.h_wiring", "scores", "state"))
        # The H term beside the read-out shows how much of each hop's output comes from the scores.
        for column in [c for c in view.metrics.columns if re.fullmatch(r"rms/hop\d+/(h_term|readout)", str(c))]:
            found = _late_mean(view, column)
            if found is not None:
                evidence.append(Evidence(column, found[0], None, found[1]))
        fix = "Apply H to the hidden state, u^{k+1} = H u^k + o^k (paper): --set h_wiring=state."
    else:
        return None
    return Hit(
        title="A linear layer is applied to the attention scores, not to the hidden state",
        evidence=tuple(evidence),
        explanation=("The hop's hidden-state map H reads the match scores over memory slots, so what it adds "
                     "to the next hop is indexed by slot position rather than by meaning, and the query never "
                     "passes from hop to hop."),
        fix=fix)


def at_start(view: RunView, s):
    """The value of series ``s``'s column over the run's first step(s) alone (``summary.at_start``), as a series."""
    import pandas as pd

    start = (view.summary.get("at_start") or {}) if s is not None else {}
    value = start.get(str(s.name)) if isinstance(start, dict) else None
    return None if value is None else pd.Series([float(value)], index=[1], name=s.name)


def dominating_positions(view: RunView) -> list[tuple[str, float, str, object, float]]:
    """Sites whose position table's RMS is over TEMPORAL_RATIO x the content's it is added to.

    Read late (where training left it), or at the start (where it decides what the model
    learns first) when the run went wrong, not when the model outgrew it while learning:
    the first step, as the model was built (a run that blows up within its first row has
    scaled both terms by then), else the first row.

    Returns:
        ``(site, ratio, window, steps, the content's RMS there)`` per site, in column order.
    """
    got = progress(view)
    windows = [("late mean", late)]
    if got is None or got < T.LEARNED_LITTLE:
        windows += [("first step", lambda s: at_start(view, s)), ("first row", lambda s: None if s is None else
                                                                  s.iloc[:1])]
    found = []
    for column in view.metrics.columns:
        match = re.fullmatch(r"rms/(.+)/position", str(column))
        if not match:
            continue
        site = match.group(1)
        for when, window in windows:
            position, content = window(series(view, column)), window(series(view, f"rms/{site}/content"))
            if position is None or content is None or float(content.mean()) <= 0:
                continue
            ratio = float(position.mean()) / float(content.mean())
            if ratio > TEMPORAL_RATIO:
                found.append((site, ratio, when, steps_of(position), float(content.mean())))
                break
    return found


@rule("temporal-encoding-dominates", kind="root-cause", severity="medium", figure="branches",
      what="a position encoding (a table added whatever the input) that drowns the content it is added to",
      # A table at unit scale added to content scaled for 0.05 makes activations, hence gradients, tens of
      # times what the learning rate was chosen for: it acts like an input far from unit scale.
      explains=("attention-uniform", "attention-collapsed", "ignores-input", "plateau", "huge-steps",
                "exploding-gradients", "clipping-always-fires", "oscillating-loss"))
def temporal_encoding_dominates(view: RunView) -> Hit | None:
    found = dominating_positions(view)
    evidence = [Evidence(f"rms/{site}/position / rms/{site}/content ({when})", ratio, TEMPORAL_RATIO, steps)
                for site, ratio, when, steps, _ in found]
    worst, sites = max((f[1] for f in found), default=0.0), [f[0] for f in found]
    if not evidence:
        return None
    model = view.model
    if model.get("temporal") == "sinusoidal":
        evidence.append(Evidence("model.temporal", "sinusoidal", None))
        fix = ("The unit-amplitude sinusoid swamps embeddings of scale 0.05: learn the encoding instead "
               "(--set temporal=learned temporal_init=0.05) or scale the embeddings up to match it.")
    elif "temporal_init" in model:
        evidence.append(Evidence("model.temporal_init", str(model["temporal_init"]), None))
        fix = ("Start the temporal encoding at the word embeddings' scale, N(0, 0.05) as in the paper "
               "(--set temporal_init=0.05); if it already starts there and grows, try a fixed encoding "
               "(--set temporal=sinusoidal) with embeddings at a matching scale.")
    else:
        fix = (f"Initialise the position table of {', '.join(sites)} at or below the scale of what it is added to "
               "(e.g. RandomNormal(stddev=0.05), or the embedding's own initializer, rather than 'ones' or a large "
               "std), or scale the content up to match it.")
    return Hit(
        title=f"The position encoding is {worst:.1f}x larger than the content it is added to",
        evidence=evidence,
        explanation=("The layer's output is content plus a position table added whatever the input; when the "
                     "table dominates, what follows (the attention's match scores, the next layers) sees the "
                     "slot position rather than the content, so attention picks positions, not words."),
        fix=fix)


@fix("temporal-encoding-dominates", what="the position table started at the scale of the content it is added to")
def _position_table(view):
    sites = [site for site, *_ in dominating_positions(view)]
    scales = []
    for site in sites:  # the content's scale as the model was built: its first step, else its first row
        content = series(view, f"rms/{site}/content")
        first = at_start(view, content) if content is not None else None
        scales.append(float((first if first is not None else content).iloc[0]))
    if not sites:
        return None
    stddev = float(f"{min(scales):.3g}")
    return Remedy({"op": "reinit_table", "sites": sites, "stddev": stddev}, f"N(0,{stddev:g})",
                  f"the position table of {', '.join(sites)} drawn from N(0, {stddev:g}), the content's scale")


@rule("padding-attention", kind="root-cause", severity="medium", figure="attention-map",
      what="attention mass landing on padded memory slots (on a Keras model: id 0 in the token input, through the "
           "attention's own mask, in a run that failed)",
      explains=("attention-collapsed", "attention-uniform", "ignores-input", "plateau", "no-gradient",
                "blocked-gradient", "vanishing-gradients"))
def padding_attention(view: RunView) -> Hit | None:
    """Attention mass lands on padded slots.

    Kind: a root cause when the config encodes padding (``padding == "encoded"``):
    the pad id is then an ordinary embedded token, plus a learned position, so it
    can win attention, and masking it is the change that removes the mass; and on a
    Keras model whose attention was given a mask, in a run that failed or learned
    little: its padding is read from the batch (id 0 in the integer input the
    attention's slots come from), so mass there means the mask forbids slots but not
    the padding (built the other way round: 1 on padding), and masking right is the
    change. An unmasked Keras attention reads some padding by construction and may do
    well regardless: not named. With the MemN2N's masked padding the mass is only a
    symptom: something upstream leaks it, and the config names no choice to undo.
    Padded slots all hold the same vector, so attention that reads them pools the same
    thing for every example: what it explains (the input ignored, uniform weights, no
    gradient for the query and key, which cannot change what identical slots give).
    """
    hops = hop_columns(view, "attn_pad_mass")
    means = {k: _late_mean(view, column) for k, column in hops.items()}
    means = {k: v for k, v in means.items() if v is not None}
    if not means:
        return None
    mass = sum(v[0] for v in means.values()) / len(means)
    model = view.model
    encoded = model.get("padding") == "encoded"
    temporal = model.get("temporal") not in (None, "none")
    limit = PAD_MASS_ANY if encoded and temporal else PAD_MASS
    if mass <= limit:
        return None
    masks = {k: _late_mean(view, column) for k, column in hop_columns(view, "attn_masked").items()}
    masks = {k: v for k, v in masks.items() if v is not None and v[0] > 0 and k in means}
    failed = underperformed(view) if view.is_keras else None
    if view.is_keras and not encoded and (failed is None or not masks):
        # Unmasked, reading some padding is how such a model was built, and it may do well regardless; masked,
        # in a run that learned its task, the mass did no harm.
        return None
    steps = next(iter(means.values()))[1]
    evidence = [Evidence("attn_pad_mass (mean over hops)", mass, limit, steps)]
    evidence += [Evidence(f"attn_masked/hop{k} (the share of slots its own mask forbids)", v[0], None, v[1])
                 for k, v in list(masks.items())[:2]]
    if failed is not None:
        evidence.append(failed)
    evidence += [Evidence(hops[k], v[0], None, v[1]) for k, v in means.items()]
    if encoded:
        evidence.append(Evidence("model.padding", "encoded", "masked"))
        if temporal:
            evidence.append(Evidence("model.temporal", str(model.get("temporal")), None))
        kind = "root-cause"
        fix = "Mask padded slots out of the softmax (scores -inf, memories 0), as the paper does: --set padding=masked."
    elif view.is_keras:
        kind = "root-cause"
        fix = ("The attention's mask forbids slots, but not the padding: Keras' attention_mask (and Softmax's "
               "mask) is True where attending is allowed, so build it as ids != 0; a mask built the TensorFlow "
               "tutorial's way (1 on padding, 'do not attend') has to be inverted for Keras. "
               "Embedding(mask_zero=True) passes the right mask on by itself.")
    else:
        kind = "symptom"
        fix = ("Mask padded memory slots before the softmax (set their scores to -inf, e.g. with a mask from "
               "the input ids == pad id) so no attention can land on them.")
    return Hit(
        kind=kind,
        title=f"{mass:.1%} of the attention lands on padded memory slots",
        evidence=tuple(evidence),
        explanation=("Padded slots hold no word; attention spent on them reads the pad embedding (plus its "
                     "temporal encoding) instead of context, and with a learned position the pads can become "
                     "systematic winners."),
        fix=fix)


_CONSTANT_INITS = ("Zeros", "Ones", "Constant")
# Weights that start constant by design, whatever their number of axes, by their last path component.
_VECTOR_LEAVES = ("bias", "gamma", "beta", "moving_mean", "moving_variance", "scale", "offset")
# Initializers of weights that start constant by design (biases, normalisation scales and shifts, statistics).
_CONSTANT_BY_DESIGN = ("bias_initializer", "beta_initializer", "gamma_initializer", "moving_mean_initializer",
                       "moving_variance_initializer")


def constant_weights(view: RunView) -> list[tuple[str, str, str]]:
    """Hidden weights that start with every entry equal: ``(layer, where, how)`` per weight found.

    Read from every initializer a layer is configured with (kernels, embedding tables,
    recurrent kernels...), the output layer's own left out (a zero output layer on random
    features still learns), and from the initial values themselves: a weight of two or
    more axes whose values were all equal when training started (summary.json's digest is
    null), however it got them (a constant initializer of the user's own, set_weights).
    """
    graph = KerasGraph(view.model)
    outputs = set(graph.outputs())
    found, layers = [], set()
    for layer in all_layers(view):
        name = layer.get("name")
        if name in outputs:
            continue
        for key, init in (layer.get("config") or {}).items():
            if key.endswith("initializer") and key not in _CONSTANT_BY_DESIGN \
                    and str(init or "").startswith(_CONSTANT_INITS):
                found.append((name, f"config.{key}", str(init)))
                layers.add(name)
    digests, shapes = view.summary.get("initial_weight_digests"), view.summary.get("variables")
    owners = view.summary.get("variable_layers")
    # A table added to a layer's output (a position encoding) is temporal-encoding-dominates' to judge.
    tables = {m.group(1) for c in view.metrics.columns if (m := re.fullmatch(r"rms/(.+)/position", str(c)))}
    if isinstance(digests, dict) and isinstance(shapes, dict):
        for variable, digest in digests.items():
            owner, leaf = variable.split("/", 1)[0], variable.rsplit("/", 1)[-1]
            shape = shapes.get(variable) or []
            # Units that stay identical need two or more of them: a (n, 1) kernel has one unit.
            if digest is not None or len(shape) < 2 or shape[-1] < 2 or owner in outputs or owner in layers \
                    or leaf in _VECTOR_LEAVES or owner in tables or variable in tables:
                continue  # a bias of two axes (a GRU's, MultiHeadAttention's) starts constant by design
            if isinstance(owners, dict) and owners.get(variable) in ("BatchNormalization", "LayerNormalization"):
                continue
            found.append((owner, f"summary.initial_weight_digests.{variable}", "every value equal at step 0"))
            layers.add(owner)
    return found


@rule("constant-init", kind="root-cause", severity="medium", figure="gradients",
      what="a hidden layer's weights (kernel, embedding table, recurrent kernel) initialised to one constant, so "
           "all its units stay identical",
      explains=("no-gradient", "vanishing-gradients", "tiny-steps", "ignores-input", "plateau", "blocked-gradient",
                "dead-network", "huge-steps"))
def constant_init(view: RunView) -> Hit | None:
    if not view.is_keras:
        return None
    graph = KerasGraph(view.model)
    evidence, layers = [], set()
    for name, where, how in constant_weights(view):
        layers.add(name)
        field = graph.field(name, where) if where.startswith("config.") and name in graph.by_name else \
            f"{name}.{where}" if where.startswith("config.") else where
        evidence.append(Evidence(field, how, "a random initializer"))
    if not evidence:
        return None
    if not any(e.metric.startswith("model.") or ".config." in e.metric for e in evidence):
        # Seen only in the values (a zero-initialised projection at the end of a residual branch is a
        # known good start, and random layers after a constant one break its symmetry): named only where
        # the run failed or learned little.
        failed = underperformed(view)
        if failed is None:
            return None
        evidence.append(failed)
    return Hit(
        title=f"{len(layers)} hidden layer(s) start with every weight equal",
        evidence=evidence,
        explanation=("When every weight of a layer starts at the same value, every unit computes the same output "
                     "and receives the same gradient, so the units stay identical for ever: the layer works as "
                     "one unit however wide it is (with zeros, often no gradient flows at all)."),
        fix=("Use a random initializer (Keras' defaults: glorot_uniform for kernels, uniform(-0.05, 0.05) for "
             "embedding tables, orthogonal for recurrent kernels; he_normal before ReLUs); constant "
             "initialisation is for biases."))


@fix("constant-init", what="hidden kernels drawn from Glorot uniform (tables from uniform(-0.05, 0.05)) "
                           "instead of a constant")
def _constant_init(view):
    layers = list(dict.fromkeys(name for name, _, _ in constant_weights(view)))
    if not layers:
        return None
    return Remedy({"op": "reinit_kernels", "layers": layers}, "glorot",
                  f"the kernels of {', '.join(layers)} drawn from Glorot uniform")

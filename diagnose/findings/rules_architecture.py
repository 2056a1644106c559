"""Rules about the model's design: output layer, H wiring, temporal encoding, padding.

These read the configuration first (the MemN2N fields, or a Keras model's layer
classes, configs and edges) and back it with metrics where the run logged them.
"""

from __future__ import annotations

import re

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, Finding, RunView, hop_columns, late, series, steps_of
from diagnose.findings.graph import KerasGraph

__all__ = ["relu_output_crossentropy", "linear_on_attention_scores", "temporal_encoding_dominates",
           "padding_attention"]


def _late_mean(view: RunView, column: str) -> tuple[float, tuple[int, int]] | None:
    window = late(series(view, column))
    return None if window is None else (float(window.mean()), steps_of(window))


def _normalised_loss_name(loss) -> str:
    """``CategoricalCrossentropy`` / ``categorical_crossentropy`` -> ``categoricalcrossentropy``."""
    return re.sub(r"[^a-z]", "", str(loss).lower())


def relu_output_crossentropy(view: RunView) -> Finding | None:
    """The output is not a probability distribution, yet feeds a probabilistic cross-entropy."""
    model = view.model
    evidence: list[Evidence] = []
    if view.is_keras:
        probabilistic = {_normalised_loss_name(name) for name in T.PROBABILISTIC_LOSSES}
        if _normalised_loss_name(model.get("loss")) not in probabilistic or model.get("loss_from_logits"):
            return None
        graph = KerasGraph(model)
        outputs = graph.outputs()
        if not outputs or graph.output_is_distribution(outputs[0]) is not False:
            return None
        out = outputs[0]
        activation = graph.activation(out) or "none"
        evidence.append(Evidence(graph.field(out, "config.activation"), activation, "softmax"))
        evidence.append(Evidence("model.loss", str(model.get("loss")), "from_logits=True or a softmax output"))
        what = f"the output layer ({graph.describe(out)}, activation {activation})"
        fix = ("Make the last layer linear (activation=None) and train with "
               "keras.losses.CategoricalCrossentropy(from_logits=True) (sparse_... for integer targets); "
               "or give it activation='softmax' and keep the loss.")
    elif model.get("output") == "relu":
        evidence.append(Evidence("model.output", "relu", "softmax"))
        what = "the ReLU output layer"
        fix = ("Use a linear output layer with softmax cross-entropy (from_logits=True), as the paper does: "
               "--set output=softmax.")
    else:
        return None
    floor_share = None
    for column in ("out_zero_frac", "out_dead_rows", "target_at_floor"):
        found = _late_mean(view, column)
        if found is not None:
            evidence.append(Evidence(column, found[0], None, found[1]))
            if column == "target_at_floor":
                floor_share = found[0]
    cost = ""
    if floor_share:
        cost = (f" Late in training {floor_share:.1%} of targets sat at the 1e-7 clip floor, each costing "
                f"{T.FLOOR_NATS:.1f} nats: about {floor_share * T.FLOOR_NATS:.2f} nats of the mean loss.")
    return Finding(
        id="relu-output-crossentropy", kind="root-cause", severity="high",
        title="ReLU/linear output trained with a cross-entropy that expects probabilities",
        evidence=tuple(evidence),
        explanation=(f"Categorical cross-entropy divides the outputs of {what} by their sum and clips the "
                     "result to [1e-7, 1]: a target output at 0 gets probability 1e-7 and no gradient, so "
                     "units and examples that die never recover." + cost),
        fix=fix)


def linear_on_attention_scores(view: RunView) -> Finding | None:
    """A linear map (H) applied to match scores or attention weights instead of the hidden state."""
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
        for column in [c for c in view.metrics.columns if re.fullmatch(r"rms/hop\d+_(h_term|readout)", str(c))]:
            found = _late_mean(view, column)
            if found is not None:
                evidence.append(Evidence(column, found[0], None, found[1]))
        fix = "Apply H to the hidden state, u^{k+1} = H u^k + o^k (paper): --set h_wiring=state."
    else:
        return None
    return Finding(
        id="linear-on-attention-scores", kind="root-cause", severity="high",
        title="A linear layer is applied to the attention scores, not to the hidden state",
        evidence=tuple(evidence),
        explanation=("The hop's hidden-state map H reads the match scores over memory slots, so what it adds "
                     "to the next hop is indexed by slot position rather than by meaning, and the query never "
                     "passes from hop to hop."),
        fix=fix)


def temporal_encoding_dominates(view: RunView) -> Finding | None:
    """The temporal encoding's RMS dwarfs the word embedding's, for some memory embedding."""
    evidence: list[Evidence] = []
    worst = 0.0
    for column in view.metrics.columns:
        match = re.fullmatch(r"rms/(.+)_temporal", str(column))
        if not match:
            continue
        temporal, word = _late_mean(view, column), _late_mean(view, f"rms/{match.group(1)}_word")
        if temporal is None or word is None or word[0] <= 0:
            continue
        ratio = temporal[0] / word[0]
        if ratio > T.TEMPORAL_RATIO:
            worst = max(worst, ratio)
            evidence.append(Evidence(f"rms/{match.group(1)}_temporal / rms/{match.group(1)}_word", ratio,
                                     T.TEMPORAL_RATIO, temporal[1]))
            evidence.append(Evidence(column, temporal[0], None, temporal[1]))
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
        fix = ("Initialise the added positional weights at or below the embedding scale (e.g. "
               "RandomNormal(stddev=0.05) rather than 'ones') or use a fixed encoding of matching scale.")
    return Finding(
        id="temporal-encoding-dominates", kind="root-cause", severity="medium",
        title=f"The temporal encoding is {worst:.1f}x larger than the word embedding",
        evidence=tuple(evidence),
        explanation=("Memory vectors are word embedding plus temporal encoding; when the encoding dominates, "
                     "the match scores depend on slot position rather than on the words, so attention picks "
                     "positions, not content."),
        fix=fix)


def padding_attention(view: RunView) -> Finding | None:
    """Attention mass lands on padded slots.

    Kind: a root cause when the config encodes padding (``padding == "encoded"``):
    the pad id is then an ordinary embedded token, plus a learned position, so it
    can win attention, and masking it is the change that removes the mass. With
    masked padding (or a user model, whose masking we cannot see) the mass is only a
    symptom: something upstream leaks it, and the config names no choice to undo.
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
    limit = T.PAD_MASS_ANY if encoded and temporal else T.PAD_MASS
    if mass <= limit:
        return None
    steps = next(iter(means.values()))[1]
    evidence = [Evidence("attn_pad_mass (mean over hops)", mass, limit, steps)]
    evidence += [Evidence(hops[k], v[0], None, v[1]) for k, v in means.items()]
    if encoded:
        evidence.append(Evidence("model.padding", "encoded", "masked"))
        if temporal:
            evidence.append(Evidence("model.temporal", str(model.get("temporal")), None))
        kind = "root-cause"
        fix = "Mask padded slots out of the softmax (scores -inf, memories 0), as the paper does: --set padding=masked."
    else:
        kind = "symptom"
        fix = ("Mask padded memory slots before the softmax (set their scores to -inf, e.g. with a mask from "
               "the input ids == pad id) so no attention can land on them.")
    return Finding(
        id="padding-attention", kind=kind, severity="medium",
        title=f"{mass:.1%} of the attention lands on padded memory slots",
        evidence=tuple(evidence),
        explanation=("Padded slots hold no word; attention spent on them reads the pad embedding (plus its "
                     "temporal encoding) instead of context, and with a learned position the pads can become "
                     "systematic winners."),
        fix=fix)

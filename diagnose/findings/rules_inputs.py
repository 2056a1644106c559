"""Rules about what the model is fed: inputs far from unit scale, padding a recurrent layer reads unmasked."""

from __future__ import annotations

import math
import re

from diagnose.findings import thresholds as T
from diagnose.findings.base import Evidence, RunView, late, series, steps_of
from diagnose.findings.graph import PASS_THROUGH, KerasGraph
from diagnose.findings.outcome import underperformed
from diagnose.findings.registry import Hit, rule

__all__ = ["unscaled_inputs", "unmasked_padding", "zero_inputs"]

# Layers that bring an input to a fixed scale before any weight sees it ...
NORMALISERS = frozenset({"Normalization", "BatchNormalization", "LayerNormalization", "Rescaling",
                         "GroupNormalization", "UnitNormalization"})
# ... and layers whose output does not scale with their input at all: they read raw units by
# design (bin edges, vocabularies and hashes are in the input's own units).
SCALE_FREE = frozenset({"Discretization", "Hashing", "IntegerLookup", "StringLookup", "CategoryEncoding",
                        "TextVectorization", "HashedCrossing"})
RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D"})


def _columns(view: RunView, prefix: str) -> list[tuple[str, str]]:
    return [(str(c), m.group(1)) for c in view.metrics.columns if (m := re.fullmatch(prefix + r"/(.+)", str(c)))]


def zero_inputs(view: RunView) -> list[Evidence]:
    """Evidence of each float input that is 0 everywhere on every logged step (``input_rms/NAME``): a model
    fed nothing to tell its examples apart (values under 1 cast to an integer type, an empty column)."""
    found = []
    for column, _ in _columns(view, "input_rms"):
        values = series(view, column)
        if values is not None and len(values) and float(values.abs().max()) == 0.0:
            found.append(Evidence(f"{column} (every logged step)", 0.0, "an input that varies", steps_of(values)))
    return found


def _first_layers(graph: KerasGraph, source: str) -> set[str]:
    """The first layers that do more than reshape or drop, reading ``source``."""
    out, todo, seen = set(), [source], set()
    while todo:
        current = todo.pop()
        for name in graph.by_name:
            if current in graph.producers(name) and name not in seen:
                seen.add(name)
                (todo.append(name) if graph.cls(name) in PASS_THROUGH else out.add(name))
    return out


def _scales(graph: KerasGraph, name: str) -> bool:
    """Whether the layer takes the input's scale out of what follows: a normaliser holding a state (a
    Normalization never adapted is the identity), or a layer that reads raw units by design."""
    layer = graph.by_name.get(name) or {}
    cls = graph.cls(name)
    return cls in SCALE_FREE or (cls in NORMALISERS and layer.get("adapted") is not False)


@rule("unscaled-inputs", kind="root-cause", severity="medium", figure="gradients",
      what="a float input far from unit scale, read by weights with no normalisation first, in a run that failed "
           "or learned little",
      explains=("huge-steps", "exploding-gradients", "dead-network", "diverged", "oscillating-loss",
                "clipping-always-fires"))
def unscaled_inputs(view: RunView) -> Hit | None:
    graph = KerasGraph(view.model) if view.is_keras else None
    evidence = []
    for column, name in _columns(view, "input_rms"):
        window = late(series(view, column))
        if window is None or float(window.mean()) <= T.INPUT_RMS:
            continue
        first = _first_layers(graph, name) if graph is not None else set()
        if first and all(_scales(graph, layer) for layer in first):
            continue
        evidence.append(Evidence(column, float(window.mean()), T.INPUT_RMS, steps_of(window)))
        for layer in sorted(first)[:2]:
            evidence.append(Evidence(f"first layer reading {name}", graph.describe(layer), "a normalisation layer"))
    # The scale the first weights read, after the model's own preprocessing (a Rescaling applied twice).
    facts = view.summary.get("contract") if isinstance(view.summary.get("contract"), dict) else {}
    for entry in facts.get("first_weights") or []:
        rms = (entry or {}).get("input_rms")
        if isinstance(rms, (int, float)) and (rms > T.INPUT_RMS or 0 < rms < T.INPUT_RMS_LOW) and not any(
                e.metric.startswith("input_rms/") for e in evidence):
            evidence.append(Evidence(f"summary.contract.first_weights.{entry.get('name')}.input_rms (what the first "
                                     "weights read, at step 0)", float(rms),
                                     T.INPUT_RMS if rms > T.INPUT_RMS else T.INPUT_RMS_LOW, (0, 0)))
    if not evidence:
        return None
    failed = underperformed(view)
    if failed is None:
        return None  # inputs of large scale that the model learned from anyway (a rate small enough) are no cause
    evidence.append(failed)
    scales = [e.observed for e in evidence if e.threshold in (T.INPUT_RMS, T.INPUT_RMS_LOW)]
    worst = max(scales, key=lambda v: abs(math.log10(max(v, 1e-30))))
    return Hit(
        title=f"Inputs are far from unit scale (RMS {worst:.3g})",
        evidence=evidence,
        explanation=("Initialisers size the first weights for inputs of about unit scale. Inputs this large make "
                     "the first layer's pre-activations and gradients as many times too large, so a learning rate "
                     "that suits the rest of the network throws the first layer about: ReLUs die, the loss "
                     "thrashes or diverges. Inputs a hundred times too small (scaled twice) make them as many times "
                     "too small: the first weights must grow a hundredfold before the input counts."),
        fix=("Scale the inputs: divide pixels by 255 (keras.layers.Rescaling(1/255)), standardise features "
             "(keras.layers.Normalization adapted on the training data), or put a BatchNormalization first."))


@rule("unmasked-padding", kind="root-cause", severity="medium", figure="loss",
      what="mostly-padding sequences read by a recurrent layer with no mask",
      explains=("ignores-input", "plateau", "vanishing-gradients"))
def unmasked_padding(view: RunView) -> Hit | None:
    if not view.is_keras:
        return None
    graph = KerasGraph(view.model)
    recurrent = [n for n in graph.by_name if graph.cls(n) in RECURRENT]
    masked = any(graph.cls(n) == "Masking" or (graph.by_name[n].get("config") or {}).get("mask_zero")
                 for n in graph.by_name)
    if not recurrent or masked:
        return None
    evidence = []
    for column, _ in _columns(view, "input_zero_frac"):
        window = late(series(view, column))
        if window is not None and float(window.mean()) > T.PAD_SHARE:
            evidence.append(Evidence(column, float(window.mean()), T.PAD_SHARE, steps_of(window)))
    # Ids padded inside the model (a TextVectorization's sequences), as the Embedding layers read them.
    facts = (view.summary.get("contract") or {}).get("embeddings") if isinstance(view.summary.get("contract"),
                                                                                 dict) else None
    for entry in facts or []:
        share = (entry or {}).get("zero_share")
        if isinstance(share, (int, float)) and share > T.PAD_SHARE and not entry.get("mask_zero"):
            evidence.append(Evidence(f"summary.contract.embeddings.{entry.get('name')}.zero_share (ids read at "
                                     "step 0)", float(share), T.PAD_SHARE, (0, 0)))
    if not evidence:
        return None
    evidence.append(Evidence("recurrent layers", ", ".join(graph.describe(n) for n in recurrent[:3]),
                             "a mask (Embedding(mask_zero=True) or Masking)"))
    return Hit(
        title=f"{evidence[0].observed:.0%} of the input is padding, read by a recurrent layer without a mask",
        evidence=evidence,
        explanation=("Without a mask the recurrent layer steps through every padded position as if it were data; "
                     "with padding after the content, its final state has run through more padding than content "
                     "and forgets what it read, so the model learns little beyond the class frequencies."),
        fix=("Mask the padding: Embedding(..., mask_zero=True) or a Masking layer before the recurrent layer "
             "(or pad before the content, padding='pre', so the content comes last)."))

"""Rules about what the model is fed: inputs far from unit scale, padding a recurrent layer reads unmasked."""

from __future__ import annotations

import math
import re

from diagnose.findings.base import Evidence, RunView, late, series, steps_of
from diagnose.findings.fixes import Remedy, fix
from diagnose.findings.graph import PASS_THROUGH, KerasGraph
from diagnose.findings.outcome import underperformed
from diagnose.findings.registry import Hit, rule

__all__ = ["unscaled_inputs", "unmasked_padding", "zero_inputs"]

# An input RMS above 10: initialisers (Glorot, He) assume inputs of about unit scale,
# so the first layer's pre-activations and gradients are then ten times (and its
# gradient step's effect a hundred times) what the rest of the network is sized for.
# Standardised features have RMS 1; pixels in 0-255 about 100-150.
INPUT_RMS = 10.0
# ... and below 0.01, a hundred times under unit scale (pixels scaled by 1/255 twice are
# ~0.002): the first layer's pre-activations and its weights' gradients are as many times
# too small, and its weights must grow a hundredfold to use the input. One-hot inputs of up
# to 10,000 categories stay above it.
INPUT_RMS_LOW = 0.01
# More than half of an integer input is padding (id 0): a recurrent layer reading it
# unmasked then runs through more padding than content.
PAD_SHARE = 0.5

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
        if window is None or float(window.mean()) <= INPUT_RMS:
            continue
        first = _first_layers(graph, name) if graph is not None else set()
        if first and all(_scales(graph, layer) for layer in first):
            continue
        evidence.append(Evidence(column, float(window.mean()), INPUT_RMS, steps_of(window)))
        for layer in sorted(first)[:2]:
            evidence.append(Evidence(f"first layer reading {name}", graph.describe(layer), "a normalisation layer"))
    # The scale the first weights read, after the model's own preprocessing (a Rescaling applied twice).
    facts = view.summary.get("contract") if isinstance(view.summary.get("contract"), dict) else {}
    for entry in facts.get("first_weights") or []:
        rms = (entry or {}).get("input_rms")
        if isinstance(rms, (int, float)) and (rms > INPUT_RMS or 0 < rms < INPUT_RMS_LOW) and not any(
                e.metric.startswith("input_rms/") for e in evidence):
            evidence.append(Evidence(f"summary.contract.first_weights.{entry.get('name')}.input_rms (what the first "
                                     "weights read, at step 0)", float(rms),
                                     INPUT_RMS if rms > INPUT_RMS else INPUT_RMS_LOW, (0, 0)))
    if not evidence:
        return None
    failed = underperformed(view)
    if failed is None:
        return None  # inputs of large scale that the model learned from anyway (a rate small enough) are no cause
    evidence.append(failed)
    scales = [e.observed for e in evidence if e.threshold in (INPUT_RMS, INPUT_RMS_LOW)]
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


@fix("unscaled-inputs", what="the inputs standardised per feature with the training data's mean and spread")
def _unscaled_inputs(view):
    names = []
    for column in view.metrics.columns:
        if str(column).startswith("input_rms/"):
            window = late(series(view, str(column)))
            if window is not None and float(window.mean()) > INPUT_RMS:
                names.append(str(column)[len("input_rms/"):])
    if not names:
        return None
    order = view.model.get("inputs") if isinstance(view.model.get("inputs"), list) else []
    change = {"op": "standardize_inputs", "inputs": names}
    if all(name in order for name in names):  # by position too: a model rebuilt elsewhere may name them anew
        change["positions"] = [order.index(name) for name in names]
    return Remedy(change, "standardised", f"input {', '.join(names)} standardised (training mean and spread per "
                                           "feature)")


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
        if window is not None and float(window.mean()) > PAD_SHARE:
            evidence.append(Evidence(column, float(window.mean()), PAD_SHARE, steps_of(window)))
    # Ids padded inside the model (a TextVectorization's sequences), as the Embedding layers read them.
    facts = (view.summary.get("contract") or {}).get("embeddings") if isinstance(view.summary.get("contract"),
                                                                                 dict) else None
    for entry in facts or []:
        share = (entry or {}).get("zero_share")
        if isinstance(share, (int, float)) and share > PAD_SHARE and not entry.get("mask_zero"):
            evidence.append(Evidence(f"summary.contract.embeddings.{entry.get('name')}.zero_share (ids read at "
                                     "step 0)", float(share), PAD_SHARE, (0, 0)))
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


@fix("unmasked-padding", what="the embeddings mask id 0 (mask_zero=True)")
def _unmasked_padding(view):
    graph = KerasGraph(view.model)
    layers = [n for n in graph.by_name if graph.cls(n) == "Embedding"]
    if not layers:
        return None
    return Remedy({"op": "mask_zero", "layers": layers}, "mask_zero", f"{', '.join(layers)} with mask_zero=True")

"""Rules about the gradients' scale: exploding, vanishing, absent, and a network gone dead."""

from __future__ import annotations

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, early, late, layer_of, progress, series, steps_of,
                                    variable_columns, weight_matrices)
from diagnose.findings.fixes import Remedy, fix, lower_rate
from diagnose.findings.graph import LINEAR, KerasGraph
from diagnose.findings.registry import Hit, rule

__all__ = ["exploding_gradients", "vanishing_gradients", "no_gradient", "dead_network", "dead_matrices",
           "depth_attenuation", "gradient_collapse"]

# The peak global gradient norm 100 times its early median: two orders of magnitude
# of growth is beyond the noise of minibatch gradients.
EXPLODE_FACTOR = 100.0

# Layers whose tables are read a few rows at a time: their update ratios are small by
# construction and say nothing about gradients fading with depth.
_LOOKUP_LAYERS = ("Embedding", "TokenAndPositionEmbedding")


def _saturating_layers(view: RunView) -> list[str]:
    """Hidden weight layers with a saturating activation (sigmoid, tanh), the output left out."""
    if not view.is_keras:
        return []
    graph = KerasGraph(view.model)
    outputs = set(graph.outputs())
    return [n for n in graph.by_name if n not in outputs and graph.cls(n) in LINEAR
            and graph.activation(n) in ("sigmoid", "tanh", "hard_sigmoid")]


def gradient_collapse(view: RunView) -> tuple[float, tuple] | None:
    """The median over weight matrices of (late mean / early mean) of their gradient norm, with the late steps."""
    ratios, steps = [], None
    for column in weight_matrices(view, "grad_norm"):
        values = series(view, column)
        if values is None or len(values) < T.MIN_ROWS:
            continue
        first, window = float(early(values).mean()), late(values)
        if first > 0:
            ratios.append(float(window.mean()) / first)
            steps = steps_of(window)
    return (float(np.median(ratios)), steps) if ratios else None


def depth_attenuation(view: RunView) -> tuple[float, str, str, tuple] | None:
    """(first / last late update ratio, first column, last column, steps) over the weight matrices in model
    order, lookup tables left out; None when fewer than three matrices."""
    columns = [c for c in weight_matrices(view)
               if (layer_of(view, c.split("/", 1)[1]) or "") not in _LOOKUP_LAYERS]
    if len(columns) < 3:
        return None
    first, last = late(series(view, columns[0])), late(series(view, columns[-1]))
    if first is None or last is None or float(last.mean()) <= 0:
        return None
    return float(first.mean()) / float(last.mean()), columns[0], columns[-1], steps_of(last)


def dead_matrices(view: RunView) -> tuple[list[tuple[str, float, float, tuple]], int]:
    """Weight matrices whose gradient was there early and is gone late, and how many matrices were checked.

    Returns:
        ``([(column, early mean, late mean, late steps), ...], checked)``.
    """
    dead, checked = [], 0
    for column in weight_matrices(view, "grad_norm"):
        values = series(view, column)
        if values is None or len(values) < T.MIN_ROWS:
            continue
        checked += 1
        first, window = early(values), late(values)
        if float(first.mean()) > T.VANISH_ABSOLUTE and float(window.mean()) <= T.VANISH_ABSOLUTE:
            dead.append((column, float(first.mean()), float(window.mean()), steps_of(window)))
    return dead, checked


@rule("dead-network", kind="symptom", severity="high", figure="gradients",
      what="most weight matrices receiving no gradient late in the run although they had one early",
      explains=("ignores-input", "plateau", "no-gradient", "vanishing-gradients"))
def dead_network(view: RunView) -> Hit | None:
    dead, checked = dead_matrices(view)
    if not checked or len(dead) / checked < T.DEAD_SHARE:
        return None
    evidence = [Evidence("share of weight matrices with no gradient late (grad_norm below 1e-7)", len(dead) / checked,
                         T.DEAD_SHARE, dead[0][3])]
    for column, first, last, steps in dead[:4]:
        evidence.append(Evidence(column + " (early mean)", first, None))
        evidence.append(Evidence(column + " (late mean)", last, T.VANISH_ABSOLUTE, steps))
    dead_frac = late(series(view, "out_zero_frac"))
    if dead_frac is not None:
        evidence.append(Evidence("out_zero_frac", float(dead_frac.mean()), None, steps_of(dead_frac)))
    return Hit(
        title=f"The network went dead: {len(dead)} of {checked} weight matrices get no gradient any more",
        evidence=evidence,
        explanation=("Gradients that flowed early stopped everywhere at once: typically ReLU units pushed to "
                     "always-negative inputs by a few huge early steps, which then pass back exactly zero, so "
                     "nothing behind them can learn again. Update ratios of 0 here mean no gradient, not a small "
                     "learning rate: raising the rate would make it worse."),
        fix=("Lower the learning rate (and warm it up), clip gradients by global norm, normalise the inputs; "
             "leaky ReLU or a He initialisation make units less likely to die. Retrain from a fresh start: dead "
             "units do not come back."))


# Huge early steps kill ReLUs: the symptom gets huge-steps' fix, so the two share their runs.
fix("dead-network", what="the learning rate lowered as for huge-steps (huge early steps kill ReLUs)")(lower_rate)


@rule("exploding-gradients", kind="symptom", severity="medium", figure="gradients",
      what="the global gradient norm growing by orders of magnitude, or becoming non-finite",
      explains=("diverged", "oscillating-loss", "clipping-always-fires"))
def exploding_gradients(view: RunView) -> Hit | None:
    raw = series(view, "grad_norm/global", finite=False)
    grads = series(view, "grad_norm/global")
    if raw is None or len(raw) < T.MIN_ROWS:
        return None
    nonfinite = raw[~np.isfinite(raw)]
    start = early(grads)
    base = float(start.median()) if start is not None else None
    evidence = []
    if grads is not None and base and base > 0:
        peak_step = int(grads.idxmax())
        factor = float(grads.max()) / base
        if factor >= EXPLODE_FACTOR:
            evidence += [Evidence("grad_norm/global (early median)", base, None, steps_of(start)),
                         Evidence("grad_norm/global (peak / early median)", factor, EXPLODE_FACTOR,
                                  (peak_step, peak_step))]
    if len(nonfinite):
        evidence.append(Evidence("grad_norm/global", str(nonfinite.iloc[0]), "finite",
                                 (int(nonfinite.index[0]), int(nonfinite.index[0]))))
    if not evidence:
        return None
    return Hit(
        severity="high" if len(nonfinite) else None,
        title="Gradients explode", evidence=tuple(evidence),
        explanation=("The gradient norm grew by orders of magnitude over training; large steps then throw the "
                     "weights far off and usually end in a non-finite loss."),
        fix=("Clip gradients by global norm and lower the learning rate; check for a loss summed where a mean "
             "was intended."))


@fix("exploding-gradients", what="gradients clipped by global norm at their early median")
def _exploding(view):
    norms = early(series(view, "grad_norm/global"), 0.25)
    norm = float(norms.median()) if norms is not None and float(norms.median()) > 0 else 1.0
    return Remedy({"op": "global_clipnorm", "norm": float(f"{norm:.3g}")}, f"clip {norm:.3g}",
                  f"gradients clipped by global norm at {norm:.3g} (their early median)")


@rule("vanishing-gradients", kind="symptom", severity="medium", figure="gradients",
      what="gradients shrinking to nothing overall, or a variable's gradient that was there and went",
      explains=("ignores-input", "plateau", "attention-uniform"))
def vanishing_gradients(view: RunView) -> Hit | None:
    grads = series(view, "grad_norm/global")
    if grads is None or len(grads) < T.MIN_ROWS:
        return None
    dead, checked = dead_matrices(view)
    if checked and len(dead) / checked >= T.DEAD_SHARE:
        return None  # gradients gone at once across the network: dead-network says so
    got = progress(view)
    if got is not None and got >= T.CONVERGED_PROGRESS:
        return None  # a converged model's gradients shrink because there is little left to learn
    start, end = early(grads), late(grads)
    base, final = float(start.median()), float(end.median())
    evidence = []
    if final <= T.VANISH_ABSOLUTE or (base > 0 and final / base <= T.VANISH_FACTOR):
        evidence += [Evidence("grad_norm/global (early median)", base, None, steps_of(start)),
                     Evidence("grad_norm/global (late median)", final,
                              max(T.VANISH_ABSOLUTE, base * T.VANISH_FACTOR), steps_of(end))]
    depth = depth_attenuation(view)
    if depth is not None and depth[0] <= T.VANISH_FACTOR:
        evidence.append(Evidence(f"{depth[1]} / {depth[2]} (late means: first over last weight matrix)", depth[0],
                                 T.VANISH_FACTOR, depth[3]))
    for column in variable_columns(view, "grad_norm"):
        values = series(view, column)
        window, first = late(values), early(values)
        # Only a gradient that was there and went: one never there is no_gradient's. "There"
        # is a thousandfold (the global rule's factor) above the round-off floor it fell to;
        # a gradient that is round-off from the start (a bias a BatchNormalization behind
        # it subtracts again) hovers around the floor and has not vanished.
        if (window is not None and float(window.mean()) <= T.VANISH_ABSOLUTE
                and float(first.mean()) > T.VANISH_ABSOLUTE / T.VANISH_FACTOR):
            evidence.append(Evidence(column, float(window.mean()), T.VANISH_ABSOLUTE, steps_of(window)))
    if not evidence:
        return None
    saturating = _saturating_layers(view) if depth is not None and depth[0] <= T.VANISH_FACTOR else []
    if saturating:
        # Fading with depth through saturating activations: the activations are the choice to change.
        evidence.append(Evidence("hidden layers with a saturating activation", ", ".join(saturating[:4]),
                                 "relu"))
    return Hit(
        kind="root-cause" if saturating else None,
        title="Gradients vanish" + (f" through {len(saturating)} saturating hidden layers" if saturating else ""),
        evidence=tuple(evidence),
        explanation=("Little or no gradient reaches the weights, so they stop moving: overall late in training "
                     "(dead ReLU units, saturated outputs, a path the loss does not depend on), or layer by layer "
                     "on its way back to the input, the first layers learning orders of magnitude slower than the "
                     "last (saturating activations such as sigmoid or tanh, stacked deep)."),
        fix=("Find where the gradient stops (per-variable grad_norm columns). Fading with depth: ReLU-family "
             "activations with He initialisation, BatchNormalization between layers, or residual connections; "
             "a larger learning rate would only blow up the last layers. Gone late: dead ReLU outputs, a "
             "clipped cross-entropy floor, or a branch cut off from the loss."))


@fix("vanishing-gradients", what="ReLU for the saturating activations of hidden layers")
def _vanishing(view):
    graph = KerasGraph(view.model)
    layers = _saturating_layers(view)
    if not layers:
        return None
    return Remedy({"op": "hidden_activation", "layers": layers, "activation": "relu"}, "relu",
                  f"ReLU in {', '.join(layers)} instead of {graph.activation(layers[0])}")


@rule("no-gradient", kind="symptom", severity="low", figure="gradients",
      what="variables whose gradient is zero in every logged row")
def no_gradient(view: RunView) -> Hit | None:
    evidence = []
    for column in variable_columns(view, "grad_norm"):
        values = series(view, column)
        if values is not None and len(values) >= T.MIN_ROWS and float(values.max()) <= T.VANISH_ABSOLUTE:
            evidence.append(Evidence(column + " (max)", float(values.max()), T.VANISH_ABSOLUTE, steps_of(values)))
    if not evidence:
        return None
    names = ", ".join(e.metric.split("/", 1)[1].removesuffix(" (max)") for e in evidence)
    return Hit(
        title=f"No gradient ever reaches {names}", evidence=tuple(evidence),
        explanation=("The loss does not depend on these variables, so training never moves them. Some are zero "
                     "by construction: a bias added to every attention key shifts all of a query's scores "
                     "equally and the softmax ignores it (MultiHeadAttention's key bias); a layer's bias "
                     "followed by BatchNormalization, which subtracts its batch mean again. Otherwise a path to "
                     "the loss is cut: an output nothing uses, a stop_gradient, an integer cast, a ReLU dead "
                     "from the start."),
        fix=("Nothing to fix where it is by construction (or drop the variable: use_bias=False). Otherwise "
             "trace the variable's path to the loss and restore it."))

"""Rules about the optimisation: step size, clipping, gradient scale, divergence."""

from __future__ import annotations

import numpy as np

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, Finding, RunView, early, late, number, series, steps_of,
                                    variable_columns)

__all__ = ["tiny_steps", "huge_steps", "clipping_never_fires", "clipping_always_fires", "exploding_gradients",
           "vanishing_gradients", "no_gradient", "diverged"]


def _optimizer(view: RunView) -> dict:
    optimizer = (view.config.get("train") or {}).get("optimizer")
    return optimizer if isinstance(optimizer, dict) else {}


def _learning_rate(view: RunView) -> tuple[str, float] | None:
    for source, value in (("model.learning_rate", view.model.get("learning_rate")),
                          ("train.optimizer.learning_rate", _optimizer(view).get("learning_rate"))):
        if number(value) is not None:
            return source, number(value)
    logged = series(view, "learning_rate")
    return None if logged is None else ("learning_rate", float(logged.iloc[-1]))


def _clip_setting(view: RunView) -> tuple[str, float | None] | None:
    """``(config field, clip norm or None)`` when gradient clipping is configured, else None."""
    model = view.model
    if "clip" in model:  # a MemN2N run: clip is "global" | "per_tensor" | "none"
        if model.get("clip") in (None, "none"):
            return None
        return f"model.clip={model['clip']}", number(model.get("clip_norm"))
    optimizer = _optimizer(view)
    for key in ("global_clipnorm", "clipnorm"):
        if number(optimizer.get(key)):
            return f"train.optimizer.{key}", number(optimizer.get(key))
    if number(optimizer.get("clipvalue")):
        return "train.optimizer.clipvalue", None
    return None


def tiny_steps(view: RunView) -> Finding | None:
    """Weights move far less per step than healthy training (update ratios ~1e-3)."""
    ratios = {}
    for column in variable_columns(view, "update_ratio"):
        window = late(series(view, column))
        if window is not None:
            ratios[column] = (float(window.mean()), steps_of(window))
    if not ratios:
        return None
    median = float(np.median([r for r, _ in ratios.values()]))
    if median >= T.TINY_UPDATE_RATIO:
        return None
    steps = next(iter(ratios.values()))[1]
    evidence = [Evidence(f"update_ratio/* (median of {len(ratios)} variables)", median, T.TINY_UPDATE_RATIO, steps)]
    smallest = sorted(ratios.items(), key=lambda item: item[1][0])[:3]
    evidence += [Evidence(column, r, None, s) for column, (r, s) in smallest]
    rate = _learning_rate(view)
    if rate is not None:
        evidence.append(Evidence(rate[0], rate[1], None))
    model = view.model
    factor = T.HEALTHY_UPDATE_RATIO / median if median > 0 else float("inf")
    if model.get("loss_reduction") == "mean":
        batch = number(model.get("batch_size"))
        evidence.append(Evidence("model.loss_reduction", "mean", "sum"))
        scale = f"{batch:g}x " if batch else "batch-size times "
        lr = f" ({rate[1]:g} x {batch:g} = {rate[1] * batch:g})" if rate and batch else ""
        fix = (f"The learning rate was tuned for a loss summed over the batch; averaging it makes every step "
               f"{scale}shorter. Use --set loss_reduction=sum, or multiply the learning rate by the batch "
               f"size{lr}.")
    else:
        fix = (f"Raise the learning rate (about {factor:.0f}x would bring update ratios to ~1e-3), or check "
               "for a loss scaled down (a mean where a sum was intended, a tiny loss weight).")
    return Finding(
        id="tiny-steps", kind="root-cause", severity="medium",
        title=f"Updates are tiny: median update/weight ratio {median:.2g} (healthy ~1e-3)",
        evidence=tuple(evidence),
        explanation=("Each step moves the weights by a minute fraction of their size, so training crawls and "
                     "looks like a plateau long before the model has learned what it can."),
        fix=fix)


def huge_steps(view: RunView) -> Finding | None:
    """Some variable's weights change by a large fraction of their norm every step."""
    evidence = []
    for column in variable_columns(view, "update_ratio"):
        window = late(series(view, column), 0.5)
        if window is not None and float(window.median()) > T.HUGE_UPDATE_RATIO:
            evidence.append(Evidence(column + " (late median)", float(window.median()), T.HUGE_UPDATE_RATIO,
                                     steps_of(window)))
    if not evidence:
        return None
    evidence.sort(key=lambda e: -e.observed)
    worst = evidence[0].observed
    rate = _learning_rate(view)
    if rate is not None:
        evidence.append(Evidence(rate[0], rate[1], None))
    return Finding(
        id="huge-steps", kind="root-cause", severity="high",
        title=f"Updates are huge: weights change by up to {worst:.2g} of their norm per step (healthy ~1e-3)",
        evidence=tuple(evidence),
        explanation=("Each step moves these weights by a large part of their own size, so the optimiser "
                     "overshoots: the loss thrashes or climbs, weights and logits blow up, and the model can "
                     "end far worse than a uniform guess without ever producing a NaN."),
        fix=(f"Lower the learning rate (about {worst / T.HEALTHY_UPDATE_RATIO:.0f}x would bring the largest ratio "
             "to ~1e-3) or clip gradients by global norm; a loss summed over the batch makes the step grow with "
             "the batch size."))


def clipping_never_fires(view: RunView) -> Finding | None:
    """Clipping is configured, never fires, and gradients stay far below the threshold."""
    setting, fired, grads = _clip_setting(view), series(view, "clip_fired"), series(view, "grad_norm/global")
    if setting is None or setting[1] is None or fired is None or grads is None or len(fired) < T.MIN_ROWS:
        return None
    limit = T.CLIP_IDLE_FRACTION * setting[1]
    if float(fired.max()) > 0 or float(grads.max()) >= limit:
        return None
    return Finding(
        id="clipping-never-fires", kind="symptom", severity="low",
        title=f"Gradient clipping at {setting[1]:g} never fires: gradients stay below {limit:g}",
        evidence=(Evidence(setting[0], setting[1], None),
                  Evidence("clip_fired (max)", float(fired.max()), 0.0, steps_of(fired)),
                  Evidence("grad_norm/global (max)", float(grads.max()), limit, steps_of(grads))),
        explanation=("The clip threshold is more than ten times the largest gradient seen, so it does nothing; "
                     "a threshold chosen for a summed loss is typically out of scale for a mean-reduced one."),
        fix=("Scale the clip threshold to the gradients actually seen (a few times their typical norm), or "
             "restore the loss reduction the threshold was chosen for."))


def clipping_always_fires(view: RunView) -> Finding | None:
    """Clipping rescales the gradient on nearly every step."""
    fired = series(view, "clip_fired")
    if fired is None or len(fired) < T.MIN_ROWS:
        return None
    share = float(fired.mean())
    if share <= T.CLIP_ALWAYS:
        return None
    evidence = [Evidence("clip_fired", share, T.CLIP_ALWAYS, steps_of(fired))]
    setting = _clip_setting(view)
    if setting is not None and setting[1] is not None:
        evidence.append(Evidence(setting[0], setting[1], None))
    return Finding(
        id="clipping-always-fires", kind="symptom", severity="medium",
        title=f"Gradient clipping fires on {share:.0%} of steps",
        evidence=tuple(evidence),
        explanation=("When the clip acts on almost every step, the step length is set by the threshold times "
                     "the learning rate, not by the gradient: SGD loses its sense of scale."),
        fix=("Lower the learning rate or raise the clip threshold until clipping only catches occasional "
             "spikes; check the loss scale (a sum over a large batch gives large gradients)."))


def exploding_gradients(view: RunView) -> Finding | None:
    """The global gradient norm grows by orders of magnitude, or becomes non-finite."""
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
        if factor >= T.EXPLODE_FACTOR:
            evidence += [Evidence("grad_norm/global (early median)", base, None, steps_of(start)),
                         Evidence("grad_norm/global (peak / early median)", factor, T.EXPLODE_FACTOR,
                                  (peak_step, peak_step))]
    if len(nonfinite):
        evidence.append(Evidence("grad_norm/global", str(nonfinite.iloc[0]), "finite",
                                 (int(nonfinite.index[0]), int(nonfinite.index[0]))))
    if not evidence:
        return None
    return Finding(
        id="exploding-gradients", kind="symptom", severity="high" if len(nonfinite) else "medium",
        title="Gradients explode", evidence=tuple(evidence),
        explanation=("The gradient norm grew by orders of magnitude over training; large steps then throw the "
                     "weights far off and usually end in a non-finite loss."),
        fix=("Clip gradients by global norm and lower the learning rate; check for a loss summed where a mean "
             "was intended."))


def vanishing_gradients(view: RunView) -> Finding | None:
    """Gradients shrink to nothing overall, or some variable receives none."""
    grads = series(view, "grad_norm/global")
    if grads is None or len(grads) < T.MIN_ROWS:
        return None
    start, end = early(grads), late(grads)
    base, final = float(start.median()), float(end.median())
    evidence = []
    if final <= T.VANISH_ABSOLUTE or (base > 0 and final / base <= T.VANISH_FACTOR):
        evidence += [Evidence("grad_norm/global (early median)", base, None, steps_of(start)),
                     Evidence("grad_norm/global (late median)", final,
                              max(T.VANISH_ABSOLUTE, base * T.VANISH_FACTOR), steps_of(end))]
    for column in variable_columns(view, "grad_norm"):
        values = series(view, column)
        window, first = late(values), early(values)
        # Only a gradient that was there and went: one never there is no_gradient's.
        if (window is not None and float(window.mean()) <= T.VANISH_ABSOLUTE
                and float(first.mean()) > T.VANISH_ABSOLUTE):
            evidence.append(Evidence(column, float(window.mean()), T.VANISH_ABSOLUTE, steps_of(window)))
    if not evidence:
        return None
    return Finding(
        id="vanishing-gradients", kind="symptom", severity="medium",
        title="Gradients vanish", evidence=tuple(evidence),
        explanation=("Little or no gradient reaches the weights late in training, so they stop moving: typical "
                     "of dead ReLU units, saturated outputs, or a path the loss does not depend on."),
        fix=("Find where the gradient stops (per-variable grad_norm columns): dead ReLU outputs, a clipped "
             "cross-entropy floor, or a branch cut off from the loss."))


def no_gradient(view: RunView) -> Finding | None:
    """Variables whose gradient was zero (to float precision) in every logged row."""
    evidence = []
    for column in variable_columns(view, "grad_norm"):
        values = series(view, column)
        if values is not None and len(values) >= T.MIN_ROWS and float(values.max()) <= T.VANISH_ABSOLUTE:
            evidence.append(Evidence(column + " (max)", float(values.max()), T.VANISH_ABSOLUTE, steps_of(values)))
    if not evidence:
        return None
    names = ", ".join(e.metric.split("/", 1)[1].removesuffix(" (max)") for e in evidence)
    return Finding(
        id="no-gradient", kind="symptom", severity="low",
        title=f"No gradient ever reaches {names}", evidence=tuple(evidence),
        explanation=("The loss does not depend on these variables, so training never moves them. Some are zero "
                     "by construction: a bias added to every attention key shifts all of a query's scores "
                     "equally and the softmax ignores it (MultiHeadAttention's key bias). Otherwise a path to "
                     "the loss is cut: an output nothing uses, a stop_gradient, an integer cast, a ReLU dead "
                     "from the start."),
        fix=("Nothing to fix where it is by construction (or drop the variable: use_bias=False). Otherwise "
             "trace the variable's path to the loss and restore it."))


def diverged(view: RunView) -> Finding | None:
    """The run stopped on a non-finite loss or gradient."""
    at = view.summary.get("diverged_at")
    at = at if isinstance(at, dict) else {}
    if view.summary.get("status") != "diverged" and not at:
        return None
    step, variable = number(at.get("step")), at.get("variable")
    evidence = [Evidence("summary.status", str(view.summary.get("status")), None)]
    if step is not None:
        evidence.append(Evidence("summary.diverged_at.step", int(step), None, (int(step), int(step))))
    if variable:
        evidence.append(Evidence("summary.diverged_at.variable", str(variable), None))
    if view.summary.get("error"):
        evidence.append(Evidence("summary.error", str(view.summary["error"]), None))
    where = (f" at step {int(step)}" if step is not None else "") + (f" ({variable})" if variable else "")
    if step == 1:  # before any update: the initial weights, whatever the learning rate
        return Finding(
            id="diverged", kind="symptom", severity="high",
            title=f"Not finite from the first step{' (' + variable + ')' if variable else ''}",
            evidence=tuple(evidence),
            explanation=("The loss or a gradient was NaN or infinite at step 1, computed at the initial weights "
                         "before any update, so no learning rate caused it: the loss is undefined for some "
                         "example at initialisation (a cross-entropy over outputs that can all be zero, which "
                         "Keras divides by their sum; a log of zero) or the inputs hold NaN or Inf."),
            fix=("Evaluate the loss on one batch at the initial weights (model.evaluate) and check the inputs for "
                 "NaN/Inf; give the loss outputs it is defined on (a softmax output, or logits with "
                 "from_logits=True)."))
    return Finding(
        id="diverged", kind="symptom", severity="high",
        title=f"Training diverged{where}",
        evidence=tuple(evidence),
        explanation=(f"A loss or gradient became NaN or infinite{where}; the run stopped there and its weights "
                     "after that point mean nothing."),
        fix=(f"Lower the learning rate and clip gradients by global norm; inspect "
             f"{variable or 'the first non-finite variable'} (its grad_norm and update_ratio just before the step)."))

"""Rules about the optimisation: step size, clipping, divergence."""

from __future__ import annotations

import numpy as np

import pandas as pd

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, initial_norm, late, number, progress, series, start_loss,
                                    steps_of, variable_columns, weight_matrices)
from diagnose.findings.fixes import fix, lower_rate, raise_rate
from diagnose.findings.registry import Hit, rule
from diagnose.findings.rules_contract_layers import broken_contract
from diagnose.findings.rules_gradients import dead_matrices, depth_attenuation, gradient_collapse

__all__ = ["tiny_steps", "huge_steps", "clipping_never_fires", "clipping_always_fires", "diverged"]

# A variable whose weights change by almost a third of their norm per step, over the
# late half of a run: ten times the largest late ratio of a healthy paper run (0.024,
# H on PTB) and above a learned encoding started at unit scale (0.14-0.23 on the
# synthetic corpus), which trains; a learning rate 100x too large gives 0.4-0.9.
HUGE_UPDATE_RATIO = 0.3
# The same bound on the median over weight matrices of one logged row, anywhere in the
# run: most of the network moving by a third of its size per step is a blow-up even
# when it is over early (a network whose ReLUs then died logs ratios of 0 afterwards).
# Weight matrices grown tenfold in norm while the loss ended no lower than it started:
# adaptive optimizers move each weight by about the learning rate per step whatever
# the gradient, so at a huge rate the weights, not the ratios, show the blow-up (the
# ratio falls as the weights it is divided by grow); training that works grows weight
# norms by a small factor and lowers the loss.
WEIGHT_GROWTH = 10.0
# A logged training loss (a mean over many steps) twice the larger of where the run
# started and a uniform guess (ln V): only confident wrong predictions cost that much,
# and only oversized steps make a model that confident that fast. A run that learns
# never logs a loss above its start by more than noise.
LOSS_BLOWUP = 2.0
# A gradient collapse: the weight matrices' gradients fell a hundredfold from the first
# rows to the last (median over matrices) while the model did not converge. A small
# learning rate leaves gradients where they started (the weights barely move); a
# converged model is excluded by CONVERGED_PROGRESS.
GRADIENT_COLLAPSE = 1e-2
# ... after first steps that moved the weight matrices by a tenth of their norm per
# step on average over the first logged row (a hundred times the healthy 1e-3): the
# blow-up is over within a row, so its row mean is diluted below HUGE_UPDATE_RATIO.
EARLY_UPDATE_RATIO = 0.1
# Clipping "never fires while gradients are small": the largest global gradient norm
# seen is below a tenth of the clip threshold, an order of magnitude of headroom.
CLIP_IDLE_FRACTION = 0.1
# Clipping on more than 90% of the logged steps: the step length is then set by
# the clip threshold, not by the gradient.
CLIP_ALWAYS = 0.9


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


def _still_falling(view: RunView) -> bool:
    """The training loss fell by more than PLATEAU_REL_DROP over the last rows (the plateau rule's window)."""
    window = late(series(view, "loss"), T.PLATEAU_WINDOW)
    if window is None or len(window) < T.MIN_ROWS:
        return False
    third = max(1, len(window) // 3)
    first, last = float(window.iloc[:third].mean()), float(window.iloc[-third:].mean())
    return first > 0 and (first - last) / first >= T.PLATEAU_REL_DROP


# Optimisers that divide each gradient by a running measure of its own size, so that a weight moves
# by about the learning rate per step when its gradient keeps its sign, and by less when it does not.
# (Adagrad's and Adadelta's accumulated denominators shrink their steps by design: left out.)
_NORMALISING = ("adam", "adamw", "nadam", "adamax", "rmsprop", "rm_sprop", "lion", "lamb")


def _rate_implied_ratio(view: RunView, columns: list[str]) -> float | None:
    """For an optimiser of :data:`_NORMALISING`, the update ratio its learning rate alone gives (median over
    ``columns``' weight matrices of the rate over the weights' RMS, late in the run): what the ratios
    would be if every gradient kept its sign from step to step. None for other optimisers."""
    name = str(_optimizer(view).get("name") or "").lower().replace("_", "")
    if name not in {n.replace("_", "") for n in _NORMALISING}:
        return None
    logged = late(series(view, "learning_rate"))
    rate = float(logged.mean()) if logged is not None else (_learning_rate(view) or (None, None))[1]
    shapes = view.summary.get("variables") if isinstance(view.summary.get("variables"), dict) else {}
    implied = []
    for column in columns:
        name = column.split("/", 1)[1]
        norms, shape = late(series(view, f"weight_norm/{name}")), shapes.get(name)
        if norms is None or not isinstance(shape, list) or not shape:
            continue
        rms = float(norms.mean()) / float(np.sqrt(np.prod(shape)))
        if rms > 0 and rate:
            implied.append(rate / rms)
    return float(np.median(implied)) if implied else None


def _ratio_columns(view: RunView) -> list[str]:
    """The update-ratio columns the step-size rules read: weight matrices (all variables if none is one)."""
    return weight_matrices(view) or variable_columns(view, "update_ratio")


@rule("tiny-steps", kind="root-cause", severity="medium", figure="updates",
      what="weights moving far less per step than healthy training (median update ratio of the weight matrices), "
           "where the rate is why: not under an adaptive optimiser whose rate alone would move them at a healthy "
           "pace",
      explains=("plateau", "ignores-input", "clipping-never-fires", "attention-uniform"))
def tiny_steps(view: RunView) -> Hit | None:
    ratios = {}
    for column in _ratio_columns(view):
        window = late(series(view, column))
        if window is not None:
            ratios[column] = (float(window.mean()), steps_of(window))
    if not ratios:
        return None
    median = float(np.median([r for r, _ in ratios.values()]))
    got = progress(view)
    # Ten times below healthy steps crawl whatever the run shows; below healthy steps are too small
    # for a run that got less than half the way in its budget and was still going down at its end.
    slow = got is not None and got < T.LEARNED_LITTLE and _still_falling(view)
    limit = T.HEALTHY_UPDATE_RATIO if slow else T.TINY_UPDATE_RATIO
    if median >= limit:
        return None
    dead, checked = dead_matrices(view)
    if checked and len(dead) / checked >= T.DEAD_SHARE:
        return None  # steps are nil because gradients are: a dead network, not a small rate (dead-network)
    grads = [late(series(view, "grad_norm/" + c.split("/", 1)[1])) for c in ratios]
    grads = [float(g.mean()) for g in grads if g is not None]
    if grads and float(np.median(grads)) <= T.VANISH_ABSOLUTE:
        return None  # no gradient to take a step along: a larger rate changes nothing (no-gradient)
    depth = depth_attenuation(view)
    if depth is not None and depth[0] <= T.VANISH_FACTOR:
        return None  # small only near the input: gradients fade with depth, the last layers' steps are fine
    collapse = gradient_collapse(view)
    if collapse is not None and collapse[0] <= GRADIENT_COLLAPSE:
        return None  # the gradients, not the rate, went: at a small rate they stay where they started
    if got is not None and got >= T.CONVERGED_PROGRESS:
        return None  # a converged model's steps are small because there is little left to learn
    implied = _rate_implied_ratio(view, list(ratios))
    if implied is not None and implied >= T.HEALTHY_UPDATE_RATIO:
        # The rate would move the weights at a healthy pace if their gradients kept a direction; the
        # optimiser moves them less because their gradients keep changing sign (a stationary point,
        # noise): a larger rate makes those steps longer, not more directed.
        return None
    steps = next(iter(ratios.values()))[1]
    evidence = [Evidence(f"update_ratio/* (median of {len(ratios)} weight matrices)", median, limit, steps)]
    smallest = sorted(ratios.items(), key=lambda item: item[1][0])[:3]
    evidence += [Evidence(column, r, None, s) for column, (r, s) in smallest]
    if got is not None:
        evidence.append(Evidence("share of the way from the starting loss to the best reachable", got,
                                 T.LEARNED_LITTLE if limit == T.HEALTHY_UPDATE_RATIO else T.CONVERGED_PROGRESS))
    rate = _learning_rate(view)
    if rate is not None:
        evidence.append(Evidence(rate[0], rate[1], None))
    if implied is not None:
        evidence.append(Evidence("learning rate / weight RMS (the ratio the rate gives a weight whose gradient "
                                 "keeps its sign; median of the weight matrices)", implied,
                                 T.HEALTHY_UPDATE_RATIO, steps))
    model = view.model
    factor = T.HEALTHY_UPDATE_RATIO / median if median > 0 else float("inf")
    if model.get("loss_reduction") == "mean" and "batch_size" in model:
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
    return Hit(
        title=f"Updates are tiny: median update/weight ratio {median:.2g} (healthy ~1e-3)",
        evidence=evidence,
        explanation=("Each step moves the weights by a minute fraction of their size, so training crawls and "
                     "looks like a plateau long before the model has learned what it can."),
        fix=fix)


def _growth(view: RunView, columns: list[str]) -> list[tuple[str, float, tuple]]:
    """(weight_norm column, late mean / initial norm, steps) for the weight matrices among ``columns``."""
    out = []
    for column in columns:
        name = column.split("/", 1)[1]
        norms, start = series(view, f"weight_norm/{name}"), initial_norm(view, name)
        window = late(norms)
        if window is not None and start:
            out.append((f"weight_norm/{name}", float(window.mean()) / start, (int(norms.index[0]),
                                                                              int(window.index[-1]))))
    return out


fix("tiny-steps", what="the learning rate raised to what the update ratios suggest")(raise_rate)


@rule("huge-steps", kind="root-cause", severity="high", figure="updates",
      what="weights changing by a large fraction of their norm per step, early or late, or blown up in norm",
      explains=("dead-network", "diverged", "exploding-gradients", "oscillating-loss", "ignores-input",
                "plateau", "clipping-always-fires", "vanishing-gradients"))
def huge_steps(view: RunView) -> Hit | None:
    columns = _ratio_columns(view)
    evidence = []
    for column in columns:  # a variable thrashing late in the run
        window = late(series(view, column), 0.5)
        if window is not None and float(window.median()) > HUGE_UPDATE_RATIO:
            evidence.append(Evidence(column + " (late median)", float(window.median()), HUGE_UPDATE_RATIO,
                                     steps_of(window)))
    found = [s for c in columns if (s := series(view, c)) is not None]
    frame = pd.concat(found, axis=1) if found else None
    if frame is not None:  # most of the network moving by a third of itself, at any row
        per_row = frame.median(axis=1, skipna=True).dropna()
        if len(per_row) and float(per_row.max()) > HUGE_UPDATE_RATIO:
            at = int(per_row.idxmax())
            evidence.append(Evidence(f"update_ratio/* (median of {len(frame.columns)} weight matrices, peak row)",
                                     float(per_row.max()), HUGE_UPDATE_RATIO, (at, at)))
    start, losses = start_loss(view), series(view, "loss")
    ceiling = max(start, view.baseline("ln_vocab") or 0.0) if start is not None else None
    if ceiling and losses is not None and float(losses.max()) > LOSS_BLOWUP * ceiling:
        at = int(losses.idxmax())  # a training loss far above where it started, however it ended
        evidence.append(Evidence("loss (peak logged)", float(losses.max()), LOSS_BLOWUP * ceiling, (at, at)))
    if start is not None and losses is not None and float(late(losses).mean()) >= start:
        grown = [g for g in _growth(view, columns) if g[1] > WEIGHT_GROWTH]
        if columns and len(grown) >= max(1, len(columns) / 2):
            worst = max(grown, key=lambda g: g[1])
            evidence.append(Evidence(f"weight_norm/* grown (late / first), {len(grown)} of {len(columns)} matrices",
                                     worst[1], WEIGHT_GROWTH, worst[2]))
            evidence.append(Evidence("loss (late mean) vs the loss at the start", float(late(losses).mean()), start))
    collapse, got = gradient_collapse(view), progress(view)
    if (frame is not None and collapse is not None and collapse[0] <= GRADIENT_COLLAPSE
            and (got is None or got < T.CONVERGED_PROGRESS)):
        first = frame.iloc[0].median(skipna=True)  # large first steps, then gradients gone: a blow-up that stuck
        if first == first and float(first) > EARLY_UPDATE_RATIO:
            at = int(frame.index[0])
            evidence.append(Evidence("update_ratio/* (median of the weight matrices, first row)", float(first),
                                     EARLY_UPDATE_RATIO, (at, at)))
            evidence.append(Evidence("grad_norm/* late / early (median of the weight matrices)", collapse[0],
                                     GRADIENT_COLLAPSE, collapse[1]))
    if not evidence:
        return None
    ratios = [e.observed for e in evidence if e.metric.startswith("update_ratio")]
    if not ratios and broken_contract(view):
        return None  # a loss blown up or weights grown, at step sizes that are not off: the contract's doing
    worst = max(ratios) if ratios else None
    rate = _learning_rate(view)
    if rate is not None:
        evidence.append(Evidence(rate[0], rate[1], None))
    how = (f"weights change by up to {worst:.2g} of their norm per step (healthy ~1e-3)" if worst
           else "weight norms blew up while the loss got no better")
    factor = (f"about {worst / T.HEALTHY_UPDATE_RATIO:.0f}x would bring the largest ratio to ~1e-3"
              if worst else "by 10x or more")
    return Hit(
        title=f"Updates are huge: {how}",
        evidence=evidence,
        explanation=("Each step moves these weights by a large part of their own size, so the optimiser "
                     "overshoots: the loss thrashes or climbs, weights and logits blow up, ReLUs can die for "
                     "good, and the model can end far worse than a uniform guess without ever producing a NaN."),
        fix=(f"Lower the learning rate ({factor}) or clip gradients by global norm; normalise inputs of large "
             "scale; a loss summed over the batch makes the step grow with the batch size."))


fix("huge-steps", what="the learning rate lowered to what the update ratios suggest")(lower_rate)


@rule("clipping-never-fires", kind="symptom", severity="low", figure="gradients",
      what="gradient clipping configured but never firing, gradients far below the threshold")
def clipping_never_fires(view: RunView) -> Hit | None:
    setting, fired, grads = _clip_setting(view), series(view, "clip_fired"), series(view, "grad_norm/global")
    if setting is None or setting[1] is None or fired is None or grads is None or len(fired) < T.MIN_ROWS:
        return None
    limit = CLIP_IDLE_FRACTION * setting[1]
    if float(fired.max()) > 0 or float(grads.max()) >= limit:
        return None
    return Hit(
        title=f"Gradient clipping at {setting[1]:g} never fires: gradients stay below {limit:g}",
        evidence=(Evidence(setting[0], setting[1], None),
                  Evidence("clip_fired (max)", float(fired.max()), 0.0, steps_of(fired)),
                  Evidence("grad_norm/global (max)", float(grads.max()), limit, steps_of(grads))),
        explanation=("The clip threshold is more than ten times the largest gradient seen, so it does nothing; "
                     "a threshold chosen for a summed loss is typically out of scale for a mean-reduced one."),
        fix=("Scale the clip threshold to the gradients actually seen (a few times their typical norm), or "
             "restore the loss reduction the threshold was chosen for."))


@rule("clipping-always-fires", kind="symptom", severity="medium", figure="gradients",
      what="gradient clipping rescaling the gradient on nearly every step")
def clipping_always_fires(view: RunView) -> Hit | None:
    fired = series(view, "clip_fired")
    if fired is None or len(fired) < T.MIN_ROWS:
        return None
    share = float(fired.mean())
    if share <= CLIP_ALWAYS:
        return None
    evidence = [Evidence("clip_fired", share, CLIP_ALWAYS, steps_of(fired))]
    setting = _clip_setting(view)
    if setting is not None and setting[1] is not None:
        evidence.append(Evidence(setting[0], setting[1], None))
    return Hit(
        title=f"Gradient clipping fires on {share:.0%} of steps",
        evidence=tuple(evidence),
        explanation=("When the clip acts on almost every step, the step length is set by the threshold times "
                     "the learning rate, not by the gradient: SGD loses its sense of scale."),
        fix=("Lower the learning rate or raise the clip threshold until clipping only catches occasional "
             "spikes; check the loss scale (a sum over a large batch gives large gradients)."))


@rule("diverged", kind="symptom", severity="high", figure="loss",
      what="the run stopped on a non-finite loss or gradient")
def diverged(view: RunView) -> Hit | None:
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
        return Hit(
            title=f"Not finite from the first step{' (' + variable + ')' if variable else ''}",
            evidence=tuple(evidence),
            explanation=("The loss or a gradient was NaN or infinite at step 1, computed at the initial weights "
                         "before any update, so no learning rate caused it: the loss is undefined for some "
                         "example at initialisation (a cross-entropy over outputs that can all be zero, which "
                         "Keras divides by their sum; a log of zero) or the inputs hold NaN or Inf."),
            fix=("Evaluate the loss on one batch at the initial weights (model.evaluate) and check the inputs for "
                 "NaN/Inf; give the loss outputs it is defined on (a softmax output, or logits with "
                 "from_logits=True)."))
    steps = number(view.summary.get("steps"))
    found = next((int(s) for s in view.metrics["step"] if step is not None and s >= step),
                 step)  # the logged row that found it: training ends its steps, then stops
    after = (f"training went on to step {int(steps)} (diagnose.Monitor keeps training unless stop_on_divergence)"
             if found is not None and steps is not None and steps > found else "the run stopped there")
    return Hit(
        title=f"Training diverged{where}",
        evidence=tuple(evidence),
        explanation=(f"A loss or gradient became NaN or infinite, or the loss or the global gradient norm blew "
                     f"up far beyond any trained model's (summary.error says which){where}; {after} "
                     "and its weights after that point mean nothing."),
        fix=(f"Lower the learning rate and clip gradients by global norm; inspect "
             f"{variable or 'the first non-finite variable'} (its grad_norm and update_ratio just before the step)."))


@fix("diverged", what="the learning rate lowered as for huge-steps, unless it diverged at step 1 (before any step)")
def _diverged(view):
    at = view.summary.get("diverged_at")
    return None if isinstance(at, dict) and number(at.get("step")) == 1 else lower_rate(view)

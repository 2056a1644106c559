"""Whether a run failed, and how: what the gated contract rules and ``unexplained`` rest on.

A run has *failed* when it diverged, when it ends no better than a constant
prediction (its loss within the constant's margin of it; or its task error on the
probe batch, a classifier's balanced error or 1 - R^2, within
:data:`~thresholds.CHANCE_ERROR_MARGIN` of a constant prediction's; without a probe,
a classifier's accuracy within :data:`~thresholds.CHANCE_ACCURACY_MARGIN` of always
predicting the largest class), or when its loss went flat well above what the data
allows (the plateau rule). A balanced error, unlike the plain accuracy, does not call
a class-weighted model that trades accuracy for the rare class's recall a failure.
It has *underperformed* when it failed or learned less than half of what there is to
learn (:func:`learned`: from a constant prediction's loss to the best reachable).

Rules for a contract choice that can train (a squared error over classes, dropout of
0.8, targets in the thousands) name it only in a run that underperformed: the same
choice in a run that learned its task is not why anything failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnose.findings import thresholds as T
from diagnose.findings.base import (Evidence, RunView, constant_loss, contract, contract_targets, late, number,
                                    progress, series, steps_of, weight_matrices)
from diagnose.findings.rules_curve import plateau

__all__ = ["Failure", "failure", "underperformed", "learned", "at_chance", "chance_error", "constant_output"]


@dataclass(frozen=True)
class Failure:
    """How a run failed: ``kind`` ("diverged", "at chance", "flat") and the evidence, in a phrase."""

    kind: str
    words: str
    evidence: tuple[Evidence, ...]


def _ended(view: RunView, column: str) -> tuple[float, tuple[int, int]] | None:
    window = late(series(view, column))
    return None if window is None else (float(window.mean()), steps_of(window))


def at_chance(view: RunView) -> Failure | None:
    """The run ends no better than a constant prediction, by its loss or a classifier's accuracy."""
    # Trained on weighted examples, a model is not meant to score the unweighted constant's loss (class
    # weights trade the prior's loss for the rare classes): its task error says whether it learned.
    constant = constant_loss(view) if not contract(view).get("weighted") else None
    if constant is not None:
        for column in ("val_loss", "loss"):
            ended = _ended(view, column)
            if ended is not None:
                # Held-out data is judged against what the training targets' constant scores there (more than
                # on the training targets where the data drifts: a series' later values).
                held = number(contract(view).get("constant_loss_valid")) if column == "val_loss" else None
                value, source = (held, "summary.contract.constant_loss_valid") if held is not None \
                    and held > constant.value else (constant.value, constant.baseline)
                if ended[0] >= value - constant.margin:
                    return Failure("at chance", f"ends at {ended[0]:.4g} {view.unit}, no better than a constant "
                                               f"prediction ({value:.4g})",
                                   (Evidence(f"{column} (late mean)", ended[0], value - constant.margin, ended[1]),
                                    Evidence(source, value, None)))
                break
    chance = chance_error(view)
    task = series(view, "probe_task_error")
    if chance is not None and task is not None:
        ended = float(task.iloc[-1]), (int(task.index[-1]), int(task.index[-1]))
        if ended[0] >= chance - T.CHANCE_ERROR_MARGIN:
            return Failure("at chance", f"ends with a task error of {ended[0]:.3g} on the probe batch, what a "
                                       f"constant prediction scores ({chance:.3g})",
                           (Evidence("probe_task_error (last probe)", ended[0], chance - T.CHANCE_ERROR_MARGIN,
                                     ended[1]),
                            Evidence("the task error of a constant prediction", chance, None)))
        return None  # the balanced task error says it learned something, whatever the plain accuracy
    majority = number(contract_targets(view).get("majority_share"))
    if majority is not None:
        for column in ("val_accuracy", "accuracy"):
            ended = _ended(view, column)
            if ended is not None:
                if ended[0] <= majority + T.CHANCE_ACCURACY_MARGIN:
                    return Failure("at chance", f"ends at an accuracy of {ended[0]:.1%}, what always predicting "
                                               f"the largest class scores ({majority:.1%})",
                                   (Evidence(f"{column} (late mean)", ended[0], majority + T.CHANCE_ACCURACY_MARGIN,
                                             ended[1]),
                                    Evidence("summary.contract.targets.majority_share", majority, None)))
                break
    return None


def chance_error(view: RunView) -> float | None:
    """The task error (``probe_task_error``) of a constant prediction: 1 - 1/classes for a classifier (its
    balanced error whatever the class shares), 0.5 per tag for multi-hot targets, for continuous targets 1
    (1 - R^2), or what the training targets' constant scores on the probe batch where that is more; None
    where the targets are not known."""
    targets = contract_targets(view)
    structure = targets.get("structure")
    if structure == "continuous":
        # Held out, the training targets' constant (what a model that learned nothing predicts) scores more
        # than 1 where the probe's targets drifted from the training targets' (a series' later values).
        drifted = number(contract(view).get("probe_constant_task_error"))
        return max(1.0, drifted) if drifted is not None else 1.0
    if structure in ("multi-hot", "binary"):
        return 0.5
    classes = number(targets.get("classes_seen"))
    if structure in ("class-indices", "one-hot", "soft-labels") and classes and classes >= 2:
        return 1.0 - 1.0 / classes
    return None


def failure(view: RunView) -> Failure | None:
    """How the run failed, or None: diverged, at chance, or flat well above what the data allows."""
    if view.summary.get("status") == "diverged" or isinstance(view.summary.get("diverged_at"), dict):
        at = view.summary.get("diverged_at") or {}
        step = number(at.get("step")) if isinstance(at, dict) else None
        return Failure("diverged", "diverged" + (f" at step {int(step)}" if step is not None else ""),
                       (Evidence("summary.status", str(view.summary.get("status")), None),))
    chance = at_chance(view)
    if chance is not None:
        return chance
    flat = plateau(view)
    if flat is not None:
        return Failure("flat", flat.title[0].lower() + flat.title[1:], flat.evidence)
    return None


def learned(view: RunView) -> tuple[float, str] | None:
    """How much of what there is to learn the run learned: the share of the way from a constant prediction's
    loss (a model that learned nothing) to the best reachable (the Bayes floor, else 0) that its late
    training loss covers, with what it was measured from; from the starting loss where no constant is known.

    Measured from the constant rather than the loss at step 0: inputs or targets far from unit scale start a
    run at a loss many times a constant's, which a model covers without learning anything."""
    constant = constant_loss(view)
    losses = late(series(view, "loss"))
    if constant is not None and losses is not None and not contract(view).get("weighted"):
        floor = view.baseline("bayes_floor") or 0.0
        if constant.value - floor > 0:
            return (constant.value - float(losses.mean())) / (constant.value - floor), "a constant prediction"
    got = progress(view)
    return None if got is None else (got, "the starting loss")


def underperformed(view: RunView) -> Evidence | None:
    """Evidence that the run failed or learned little (under half of what there is to learn), else None."""
    failed = failure(view)
    if failed is not None:
        return Evidence("run outcome", failed.words, None)
    got = learned(view)
    if got is not None and got[0] < T.LEARNED_LITTLE:
        return Evidence(f"share of the way from {got[1]}'s loss to the best reachable", got[0], T.LEARNED_LITTLE)
    return None


def constant_output(view: RunView) -> Evidence | None:
    """Evidence that the model's output was one and the same value for every example and unit of the probe
    batch at its initial weights (``contract.output.at_start``), and that no weight matrix got a gradient
    all run, else None: a model whose output does not depend on its input or its weights by construction
    (a softmax over the wrong axis averaged away), so no output activation or loss can make it learn. (A
    zero-initialised output layer starts constant too, but its own weights get gradients.)"""
    start = (contract(view).get("output") or {}).get("at_start")
    if not isinstance(start, dict):
        return None
    low, high = number(start.get("min")), number(start.get("max"))
    if low is None or high is None or high - low > 1e-6 * max(abs(low), abs(high), 1e-12):
        return None
    grads = [series(view, c) for c in weight_matrices(view, "grad_norm")]
    if not grads or any(g is None or float(g.abs().max()) > T.VANISH_ABSOLUTE for g in grads):
        return None
    return Evidence("summary.contract.output.at_start (min, max): the same output for every example",
                    f"{low:.4g}, {high:.4g}", "outputs that differ", (0, 0))

"""How wrong predictions are by what the targets are, whatever the compiled loss: the task error a probe records
and a proof judges a loss-changing fix by (:func:`task_error`), and that of the training targets' constant."""

from __future__ import annotations

import numpy as np

__all__ = ["task_error", "constant_task_error"]


def constant_task_error(y, facts: dict) -> float | None:
    """The :func:`task_error` of the training targets' best constant (``facts["constant_prediction"]``) on the
    targets ``y`` of another batch: 1 for continuous targets at the training targets' mean, more where ``y``
    drifted from them (a series' later values, held out). None where it is not known."""
    constant = facts.get("constant_prediction")
    if not constant or y is None or not hasattr(y, "shape") or not len(y):
        return None
    pred = np.broadcast_to(np.asarray(constant, np.float64).reshape(1, -1), (len(y), len(constant)))
    return task_error(pred, y, facts)


def _balanced_error(predicted: np.ndarray, labels: np.ndarray) -> float | None:
    """The mean over the classes present of the share of their examples predicted as another class."""
    classes = np.unique(labels)
    if not len(classes):
        return None
    return float(np.mean([np.mean(predicted[labels == c] != c) for c in classes]))


def task_error(pred, y, facts: dict) -> float | None:
    """How wrong the predictions are by what the targets are, whatever the compiled loss and metrics.

    For a classifier, the balanced error: per class, the share of its examples predicted
    as another class (the largest output, or the output past 0.5 for a probability, past
    0 for a logit), averaged over the classes present; for multi-hot targets the same per
    tag, averaged over tags. A model that always predicts one class scores 1 - 1/classes
    (0.5 for two). For continuous targets, 1 - R^2: the squared error over the targets'
    variance (0 perfect, 1 a constant at their mean). Comparable between a model and the
    same model with another loss, which is how a proof judges a fix that changes the loss.
    None for a loss of the user's own, whose output (a distance, a score) has no known
    relation to the targets.

    Args:
        pred: the model's outputs on a batch (training=False).
        y: that batch's targets.
        facts: the contract (:func:`task_contract`): the targets' structure, the output and the loss.
    """
    targets, output, loss = facts.get("targets") or {}, facts.get("output") or {}, facts.get("loss") or {}
    structure, units = targets.get("structure"), output.get("units")
    if loss.get("kind") not in ("categorical", "sparse", "binary", "regression"):
        return None  # a loss of the user's own: what its output means (a distance, a score) is not known
    try:
        p = np.asarray(pred, np.float64)
        t = np.asarray(y)
    except (TypeError, ValueError):
        return None
    if t.dtype.kind in "OUS" or not p.size or not t.size:
        return None
    t = t.astype(np.float64)
    if loss.get("kind") == "regression":  # values, whatever their structure (integer ratings, counts)
        structure = "continuous"
    logits = bool(loss.get("from_logits")) or output.get("activation") in ("linear", None) and \
        loss.get("kind") in ("binary", "categorical", "sparse")
    cut = 0.0 if logits else 0.5
    try:
        if structure == "multi-hot" or (structure == "binary" and units == 1) or \
                (loss.get("kind") == "binary" and units == 1 and structure in ("binary", "class-indices")):
            p, t = p.reshape(-1, units or 1), t.reshape(-1, units or 1)
            errors = [_balanced_error((p[:, j] > cut).astype(int), (t[:, j] > 0.5).astype(int))
                      for j in range(p.shape[1])]
            errors = [e for e in errors if e is not None]
            return float(np.mean(errors)) if errors else None
        if structure in ("class-indices", "binary", "one-hot", "soft-labels") and units and units >= 2:
            p = p.reshape(-1, units)
            labels = t.reshape(-1, units).argmax(axis=1) if t.shape[-1:] == (units,) and t.ndim == p.ndim + 0 \
                and structure in ("one-hot", "soft-labels") else t.reshape(-1).astype(np.int64)
            if len(labels) != len(p):
                return None
            kept = labels != loss.get("ignore_class") if loss.get("ignore_class") is not None else slice(None)
            return _balanced_error(p.argmax(axis=1)[kept], labels[kept])
        if structure == "continuous" and p.size == t.size:
            variance = float(np.var(t))
            return float(np.mean((p.reshape(-1) - t.reshape(-1)) ** 2) / variance) if variance > 0 else None
    except (ValueError, IndexError):
        return None
    return None

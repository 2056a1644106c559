"""The statistics of a verdict: each run's outcome, paired intervals over seeds, and what an interval settles.

Outcome of a run: the mean of its validation losses over the last quarter of its
training (:data:`OUTCOME_TAIL`), in nats per token. One validation is one draw of
a noisy curve; the mean of the last few is the level the run settled at, and it is
what the report's validation curves show. A diverged run counts with the
validations it made before the divergence (the last quarter of its own steps), or
ln V when it made none: it did not learn (for a regression, the targets' variance).

Variants pair up by seed with the variant they are compared with (same seed, same
batch order), so an effect is the mean of per-seed differences with a
:data:`CONFIDENCE` paired t-interval (``scipy.stats.t``, n - 1 degrees of freedom).
A comparison read again after seeds were added gets a wider interval
(:func:`confidence_after`), so that adding seeds until it excludes zero does not
make a false effect likelier. An interval then says one of three things
(:func:`status_of`):

* ``established``: it excludes zero: the switch moves the loss, in the sign shown.
* ``negligible``: it lies within +-margin (a tenth of the gap, :data:`NEGLIGIBLE_SHARE`):
  whatever the switch does is too small to matter for the question.
* ``inconclusive``: neither; more seeds would say which.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from diagnose import runrecord
from diagnose.divergence import LOSS_BOUND_FACTOR
from diagnose.errors import DiagnoseError

__all__ = ["CONFIDENCE", "OUTCOME_TAIL", "NEGLIGIBLE_SHARE", "EFFECTS_MARGIN_SHARE", "run_outcome", "unlearned",
           "run_error", "run_task_error", "divergence_of", "paired", "confidence_after",
           "status_of", "excludes_zero", "outcome_words", "test_words", "loss_unit"]

CONFIDENCE = 0.95
# The last quarter of a run's steps: on the default study's 650 steps validated every
# 50, the validations at 500-650 (4 of them), late enough that the curves have
# flattened (they fall by less than a tenth of their total drop over that stretch).
OUTCOME_TAIL = 0.25
# Within +-10% of the gap an effect does not matter for the question "what closes
# the gap": it is what is left for seed noise and small factors once a fix is found.
NEGLIGIBLE_SHARE = 0.10
# A study without a gap (one base of your own): within +-2% of the base's loss.
EFFECTS_MARGIN_SHARE = 0.02


# Losses that are a negative log-likelihood (or a divergence between distributions) in
# nats: their differences are nats too. Names as LossInfo normalises them.
_NATS_LOSSES = {"categoricalcrossentropy", "sparsecategoricalcrossentropy", "binarycrossentropy", "crossentropy",
                "kldivergence", "kld", "kullbackleiblerdivergence"}


def loss_unit(model_config: dict | None) -> str:
    """The unit a run's loss is in, from its config.json ``model`` entry: ``"nats"`` for the
    built-in MemN2N and a Keras model under a cross-entropy; else the loss's own name
    ("mse", "huber", a function's name), whose differences carry no common unit."""
    model = model_config or {}
    if model.get("kind") != "keras":
        return "nats"  # the built-in MemN2N: a softmax cross-entropy per token
    name = model.get("loss")
    if not isinstance(name, str) or not name.isidentifier() or name in ("custom", "list", "dict", "tuple"):
        return "loss units"  # unnamed, or one loss per output (config.json names the container)
    return "nats" if name.replace("_", "").lower() in _NATS_LOSSES else name


def outcome_words(unit: str = "nats", per: str = "token") -> str:
    """What the outcome is, in one phrase (the verdict's ``method`` says it); ``per``: what the
    loss averages over ("token" for the built-in MemN2N, "example" for a Keras model)."""
    unlearned_loss = "ln V" if per == "token" else "the loss of a model that learned nothing"
    return (f"the mean validation loss over the last {OUTCOME_TAIL:.0%} of a run's steps ({unit} per {per}); a "
            f"diverged run counts with its validations before the divergence, or {unlearned_loss} without one")


def test_words() -> str:
    return (f"paired t-interval over seeds, {int(CONFIDENCE * 100)}% (scipy.stats.t), widened to "
            f"{100 * confidence_after(2):.3g}%, {100 * confidence_after(3):.3g}%, ... for a comparison read again "
            "after seeds were added (Bonferroni over its looks)")


def run_outcome(run_dir: Path) -> tuple[float | None, str | None]:
    """(outcome, status) of a run from its own record (a manifest cut off by a kill may lag)."""
    try:
        summary = runrecord.read_summary(run_dir)
    except DiagnoseError:  # missing or damaged: not an outcome
        return None, None
    status = summary.get("status")
    if status not in ("completed", "diverged"):
        return None, status
    rows = _validations(run_dir)
    # A run recorded by diagnose.Monitor trains on after it diverged, as fit does: what it
    # validates after the blow-up measures the blow-up, not what it had learned.
    blown = (summary.get("diverged_at") or {}).get("step") if status == "diverged" else None
    if blown is not None:
        rows = [(s, v) for s, v in rows if s <= blown]
    # A validation beyond the bound that marks a training loss as diverged (100 x ln V) means
    # the weights had blown up by then, whatever the training rows had shown yet: it and what
    # follows count as the divergence does.
    ln_v = (summary.get("baselines") or {}).get("ln_vocab")
    if ln_v:
        bound = LOSS_BOUND_FACTOR * float(ln_v)
        first = next((i for i, (_, v) in enumerate(rows) if v > bound), None)
        if first is not None:
            rows, blown = rows[:first], rows[first][0]
    if rows:
        start = (1.0 - OUTCOME_TAIL) * rows[-1][0]
        return statistics.fmean(v for s, v in rows if s >= start), status
    final = (summary.get("final") or {}).get("val_loss")
    if final is not None and math.isfinite(final) and blown is None:
        return float(final), status
    return (unlearned(summary) if status == "diverged" or blown is not None else None), status


def divergence_of(run_dir: Path) -> dict | None:
    """How a diverged run diverged, or None for one that did not: ``at_once``, it diverged by its first
    logged row (no curve before it); ``went_on``, training went on past the row that found the divergence
    (``diagnose.Monitor`` keeps training unless told ``stop_on_divergence``), else it stopped there (the
    built-in trainer ends its interval's steps, then stops)."""
    try:
        summary = runrecord.read_summary(run_dir)
    except DiagnoseError:
        return None
    at = summary.get("diverged_at")
    step = at.get("step") if isinstance(at, dict) else None
    if summary.get("status") != "diverged" or not isinstance(step, (int, float)):
        return None
    logged = [s for s, _ in _validations(run_dir, "step")]  # the logged rows after step 0
    found = next((s for s in logged if s >= step), step)  # the row that found it
    steps = summary.get("steps")
    return {"at_once": not logged or step <= logged[0],
            "went_on": isinstance(steps, (int, float)) and steps > found}


def unlearned(summary: dict) -> float | None:
    """The loss of a model that learned nothing: ln V (a uniform guess) for a classifier, the targets'
    variance (predicting their mean) for a regression."""
    baselines = summary.get("baselines") or {}
    return baselines.get("ln_vocab", baselines.get("target_variance"))


def run_error(run_dir: Path, output: str | None = None) -> float | None:
    """The mean validation error (1 - accuracy) over the same last quarter of a run's steps as
    :func:`run_outcome`, or None where the run recorded no validation accuracy (nothing
    compiled an accuracy metric) or did not finish.

    The proof judges a fault by it where the loss cannot show the fault (a softmax over
    one unit, whose logits Keras' binary cross-entropy reads instead of its outputs). ``output``:
    of that output's accuracy, for a model with several (``val_accuracy/NAME``).
    """
    if not _finished(run_dir):
        return None
    rows = _validations(run_dir, "val_accuracy" if output is None else f"val_accuracy/{output}")
    if not rows:
        return None
    start = (1.0 - OUTCOME_TAIL) * rows[-1][0]
    return 1.0 - statistics.fmean(v for s, v in rows if s >= start)


def run_task_error(run_dir: Path, output: str | None = None) -> float | None:
    """The task's error on the probe batch at the end of the run (its last ``probe_task_error``: a
    classifier's balanced error, 1 - R^2 for continuous targets, whatever the loss), or None; ``output``:
    of that output, for a model with several (``probe_task_error/NAME``).

    The proof judges by it a fix that changes the loss (its values in other units) or a
    model that compiled no accuracy."""
    if not _finished(run_dir):
        return None
    rows = _validations(run_dir, "probe_task_error" if output is None else f"probe_task_error/{output}")
    return rows[-1][1] if rows else None


def _finished(run_dir: Path) -> bool:
    """Whether the run has a summary saying it ran to its end (completed, or diverged on the way)."""
    try:
        return runrecord.read_summary(run_dir).get("status") in ("completed", "diverged")
    except DiagnoseError:
        return False


def _validations(run_dir: Path, column: str = "val_loss") -> list[tuple[float, float]]:
    """(step, value) of every finite validation of ``column`` after step 0 in metrics.csv, in order."""
    try:
        with open(Path(run_dir) / runrecord.METRICS, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = [runrecord.keras_name(name) for name in next(reader, [])]  # old records: valid_loss
            if column not in header or "step" not in header:
                return []
            i_step, i_valid = header.index("step"), header.index(column)
            rows = []
            for row in reader:
                try:
                    step, value = float(row[i_step]), float(row[i_valid])
                except (IndexError, ValueError):  # an empty cell: no validation at this row
                    continue
                if step > 0 and math.isfinite(value):
                    rows.append((step, value))
            return rows
    except OSError:
        return []


def confidence_after(looks: int) -> float:
    """The interval's level for a comparison read ``looks`` times as seeds were added.

    Adding seeds until an interval excludes zero would find an effect that is not
    there more often than 1 - CONFIDENCE; splitting that error over the looks
    (Bonferroni) keeps it at most 1 - CONFIDENCE in all: 95% at the first look,
    97.5% at the second, 98.3% at the third.
    """
    return 1.0 - (1.0 - CONFIDENCE) / max(1, looks)


def paired(a: dict[int, float], b: dict[int, float], confidence: float = CONFIDENCE) -> dict:
    """Mean of b - a over common seeds, with its paired t-interval at ``confidence`` and the differences' sd."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [b[s] - a[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return {"effect": None, "ci": [None, None], "n": 0, "sd": None, "confidence": confidence}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"effect": mean, "ci": [None, None], "n": n, "sd": None, "confidence": confidence}
    sd = statistics.stdev(diffs)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return {"effect": mean, "ci": [mean - half, mean + half], "n": n, "sd": sd, "confidence": confidence}


def excludes_zero(ci) -> bool:
    lo, hi = ci
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def status_of(entry: dict, margin: float | None) -> str:
    """``established``, ``negligible`` or ``inconclusive`` for an entry with ``ci`` (see the module docstring)."""
    lo, hi = entry["ci"]
    if lo is None or hi is None:
        return "inconclusive"
    if lo > 0 or hi < 0:
        return "established"
    if margin is not None and -margin < lo and hi < margin:
        return "negligible"
    return "inconclusive"

"""What a finding is, the view of a run the rules read, and small helpers the rules share.

The helpers all answer ``None`` rather than raise when a column is missing or
empty: a rule that lacks its inputs stays silent, so a Keras run (no temporal
encoding, no baselines) and a MemN2N run go through the same rules.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose import runrecord
from diagnose.errors import DiagnoseError
from diagnose.findings.verdict_stats import loss_unit
from diagnose.findings import thresholds as T

__all__ = ["Evidence", "Finding", "RunView", "KINDS", "SEVERITIES", "series", "late", "early", "steps_of",
           "hop_columns", "variable_columns", "number", "fmt", "final_loss", "weight_matrices", "constant_loss",
           "ConstantLoss", "layer_of", "initial_norm", "contract", "contract_targets", "all_layers",
           "start_loss", "progress", "baseline_name"]

# "unexplained": a failed run that no root cause's measured mechanism explains (check.check_view adds it).
KINDS = ("unexplained", "root-cause", "symptom")
SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class Evidence:
    """One observation behind a finding.

    Attributes:
        metric: a metrics.csv column, a config field (``model.output``) or a
            summary key (``summary.status``).
        observed: the value seen (a late mean, a config value...).
        threshold: what it was compared against, or None.
        steps: the (first, last) step the observation covers, or None for
            config and summary entries.
    """

    metric: str
    observed: float | str
    threshold: float | str | None = None
    steps: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "observed": _plain(self.observed), "threshold": _plain(self.threshold),
                "steps": [int(s) for s in self.steps] if self.steps is not None else None}

    def line(self) -> str:
        """One readable line: ``metric = observed (threshold ...) over steps a-b``."""
        text = f"{self.metric} = {fmt(self.observed)}"
        if self.threshold is not None:
            text += f" (threshold {fmt(self.threshold)})"
        if self.steps is not None:
            first, last = self.steps
            text += f" at step {first}" if first == last else f" over steps {first}-{last}"
        return text


@dataclass(frozen=True)
class Finding:
    """A diagnosis: a root cause (a choice to change), a symptom (what the run shows), or a failure no
    measured cause explains (kind "unexplained")."""

    id: str
    kind: str
    severity: str
    title: str
    evidence: tuple[Evidence, ...]
    explanation: str
    fix: str
    figure: str | None = None  # the report figure that shows the evidence (from the rule's declaration)

    def __post_init__(self):
        # A typo in a rule would otherwise break sorting and reports far from its cause.
        if self.kind not in KINDS:
            raise ValueError(f"finding {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding {self.id}: severity must be one of {SEVERITIES}, got {self.severity!r}")
        object.__setattr__(self, "evidence", tuple(self.evidence))

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "severity": self.severity, "title": self.title,
                "evidence": [e.to_dict() for e in self.evidence], "explanation": self.explanation,
                "fix": self.fix, "figure": self.figure}

    def sort_key(self) -> tuple:
        """An unexplained failure first, then root causes, then high > medium > low, then id."""
        return KINDS.index(self.kind), SEVERITIES.index(self.severity), self.id


@dataclass(frozen=True)
class RunView:
    """A run record in memory: what every rule reads.

    Attributes:
        config: config.json (``model``, ``data``, ``train``).
        summary: summary.json, or ``{}`` while none was written.
        metrics: metrics.csv, one row per logged step, sorted by step.
        attention: attention.csv (``step, hop, pos0..``) or None.
    """

    config: dict
    summary: dict = field(default_factory=dict)
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"step": []}))
    attention: pd.DataFrame | None = None

    def __post_init__(self):
        # Hand-built views may be unsorted or lack a step column; rules rely on both.
        metrics = self.metrics if self.metrics is not None else pd.DataFrame({"step": []})
        if "step" not in metrics.columns:
            metrics = metrics.assign(step=np.arange(1, len(metrics) + 1))
        metrics = metrics[pd.to_numeric(metrics["step"], errors="coerce").notna()]
        object.__setattr__(self, "metrics", metrics.sort_values("step", kind="stable").reset_index(drop=True))
        object.__setattr__(self, "config", self.config or {})
        object.__setattr__(self, "summary", self.summary or {})

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunView":
        """Reads a run directory (attention.csv and summary.json are optional).

        Raises:
            DiagnoseError: ``run_dir`` holds no run record.
        """
        run_dir = Path(run_dir)
        if not runrecord.is_run_dir(run_dir):
            raise DiagnoseError(f"{run_dir} is not a run directory (no {runrecord.CONFIG}); "
                                "pass the directory a training run or diagnose.Monitor wrote")
        summary = runrecord.read_summary(run_dir) if (run_dir / runrecord.SUMMARY).is_file() else {}
        metrics = (runrecord.read_metrics(run_dir) if (run_dir / runrecord.METRICS).is_file()
                   else pd.DataFrame({"step": []}))
        attention = pd.read_csv(run_dir / runrecord.ATTENTION) if (run_dir / runrecord.ATTENTION).is_file() else None
        return cls(runrecord.read_config(run_dir), summary, metrics, attention)

    @property
    def model(self) -> dict:
        return self.config.get("model") or {}

    @property
    def is_keras(self) -> bool:
        return self.model.get("kind") == "keras"

    @property
    def unit(self) -> str:
        """What the run's loss is in: nats (a cross-entropy), else the loss's own name ("mse")."""
        return loss_unit(self.model)

    def baseline(self, key: str) -> float | None:
        return number((self.summary.get("baselines") or {}).get(key))


def _plain(value):
    """numpy scalars as Python ones, so that to_dict() output is JSON-ready."""
    return value.item() if isinstance(value, np.generic) else value


def number(value) -> float | None:
    """``value`` as a finite float, or None (missing, null, text, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def series(view: RunView, column: str, finite: bool = True) -> pd.Series | None:
    """A metrics column indexed by step, without empty cells; None when absent or empty.

    Args:
        finite: also drop +-inf (a diverging step logs inf; the means a rule takes
            should not be swallowed by it).
    """
    if column not in view.metrics.columns:
        return None
    # Read once per view: some thirty rules ask for the same few columns, and a report checks a hundred runs.
    cache = view.__dict__.setdefault("_series", {})
    if (column, finite) not in cache:
        if "_steps" not in cache:
            cache["_steps"] = view.metrics["step"].astype(int).to_numpy()
        values = pd.to_numeric(view.metrics[column], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(values) if finite else ~np.isnan(values)
        cache[column, finite] = pd.Series(values[keep], index=cache["_steps"][keep], name=column) if keep.any() \
            else None
    values = cache[column, finite]
    return None if values is None else values.copy()  # a rule may change what it gets; the next one reads afresh


def late(values: pd.Series | None, fraction: float = T.LATE_FRACTION) -> pd.Series | None:
    """The last ``fraction`` of the rows (at least one)."""
    if values is None or not len(values):
        return None
    return values.iloc[-max(1, int(math.ceil(len(values) * fraction))):]


def early(values: pd.Series | None, fraction: float = T.EARLY_FRACTION) -> pd.Series | None:
    """The first ``fraction`` of the rows (at least one)."""
    if values is None or not len(values):
        return None
    return values.iloc[:max(1, int(math.ceil(len(values) * fraction)))]


def steps_of(values: pd.Series | pd.DataFrame | None) -> tuple[int, int] | None:
    """The (first, last) step a step-indexed window covers."""
    if values is None or not len(values):
        return None
    return int(values.index[0]), int(values.index[-1])


def hop_columns(view: RunView, prefix: str) -> dict[int, str]:
    """``{K: "prefix/hopK"}`` for the hops logged under ``prefix`` (e.g. ``attn_entropy``)."""
    found = {}
    for column in view.metrics.columns:
        match = re.fullmatch(re.escape(prefix) + r"/hop(\d+)", str(column))
        if match:
            found[int(match.group(1))] = column
    return dict(sorted(found.items()))


def variable_columns(view: RunView, prefix: str) -> list[str]:
    """The per-variable columns under ``prefix`` (``update_ratio/A/embedding``...), not ``/global``."""
    return [c for c in view.metrics.columns if str(c).startswith(prefix + "/") and c != f"{prefix}/global"]


def fmt(value) -> str:
    """A number in 3 significant figures (scientific when tiny or huge); text unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        return str(value)
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) < 1e-2 or abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.4g}"


def final_loss(view: RunView) -> tuple[str, float] | None:
    """The loss the run ended at, as ``(source, value)``.

    Validation loss is preferred (it is what the model is for); the summary's
    figures before the logged ones (the summary is written from the same rows, but
    a hand-built or partial record may have only one of them).
    """
    final = view.summary.get("final") or {}
    for key in ("val_loss", "train_loss"):
        value = number(final.get(key))
        if value is not None:
            return f"summary.final.{key}", value
    for column in ("val_loss", "loss"):
        values = series(view, column)
        if values is not None:
            return column, float(values.iloc[-1])
    return None


# Variables that are vectors by construction: biases and normalisation scales start at
# 0 or 1, not at a random draw, so their update ratios say nothing about the step size.
_VECTOR_LEAVES = ("bias", "gamma", "beta", "moving_mean", "moving_variance", "scale", "offset")


def weight_matrices(view: RunView, prefix: str = "update_ratio") -> list[str]:
    """The per-variable columns under ``prefix`` that belong to weights of two or more axes.

    Shapes come from summary.json's ``variables``; a record without them (an older
    one) is read by name: a last path component like ``bias`` or ``gamma`` marks a vector.
    """
    shapes = view.summary.get("variables") if isinstance(view.summary.get("variables"), dict) else None
    out = []
    for column in variable_columns(view, prefix):
        name = column.split("/", 1)[1]
        if shapes is not None and name in shapes:
            if len(shapes[name] or []) >= 2:
                out.append(column)
        elif name.rsplit("/", 1)[-1] not in _VECTOR_LEAVES:
            out.append(column)
    return out


@dataclass(frozen=True)
class ConstantLoss:
    """The loss of the best prediction that ignores the input, and the margins that go with its units."""

    baseline: str  # the summary key it comes from
    value: float
    margin: float  # a loss within this of the value is no better
    probe_margin: float  # shuffled inputs costing less than this more than real ones cost nothing


def layer_of(view: RunView, name: str) -> str | None:
    """The class of the layer owning variable ``name`` (summary.json's ``variable_layers``), or None."""
    layers = view.summary.get("variable_layers")
    return layers.get(name) if isinstance(layers, dict) else None


def initial_norm(view: RunView, name: str) -> float | None:
    """||w|| of variable ``name`` before training: summary.json's, else its first logged norm."""
    norms = view.summary.get("initial_weight_norms")
    if isinstance(norms, dict) and number(norms.get(name)) is not None:
        return number(norms.get(name))
    logged = series(view, f"weight_norm/{name}")
    return None if logged is None else float(logged.iloc[0])


def constant_loss(view: RunView) -> ConstantLoss | None:
    """The loss of the best prediction that ignores the input.

    For a cross-entropy it is the entropy of the targets (``unigram_entropy``), with
    margins of :data:`~thresholds.UNIGRAM_MARGIN` and :data:`~thresholds.PROBE_MARGIN`
    nats; for a squared error, the targets' variance, with margins of
    :data:`~thresholds.VARIANCE_MARGIN` of it.
    """
    # The labels' entropy is a cross-entropy's baseline only (a hinge loss on the same labels is in its own units).
    unigram = view.baseline("unigram_entropy") if view.unit in ("nats", "loss units") else None
    if unigram is not None:
        return ConstantLoss("summary.baselines.unigram_entropy", unigram, T.UNIGRAM_MARGIN, T.PROBE_MARGIN)
    variance = squared_error_variance(view)
    if variance is not None:
        margin = T.VARIANCE_MARGIN * variance
        return ConstantLoss("summary.baselines.target_variance", variance, margin, margin)
    constant = view.baseline("constant_loss")
    if constant is not None and constant > 0:
        # Any other loss (MAE, Huber, hinge, the user's own): the best constant prediction under it.
        margin = T.CONSTANT_MARGIN * constant
        return ConstantLoss("summary.baselines.constant_loss", constant, margin, margin)
    return None


# A Keras model's reference losses in the words of its task (the built-in MemN2N's keep the corpus's names).
_KERAS_BASELINE_WORDS = {"unigram_entropy": "the best constant prediction (the labels' entropy)",
                         "target_variance": "the best constant prediction (the targets' variance)",
                         "constant_loss": "the best constant prediction"}


def baseline_name(view: RunView, source: str) -> str:
    """A reference loss named as what it is: ``summary.baselines.unigram_entropy`` is the best constant
    prediction on a Keras model's labels, the unigram entropy of the built-in MemN2N's corpus."""
    key = source.rsplit(".", 1)[-1]
    return _KERAS_BASELINE_WORDS.get(key, key) if view.is_keras else key


def contract(view: RunView) -> dict:
    """summary.json's ``contract`` (:mod:`diagnose.instruments.contract`), or ``{}``."""
    facts = view.summary.get("contract")
    return facts if isinstance(facts, dict) else {}


def contract_targets(view: RunView) -> dict:
    """What the targets are (the contract's ``targets``), or ``{}``."""
    targets = contract(view).get("targets")
    return targets if isinstance(targets, dict) else {}


def all_layers(view: RunView) -> list[dict]:
    """Every described layer: the model's own and those nested inside them (a shared encoder's)."""
    model = view.model
    return [layer for layer in list(model.get("layers") or []) + list(model.get("inner_layers") or [])
            if isinstance(layer, dict) and not layer.get("operation")]


def loss_scale(view: RunView) -> float:
    """What one unit of a loss threshold given in nats is for this run's loss: 1 for a
    cross-entropy; for a squared error, the targets' variance (the loss of predicting their
    mean), so that a threshold of 0.05 reads as 5% of it, an R^2 of 0.05; 1 where the
    loss's scale is unknown (a loss of the user's own)."""
    variance = squared_error_variance(view)
    return variance if variance is not None and variance > 0 else 1.0


def squared_error_variance(view: RunView) -> float | None:
    """The targets' variance where the run's loss is a mean squared error (the loss of
    predicting the targets' mean), else None."""
    variance = view.baseline("target_variance")
    loss = str(view.model.get("loss", "")).lower().replace("_", "")
    return variance if variance is not None and loss in ("mse", "meansquarederror") else None


def start_loss(view: RunView) -> float | None:
    """The loss the run started from: the loss at step 0, else the first logged training loss."""
    at_start = view.baseline("loss_at_step0")
    if at_start is not None:
        return at_start
    losses = series(view, "loss")
    return None if losses is None else float(losses.iloc[0])


def progress(view: RunView) -> float | None:
    """How much of the way from its starting loss to the best reachable the run got (0 none, 1 all).

    The best reachable is the Bayes floor where known, else 0.
    """
    start, end = start_loss(view), series(view, "loss")
    if start is None or end is None:
        return None
    floor = view.baseline("bayes_floor") or 0.0
    if start - floor <= 0:
        return None
    return (start - float(late(end).mean())) / (start - floor)


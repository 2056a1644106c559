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
from diagnose.findings import thresholds as T

__all__ = ["Evidence", "Finding", "RunView", "KINDS", "SEVERITIES", "series", "late", "early", "steps_of",
           "hop_columns", "variable_columns", "number", "fmt", "final_loss"]

KINDS = ("root-cause", "symptom")
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
    """A diagnosis: a root cause (a choice to change) or a symptom (what the run shows)."""

    id: str
    kind: str
    severity: str
    title: str
    evidence: tuple[Evidence, ...]
    explanation: str
    fix: str

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
                "fix": self.fix}

    def sort_key(self) -> tuple:
        """Root causes first, then high > medium > low, then id."""
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
    values = pd.to_numeric(view.metrics[column], errors="coerce")
    values.index = view.metrics["step"].astype(int).to_numpy()
    values = values[np.isfinite(values)] if finite else values.dropna()
    return values if len(values) else None


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
    for key in ("valid_loss", "train_loss"):
        value = number(final.get(key))
        if value is not None:
            return f"summary.final.{key}", value
    for column in ("valid_loss", "loss"):
        values = series(view, column)
        if values is not None:
            return column, float(values.iloc[-1])
    return None

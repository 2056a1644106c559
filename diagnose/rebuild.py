"""How a run of a user's model is trained again: its builder, data, settings, changes, fit and seed.

A study's run (:class:`UserRunConfig`) and a :class:`~diagnose.Monitor`'s ``rebuild``
say the same thing, which the run record keeps so that a proof can train the run
again with a fix; the ``[fit]`` and ``[monitor]`` tables are declared here once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

from diagnose import refs
from diagnose.errors import ConfigError
from diagnose.tables import Flag, PositiveInt, Table, validate

__all__ = ["FitTable", "MonitorTable", "UserRunConfig", "checked_fit_monitor", "rebuild_entry", "from_record"]


class FitTable(Table):
    """``[fit]``: the model.fit arguments every run of a study takes."""

    refused: ClassVar[dict[str, str]] = {
        "validation_split": "a study's validation data comes from its data function; return (train, valid) from "
                            "data(), e.g. split with x[:n], x[n:]"}

    epochs: PositiveInt = None
    batch_size: PositiveInt = None
    steps_per_epoch: PositiveInt = None
    validation_batch_size: PositiveInt = None
    shuffle: Flag = None


class MonitorTable(Table):
    """``[monitor]``: the diagnose.Monitor arguments every run of a study takes."""

    log_every: PositiveInt = None
    probe_every: PositiveInt = None
    tensorboard: Flag = None


class _Run(Table):
    fit: FitTable = FitTable()
    monitor: MonitorTable = MonitorTable()


def checked_fit_monitor(fit: dict, monitor: dict) -> tuple[dict, dict]:
    """``[fit]`` and ``[monitor]`` as given, each key known and of its type (else one line)."""
    run = validate(_Run, {"fit": fit, "monitor": monitor}, "fit, monitor")
    given_fit, given_monitor = run.fit.given(), run.monitor.given()
    return {k: given_fit[k] for k in fit}, {k: given_monitor[k] for k in monitor}  # in the order given


@dataclass(frozen=True)
class UserRunConfig:
    """One run of a user study, as its id hashes it and its worker reads it."""

    builder: str
    data: str
    settings: dict
    changes: tuple
    fit: dict
    monitor: dict
    seed: int

    def to_dict(self) -> dict:
        return {"kind": "keras", "builder": self.builder, "data": self.data, "settings": self.settings,
                "changes": list(self.changes), "fit": self.fit, "monitor": self.monitor, "seed": self.seed}

    def group(self) -> str:
        """16 hex digits naming the runs that can share a traced model: equal in all but the seed."""
        blob = json.dumps({**self.to_dict(), "seed": None}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "UserRunConfig":
        return cls(d["builder"], d["data"], dict(d.get("settings") or {}), tuple(d.get("changes") or ()),
                   dict(d.get("fit") or {}), dict(d.get("monitor") or {}), int(d.get("seed", 0)))

_KEYS = {"builder", "data", "settings", "changes", "fit", "monitor", "seed", "kind"}


def rebuild_entry(value: dict) -> dict:
    """``value`` checked and made JSON: functions become ``"module:function"`` references.

    Args:
        value: ``{"builder": fn or ref, "data": fn or ref, "settings": {...}}`` and optionally
            ``"fit"`` (model.fit arguments such as epochs and batch_size), ``"seed"``,
            ``"changes"``, ``"monitor"``.

    Raises:
        ConfigError: a missing builder or data, an unknown key, settings that are not JSON.
    """
    if not isinstance(value, dict):
        raise ConfigError(f"rebuild must be a dict with builder, data and settings, got {type(value).__name__}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ConfigError(f"rebuild has unknown keys {unknown}; valid keys: {', '.join(sorted(_KEYS - {'kind'}))}")
    for key in ("builder", "data"):
        if key not in value:
            raise ConfigError(f"rebuild needs '{key}': the function (or 'module:function') that builds the "
                              f"{'compiled model' if key == 'builder' else 'training and validation data'}")
    settings = value.get("settings") or {}
    try:
        settings = json.loads(json.dumps(settings, allow_nan=False))
    except (TypeError, ValueError):
        raise ConfigError("rebuild settings must be JSON values (numbers, strings, lists, dicts)") from None
    seed = value.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"rebuild seed must be a non-negative integer, got {seed!r}")
    fit, monitor = checked_fit_monitor(dict(value.get("fit") or {}), dict(value.get("monitor") or {}))
    config = UserRunConfig(refs.to_ref(value["builder"], "builder"), refs.to_ref(value["data"], "data"),
                           settings, tuple(value.get("changes") or ()), fit, monitor, seed)
    return config.to_dict()


def from_record(config: dict) -> UserRunConfig | None:
    """The run's :class:`UserRunConfig` from its config.json, or None when it records none."""
    entry = config.get("rebuild")
    return UserRunConfig.from_dict(entry) if isinstance(entry, dict) else None

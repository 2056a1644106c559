"""What a run record keeps to be trained again: its builder, data, settings, changes, fit and seed."""

from __future__ import annotations

import json

from diagnose.errors import ConfigError
from diagnose.userstudy import refs
from diagnose.userstudy.spec import UserRunConfig, _checked, _FIT, _MONITOR

__all__ = ["rebuild_entry", "from_record"]

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
    config = UserRunConfig(refs.to_ref(value["builder"], "builder"), refs.to_ref(value["data"], "data"),
                           settings, tuple(value.get("changes") or ()),
                           _checked("fit", dict(value.get("fit") or {}), _FIT),
                           _checked("monitor", dict(value.get("monitor") or {}), _MONITOR), seed)
    return config.to_dict()


def from_record(config: dict) -> UserRunConfig | None:
    """The run's :class:`UserRunConfig` from its config.json, or None when it records none."""
    entry = config.get("rebuild")
    return UserRunConfig.from_dict(entry) if isinstance(entry, dict) else None

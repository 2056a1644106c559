"""Checking a built-in study spec's sections (what :func:`~diagnose.memn2n.spec.build_spec` composes).

The sections' keys and simple types are declared once (:class:`MemN2NSpecFile`, shared
pieces in :mod:`diagnose.ablation.schema`); the rules below check what needs the
model's catalogue (presets, factors, config fields). Every problem is one
:class:`ConfigError` line naming the section, the key and the fix."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from diagnose.ablation.schema import MAX_SEEDS, StudyTable, check_seeds, check_study_name, combo_entries
from diagnose.errors import ConfigError
from diagnose.limits import check_name
from diagnose.memn2n.config import DataConfig, TrainConfig
from diagnose.memn2n.data.synthetic import SYNTHETIC_PRESETS
from diagnose.memn2n.factors import DEFAULT_LEVELS, DEFAULT_SPEC, FACTORS
from diagnose.models.config import apply_overrides, preset
from diagnose.tables import PositiveInt, Table, validate

__all__ = ["MemN2NSpecFile", "SECTIONS", "MAX_SEEDS", "merged_with_defaults", "check_study", "check_factors",
           "check_sizes", "check_budget", "check_corpus", "check_train", "check_combos", "check_model"]


class _Study(StudyTable):
    bases: Any = None  # model presets (check_study)


class _Budget(Table):
    steps: PositiveInt = None
    epochs: Any = None  # a positive number when steps is not given (check_budget)


class _Corpus(Table):
    synthetic: Any = None
    path: Any = None
    context: Any = None
    tokens: Any = None
    max_vocab: Any = None


class _Sizes(Table):
    memory_size: PositiveInt = None
    embed_dim: PositiveInt = None
    hops: PositiveInt = None
    batch_size: PositiveInt = None


class MemN2NSpecFile(Table):
    """The sections of a built-in study's spec; [model], [train], [factors] and [combos] are checked
    by their own rules below (they name config fields and factors)."""

    study: _Study = _Study()
    budget: _Budget = _Budget()
    corpus: _Corpus = _Corpus()
    sizes: _Sizes = _Sizes()
    model: dict = {}
    train: dict = {}
    factors: dict = {}
    combos: dict = {}


SECTIONS = tuple(MemN2NSpecFile.model_fields)


def merged_with_defaults(raw: dict) -> dict:
    """The spec's sections over the default study's (unknown sections and keys refused)."""
    validate(MemN2NSpecFile, raw, ", ".join(SECTIONS))
    merged = {s: dict(DEFAULT_SPEC.get(s, {})) for s in SECTIONS}
    if "factors" in raw and "combos" not in raw:
        merged["combos"] = {}  # the default contrasts belong to the default factors
    if "combos" not in raw and isinstance(raw.get("study", {}).get("bases"), list):  # ...and to the default bases
        merged["combos"] = {k: v for k, v in merged["combos"].items() if v.get("base") in raw["study"]["bases"]}
    for section, values in raw.items():
        if section in ("factors", "combos"):
            merged[section] = dict(values)  # a spec's own list replaces the default one
        else:
            merged[section].update(values)
    if "path" in raw.get("corpus", {}):
        merged["corpus"].pop("synthetic", None)
    if "epochs" in raw.get("budget", {}) and "steps" not in raw.get("budget", {}):
        merged["budget"].pop("steps", None)

    return merged


def check_study(study: dict) -> tuple[list[str], tuple[int, ...]]:
    """[study]: a plain name, known base presets, seeds and max_seeds in range. Returns (bases, seeds)."""
    check_study_name(study.get("name"))
    bases = study.get("bases")
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError("[study] bases must be a non-empty list of presets, e.g. [\"as-posted\", \"paper\"]")
    for base in bases:
        try:
            preset(base)
        except ValueError as exc:
            raise ConfigError(f"[study] bases: {exc}") from None
    seeds = check_seeds(study.get("seeds"), study.get("max_seeds"))
    return bases, seeds


def check_factors(merged: dict) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, dict]]]:
    """[factors]: built-in factors with known levels, or custom tables of settings. Returns (factors, custom)."""
    factors: dict[str, tuple[str, ...]] = {}
    custom: dict[str, dict[str, dict]] = {}
    for name, levels in merged["factors"].items():
        check_name("factor", name)
        if isinstance(levels, dict):  # a factor of the user's own: {level = {field = value}}
            if name in FACTORS:
                raise ConfigError(f"factor '{name}' is built in; give it a list of levels, not a table")
            if not levels or not all(isinstance(v, dict) and v for v in levels.values()):
                raise ConfigError(f"custom factor '{name}' needs levels like {name} = "
                                  "{high = {learning_rate = 0.1}}")
            for level, settings in levels.items():
                check_name(f"factor '{name[:24]}' level", level)
                try:
                    apply_overrides(preset("paper"), settings)
                except ValueError as exc:
                    raise ConfigError(f"custom factor '{name}', level '{level}': {exc}") from None
            custom[name] = {lv: dict(st) for lv, st in levels.items()}
            factors[name] = tuple(levels)
            continue
        if name not in FACTORS:
            raise ConfigError(f"unknown factor '{name}'; valid factors: {', '.join(FACTORS)}")
        if not isinstance(levels, list) or not all(isinstance(lv, str) for lv in levels):
            raise ConfigError(f"factor '{name}' takes a list of levels, e.g. {name} = {DEFAULT_LEVELS[name]}")
        for level in levels:
            if level not in FACTORS[name]:
                raise ConfigError(f"unknown level '{level}' of factor '{name}'; valid levels: "
                                  f"{', '.join(FACTORS[name])}")
        factors[name] = tuple(levels) if levels else tuple(DEFAULT_LEVELS[name])

    return factors, custom


def check_sizes(sizes: dict) -> None:
    """[sizes]: positive integers."""
    validate(MemN2NSpecFile, {"sizes": sizes}, ", ".join(SECTIONS))


def check_budget(budget: dict) -> tuple[int | None, float | None]:
    """[budget]: a positive steps, or else epochs. Returns (steps, epochs)."""
    validate(MemN2NSpecFile, {"budget": budget}, ", ".join(SECTIONS))
    steps, epochs = budget.get("steps"), budget.get("epochs")
    if steps is None and (not isinstance(epochs, (int, float)) or isinstance(epochs, bool)
                          or not 0 < epochs < math.inf):
        raise ConfigError(f"[budget] needs a positive steps or epochs, got {budget!r}")
    return steps, epochs


def check_corpus(corpus: dict) -> DataConfig:
    """[corpus]: a path or a synthetic preset, a context mode; the data config."""
    context = corpus.get("context", "stream")
    if context not in ("stream", "line"):
        raise ConfigError(f"[corpus] context={context!r} is not valid; choose stream or line")
    data = DataConfig(corpus=corpus.get("path"), synthetic=corpus.get("synthetic", "topic-copy"),
                      synthetic_tokens=corpus.get("tokens"), context=context, max_vocab=corpus.get("max_vocab"))
    try:
        data.validate()
    except ConfigError as exc:
        raise ConfigError(f"[corpus] {str(exc).replace('synthetic_tokens', 'tokens')}") from None
    if data.corpus is None and data.synthetic not in SYNTHETIC_PRESETS:
        raise ConfigError(f"[corpus] synthetic={data.synthetic!r} is not valid; choose one of "
                          f"{', '.join(SYNTHETIC_PRESETS)}")
    return data


def check_train(options: dict, steps: int | None, epochs: float | None) -> TrainConfig:
    """[train]: TrainConfig's fields (not the seed or the budget), as strictly as --set; the train config."""
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key in options:
        if key not in train_fields or key in ("seed", "steps", "epochs"):
            valid = sorted(k for k in train_fields if k not in ("seed", "steps", "epochs"))
            raise ConfigError(f"unknown key '{key}' in [train]; valid keys: {', '.join(valid)}")
    train = dataclasses.replace(TrainConfig(), steps=steps, epochs=epochs if steps is None else None,
                                **options)
    try:
        train.validate()
    except ConfigError as exc:
        section = "budget" if str(exc).startswith(("steps", "give a positive")) else "train"
        raise ConfigError(f"[{section}] {exc}") from None
    return train


def check_combos(combos_raw: dict, bases: list[str], factors: dict, custom: dict) -> list[tuple]:
    """[combos]: each a base and factor = level pairs; (base, ((factor, level), ...)) each."""

    def switch(label: str, factor: str, level) -> tuple:
        if factor not in factors and factor not in FACTORS:
            raise ConfigError(f"combo '{label}': unknown factor '{factor}'; valid factors: "
                              f"{', '.join(list(FACTORS) + list(custom))}")
        levels = custom[factor] if factor in custom else FACTORS[factor]
        if level not in levels:
            raise ConfigError(f"combo '{label}': unknown level '{level}' of '{factor}'; valid levels: "
                              f"{', '.join(levels)}")
        return factor, level

    return combo_entries(combos_raw, bases, switch)


def check_model(model: dict) -> None:
    """[model]: fields set on every base, each valid on a model config."""
    try:
        apply_overrides(preset("paper"), model)
    except ValueError as exc:
        raise ConfigError(f"[model] {exc}") from None

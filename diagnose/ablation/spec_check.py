"""Checking a study spec's sections, each against its own rules (what :func:`~diagnose.ablation.spec.build_spec`
composes): every key known, every value of its type and range, a one-line :class:`ConfigError` naming the
section, the key and the fix otherwise."""

from __future__ import annotations

import dataclasses
import math

from diagnose import studydir
from diagnose.ablation.factors import DEFAULT_LEVELS, DEFAULT_SPEC, FACTORS
from diagnose.config import DataConfig, TrainConfig
from diagnose.errors import ConfigError
from diagnose.limits import MAX_SEED, check_name
from diagnose.models.config import apply_overrides, preset

__all__ = ["SECTIONS", "MAX_SEEDS", "merged_with_defaults", "check_study", "check_seeds", "check_factors",
           "check_sizes", "check_budget", "check_corpus", "check_train", "check_combos", "check_model"]

# Seeds a spec may ask for: an interval over n seeds narrows as 1/sqrt(n), so 1000
# already puts it at ~0.03 of one seed's spread; more only multiplies the runs.
MAX_SEEDS = 1000
# The sections of a spec and their keys (None: any key, checked by the section's own rule).
SECTIONS = {"study": {"name", "bases", "seeds", "max_seeds"}, "budget": {"steps", "epochs"},
             "corpus": {"synthetic", "path", "context", "tokens", "max_vocab"},
             "sizes": {"memory_size", "embed_dim", "hops", "batch_size"}, "model": None, "train": None,
             "factors": None, "combos": None}


def merged_with_defaults(raw: dict) -> dict:
    """The spec's sections over the default study's (unknown sections and keys refused)."""
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"unknown spec section [{section}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"spec section [{section}] must be a table")
        allowed = SECTIONS[section]
        for key in raw[section]:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"unknown key '{key}' in [{section}]; valid keys: {', '.join(sorted(allowed))}")
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
    if not studydir.plain_name(study.get("name")):
        raise ConfigError(f"[study] name={study.get('name')!r} must be a plain name (letters, digits, '.', '_', '-'; "
                          "not '.' or '..'): it names the directory ablations/<name>")
    check_name("[study] name", study["name"])
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


def check_seeds(seeds, max_seeds) -> tuple[int, ...]:
    """[study] seeds (a count or a list of seeds) and max_seeds (adaptive seeding's cap); the seeds."""
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or isinstance(seeds, list) and seeds
                                       and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                               for s in seeds)):
        raise ConfigError(f"[study] seeds must be a positive count or a list of non-negative integers, got {seeds!r}")
    seeds = range(seeds) if isinstance(seeds, int) else dict.fromkeys(seeds)  # counted before made: 10**11 is a slip
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"[study] seeds: {len(seeds)} seeds is more than {MAX_SEEDS}; an interval over seeds "
                          f"narrows as 1/sqrt(n), so {MAX_SEEDS} already put it at ~0.03 of one seed's spread: "
                          "ask for fewer")
    if max_seeds is not None and (not isinstance(max_seeds, int) or isinstance(max_seeds, bool)
                                  or not 1 <= max_seeds <= MAX_SEEDS):
        raise ConfigError(f"[study] max_seeds must be a count from 1 to {MAX_SEEDS} (the most seeds adaptive seeding "
                          f"gives a variant), got {max_seeds!r}")
    from diagnose.findings.verdict_plan import DEFAULT_MAX_SEEDS

    # Seeds added where an interval stays inconclusive continue after the largest one.
    last = max(seeds) + max(0, (max_seeds or DEFAULT_MAX_SEEDS) - len(seeds))
    if last > MAX_SEED:
        raise ConfigError(f"[study] seeds: {max(seeds)} (with the seeds added after it, up to {last}) is outside the "
                          f"seeds numpy and Keras take (0 to 2**32 - 1 = {MAX_SEED}); give smaller seeds")
    return tuple(seeds)


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
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"[sizes] {key} must be a positive integer, got {value!r}")


def check_budget(budget: dict) -> tuple[int | None, float | None]:
    """[budget]: a positive steps, or else epochs. Returns (steps, epochs)."""
    steps, epochs = budget.get("steps"), budget.get("epochs")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ConfigError(f"[budget] steps must be a positive integer, got {steps!r}")
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
    if data.corpus is None:
        from diagnose.data.synthetic import SYNTHETIC_PRESETS

        if data.synthetic not in SYNTHETIC_PRESETS:
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


def combo_entries(combos_raw: dict, bases: list[str], switch) -> list[tuple]:
    """[combos] of any study: (base, ((factor, level), ...)) each, every pair checked by
    ``switch(label, factor, level) -> (factor, level)``, which raises ConfigError."""
    combos = []
    for label, entry in combos_raw.items():
        if not isinstance(entry, dict) or entry.get("base") not in bases:
            raise ConfigError(f"combo '{label}' needs base = one of {', '.join(bases)} and factor = level pairs")
        switches = tuple(switch(label, factor, level) for factor, level in entry.items() if factor != "base")
        combos.append((entry["base"], switches))
    return combos


def check_model(model: dict) -> None:
    """[model]: fields set on every base, each valid on a model config."""
    try:
        apply_overrides(preset("paper"), model)
    except ValueError as exc:
        raise ConfigError(f"[model] {exc}") from None

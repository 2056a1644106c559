"""Ablation specs: which bases, which factors and levels, seeds, budget, corpus and sizes.

A spec is TOML (every key optional; the defaults are the default study)::

    [study]
    name = "default"
    bases = ["as-posted", "paper"]     # model presets; each factor is switched alone on each
    seeds = 3                          # a count (0..n-1) or a list of seeds
    max_seeds = 12                     # seeds added where an interval stays inconclusive, up to this many

    [budget]
    steps = 600                        # or: epochs = 1.0

    [corpus]
    synthetic = "topic-copy-small"     # or: path = "data/ptb"
    context = "line"                   # stream | line

    [sizes]                            # the paper's sizes; as-posted runs one hop fewer, as posted
    memory_size = 10
    embed_dim = 32
    hops = 3
    batch_size = 32

    [train]                            # TrainConfig fields: log_every, eval_every, probe_every, ...
    log_every = 50

    [model]                            # any MemN2NConfig field, set on every base
    learning_rate = 0.01

    [factors]                          # factor = [levels] (empty list: the factor's default levels)
    output = []
    temporal = ["none", "normal", "uniform", "ones"]
    lr = {high = {learning_rate = 1.0}}  # a factor of your own: level = {field = value}

    [combos]                           # variants with several factors switched together
    "sum, ones" = {base = "as-posted", loss_reduction = "sum", temporal = "ones"}

For every base and every factor, each level whose settings differ from the base's is
one counterfactual: the base with that factor alone switched. A factor's levels are
named settings of one or more config fields (:data:`FACTORS`). Everything is
validated before anything runs; errors are one line listing the valid choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from diagnose import studydir
from diagnose.ablation.factors import DEFAULT_LEVELS, DEFAULT_SPEC, FACTORS
from diagnose.ablation.seeding import SeedPlan
from diagnose.config import DataConfig, RunConfig, TrainConfig
from diagnose.errors import ConfigError
from models.config import MemN2NConfig, apply_overrides, preset

__all__ = ["FACTORS", "DEFAULT_LEVELS", "MAX_SEEDS", "Spec", "Variant", "RunTask", "load_spec", "default_spec",
           "run_id"]

# Seeds a spec may ask for: an interval over n seeds narrows as 1/sqrt(n), so 1000
# already puts it at ~0.03 of one seed's spread; more only multiplies the runs.
MAX_SEEDS = 1000

_SECTIONS = {"study": {"name", "bases", "seeds", "max_seeds"}, "budget": {"steps", "epochs"},
             "corpus": {"synthetic", "path", "context", "tokens", "max_vocab"},
             "sizes": {"memory_size", "embed_dim", "hops", "batch_size"}, "model": None, "train": None,
             "factors": None, "combos": None}


@dataclass(frozen=True)
class Variant:
    """One model configuration of the study: a base preset with factors switched (usually one)."""

    name: str  # "paper", "as-posted | output=softmax", "as-posted | loss_reduction=sum + temporal=ones"
    base: str
    factor: str | None = None  # the single switched factor (None for a base or a combination)
    level: str | None = None
    switches: tuple = ()  # ((factor, level), ...) in the order applied
    level_of: tuple = ()  # the other bases whose own setting this single switch adopts


@dataclass(frozen=True)
class RunTask:
    """One training run: a variant at one seed, with its resolved config and stable id.

    ``group`` names the compiled steps the run can share with others (runs of one
    group go to a worker together; None: the run trains alone).
    """

    run_id: str
    variant: Variant
    seed: int
    config: RunConfig  # anything with to_dict(): what the kind's trainer takes
    group: str | None = None
    kind: str = "memn2n"  # the training path a worker dispatches to (executors.TRAINERS)


@dataclass(frozen=True)
class Spec:
    """A validated ablation spec (see the module docstring)."""

    raw: dict  # the spec as given, defaults filled in: written to the manifest (follow-ups never change it)
    name: str
    bases: tuple[str, ...]
    seeds: tuple[int, ...]
    factors: dict[str, tuple[str, ...]]
    data: DataConfig
    train: TrainConfig
    sizes: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # [model]: fields set on every base
    custom: dict = field(default_factory=dict)  # the user's own factors: {factor: {level: settings}}
    combos: tuple = ()  # ((base, ((factor, level), ...)), ...): variants with several switches

    @property
    def digest(self) -> str:
        """16 hex digits of a hash of :attr:`raw`: two specs with one digest are one study."""
        return spec_digest(self.raw)

    def base_config(self, base: str) -> MemN2NConfig:
        """The base preset at the spec's sizes (as-posted keeps its one hop fewer), then [model]."""
        sizes = dict(self.sizes)
        cfg = preset(base)
        if "hops" in sizes and base == "as-posted":
            sizes["hops"] = max(1, sizes["hops"] - 1)
        return apply_overrides(cfg, {**sizes, **self.model})

    def level_settings(self, factor: str, level: str) -> dict:
        if factor in self.custom:
            return dict(self.custom[factor][level])
        settings = dict(FACTORS[factor][level])
        if factor == "hops":
            settings["hops"] = max(1, self.sizes.get("hops", preset("paper").hops) + settings["hops"])
        return settings

    def variants(self) -> list[tuple[Variant, MemN2NConfig]]:
        """Every base, then each single-factor counterfactual that changes something."""
        out, seen = [], set()
        for base in self.bases:
            cfg = self.base_config(base)
            out.append((Variant(base, base), cfg))
            seen.add((base, _key(cfg)))
        bases = {b: self.base_config(b) for b in self.bases}
        for base in self.bases:
            cfg = bases[base]
            for factor, levels in self.factors.items():
                for level in levels:
                    settings = self.level_settings(factor, level)
                    changed = apply_overrides(cfg, settings)
                    if changed == cfg or (base, _key(changed)) in seen:
                        continue
                    seen.add((base, _key(changed)))
                    # Which other base already has this level: the switch that moves
                    # one base to the other's choice, the only one a verdict blames.
                    level_of = tuple(b for b, other in bases.items()
                                     if b != base and apply_overrides(other, settings) == other)
                    out.append((Variant(f"{base} | {factor}={level}", base, factor, level, ((factor, level),),
                                        level_of), changed))
        for base, switches in self.combos:
            out.append(self.combination(base, switches))
        return out

    def combination(self, base: str, switches) -> tuple[Variant, MemN2NConfig]:
        """The base with several factors switched together (a contrast or a follow-up run)."""
        cfg = self.base_config(base)
        for factor, level in switches:
            cfg = apply_overrides(cfg, self.level_settings(factor, level))
        name = f"{base} | " + " + ".join(f"{f}={lv}" for f, lv in switches)
        return Variant(name, base, None, None, tuple(switches)), cfg

    def prepare(self, plan: SeedPlan | None = None) -> tuple[list[RunTask], dict]:
        """Every run of the study (``plan``: as :meth:`tasks`) and what the manifest records about its data.

        Loads the corpus, so a bad one is an error before anything runs.
        """
        from diagnose.data.load import load_corpus

        memory = max(m.memory_size for _, m in self.variants())
        corpus = load_corpus(self.data, memory_size=memory)
        return self.tasks(corpus.vocab_size, plan), {"corpus": corpus.stats | {"name": corpus.name}}

    def tasks(self, vocab_size: int, plan: SeedPlan | None = None) -> list[RunTask]:
        """Every run of the study, variants in order, seeds inner, resolved for the corpus's vocabulary.

        Args:
            vocab_size: the corpus's.
            plan: more seeds for some variants (a study's adaptive seeds); None: the spec's seeds.
        """
        from diagnose.ablation.memn2n_jobs import group_of

        plan = plan or SeedPlan()
        tasks = []
        for variant, model in self.variants():
            model = dataclasses.replace(model, vocab_size=vocab_size)
            for seed in plan.seeds_for(variant.name, self.seeds):
                cfg = RunConfig(model=model, data=self.data, train=dataclasses.replace(self.train, seed=seed))
                tasks.append(RunTask(run_id(cfg), variant, seed, cfg, group_of(cfg)))
        return tasks


def spec_digest(raw: dict) -> str:
    """The digest of a resolved spec (a Spec's ``raw``, as a study's manifest keeps it)."""
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _key(cfg: MemN2NConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def run_id(config: RunConfig) -> str:
    """A stable id: the first 16 hex digits of SHA-256 over the resolved config (seed included)."""
    blob = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def default_spec() -> Spec:
    """The default study on the embedded synthetic corpus."""
    return build_spec({})


def load_spec(path: str | Path | None, overrides: dict | None = None, *, raw: dict | None = None) -> Spec:
    """Reads and validates a TOML spec (None: ``raw``, else the default study); ``overrides`` win.

    Args:
        path: a TOML file, or None.
        overrides: ``{section: {key: value}}`` from CLI options.
        raw: the spec to start from when ``path`` is None (a study's manifest's, to resume it).

    Raises:
        ConfigError: unreadable TOML, unknown section/key/factor/level, wrong type
            or impossible size, in one line naming the valid choices.
    """
    raw = json.loads(json.dumps(raw or {}))  # a deep copy: overrides must not touch the caller's
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"spec file '{path}' does not exist; pass a TOML file or no spec for the default study")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"spec file '{path}' is not valid TOML ({str(exc).splitlines()[0]})") from None
    for section, values in (overrides or {}).items():
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"spec section [{section}] must be a table")
        raw[section].update(values)
    if "synthetic" in (overrides or {}).get("corpus", {}):
        raw["corpus"].pop("path", None)  # the command line's corpus replaces the spec's
    return build_spec(raw)


def build_spec(raw: dict) -> Spec:
    """Validates a spec dict against the defaults and resolves it."""
    for section in raw:
        if section not in _SECTIONS:
            raise ConfigError(f"unknown spec section [{section}]; valid sections: {', '.join(_SECTIONS)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"spec section [{section}] must be a table")
        allowed = _SECTIONS[section]
        for key in raw[section]:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"unknown key '{key}' in [{section}]; valid keys: {', '.join(sorted(allowed))}")
    merged = {s: dict(DEFAULT_SPEC.get(s, {})) for s in _SECTIONS}
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

    study = merged["study"]
    if not studydir.plain_name(study.get("name")):
        raise ConfigError(f"[study] name={study.get('name')!r} must be a plain name (letters, digits, '.', '_', '-'; "
                          "not '.' or '..'): it names the directory ablations/<name>")
    bases = study.get("bases")
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError("[study] bases must be a non-empty list of presets, e.g. [\"as-posted\", \"paper\"]")
    for base in bases:
        try:
            preset(base)
        except ValueError as exc:
            raise ConfigError(f"[study] bases: {exc}") from None
    seeds = study.get("seeds")
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or isinstance(seeds, list) and seeds
                                       and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                               for s in seeds)):
        raise ConfigError(f"[study] seeds must be a positive count or a list of non-negative integers, got {seeds!r}")
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(dict.fromkeys(seeds))
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"[study] seeds: {len(seeds)} seeds is more than {MAX_SEEDS}; an interval over seeds "
                          f"narrows as 1/sqrt(n), so {MAX_SEEDS} already put it at ~0.03 of one seed's spread: "
                          "ask for fewer")

    max_seeds = study.get("max_seeds")
    if max_seeds is not None and (not isinstance(max_seeds, int) or isinstance(max_seeds, bool)
                                  or not 1 <= max_seeds <= MAX_SEEDS):
        raise ConfigError(f"[study] max_seeds must be a count from 1 to {MAX_SEEDS} (the most seeds adaptive seeding "
                          f"gives a variant), got {max_seeds!r}")

    factors: dict[str, tuple[str, ...]] = {}
    custom: dict[str, dict[str, dict]] = {}
    for name, levels in merged["factors"].items():
        if isinstance(levels, dict):  # a factor of the user's own: {level = {field = value}}
            if name in FACTORS:
                raise ConfigError(f"factor '{name}' is built in; give it a list of levels, not a table")
            if not levels or not all(isinstance(v, dict) and v for v in levels.values()):
                raise ConfigError(f"custom factor '{name}' needs levels like {name} = "
                                  "{high = {learning_rate = 0.1}}")
            for level, settings in levels.items():
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

    sizes = merged["sizes"]
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"[sizes] {key} must be a positive integer, got {value!r}")

    budget = merged["budget"]
    steps, epochs = budget.get("steps"), budget.get("epochs")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ConfigError(f"[budget] steps must be a positive integer, got {steps!r}")
    if steps is None and (not isinstance(epochs, (int, float)) or isinstance(epochs, bool)
                          or not 0 < epochs < math.inf):
        raise ConfigError(f"[budget] needs a positive steps or epochs, got {budget!r}")

    corpus = merged["corpus"]
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

    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key in merged["train"]:
        if key not in train_fields or key in ("seed", "steps", "epochs"):
            valid = sorted(k for k in train_fields if k not in ("seed", "steps", "epochs"))
            raise ConfigError(f"unknown key '{key}' in [train]; valid keys: {', '.join(valid)}")
    train = dataclasses.replace(TrainConfig(), steps=steps, epochs=epochs if steps is None else None,
                                **merged["train"])
    try:
        train.validate()
    except ConfigError as exc:
        section = "budget" if str(exc).startswith(("steps", "give a positive")) else "train"
        raise ConfigError(f"[{section}] {exc}") from None

    combos = []
    for label, entry in merged["combos"].items():
        if not isinstance(entry, dict) or entry.get("base") not in bases:
            raise ConfigError(f"combo '{label}' needs base = one of {', '.join(bases)} and factor = level pairs")
        switches = []
        for factor, level in entry.items():
            if factor == "base":
                continue
            if factor not in factors and factor not in FACTORS:
                raise ConfigError(f"combo '{label}': unknown factor '{factor}'; valid factors: "
                                  f"{', '.join(list(FACTORS) + list(custom))}")
            levels = custom[factor] if factor in custom else FACTORS[factor]
            if level not in levels:
                raise ConfigError(f"combo '{label}': unknown level '{level}' of '{factor}'; valid levels: "
                                  f"{', '.join(levels)}")
            switches.append((factor, level))
        combos.append((entry["base"], tuple(switches)))
    model = merged["model"]
    try:
        apply_overrides(preset("paper"), model)
    except ValueError as exc:
        raise ConfigError(f"[model] {exc}") from None
    spec = Spec(raw=merged, name=str(study.get("name", "study")), bases=tuple(bases), seeds=seeds,
                factors=factors, data=data, train=train, sizes=dict(sizes), model=dict(model), custom=custom,
                combos=tuple(combos))
    try:
        spec.variants()  # every combination must make a valid config
    except ValueError as exc:
        raise ConfigError(f"spec gives an invalid model: {exc}") from None
    return spec

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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from diagnose.memn2n.factors import DEFAULT_LEVELS, FACTORS
from diagnose.ablation.seeding import SeedPlan
from diagnose.memn2n.spec_check import (MAX_SEEDS, check_budget, check_combos, check_corpus,
                                          check_factors, check_model, check_sizes, check_study, check_train,
                                          merged_with_defaults)
from diagnose.memn2n.config import DataConfig, RunConfig, TrainConfig
from diagnose.errors import ConfigError
from diagnose.models.config import MemN2NConfig, apply_overrides, preset

__all__ = ["FACTORS", "DEFAULT_LEVELS", "MAX_SEEDS", "Spec", "Variant", "RunTask", "load_spec", "default_spec",
           "run_id"]


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
        from diagnose.memn2n.data.load import load_corpus

        from diagnose.limits import check_run

        memory = max(m.memory_size for _, m in self.variants())
        corpus = load_corpus(self.data, memory_size=memory)
        tasks = self.tasks(corpus.vocab_size, plan)
        for task in {t.variant.name: t for t in tasks}.values():  # a budget or sizes the machine cannot take
            try:
                check_run(task.config, corpus.num_windows("train"))
            except ConfigError as exc:
                raise ConfigError(f"variant '{task.variant.name}': {exc}") from None
        return tasks, {"corpus": corpus.stats | {"name": corpus.name}}

    def tasks(self, vocab_size: int, plan: SeedPlan | None = None) -> list[RunTask]:
        """Every run of the study, variants in order, seeds inner, resolved for the corpus's vocabulary.

        Args:
            vocab_size: the corpus's.
            plan: more seeds for some variants (a study's adaptive seeds); None: the spec's seeds.
        """
        from diagnose.memn2n.jobs import group_of

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
    """Validates a spec dict against the defaults and resolves it (each section: :mod:`spec_check`)."""
    merged = merged_with_defaults(raw)
    study = merged["study"]
    bases, seeds = check_study(study)
    factors, custom = check_factors(merged)
    check_sizes(merged["sizes"])
    steps, epochs = check_budget(merged["budget"])
    data = check_corpus(merged["corpus"])
    train = check_train(merged["train"], steps, epochs)
    combos = check_combos(merged["combos"], bases, factors, custom)
    check_model(merged["model"])
    spec = Spec(raw=merged, name=str(study.get("name", "study")), bases=tuple(bases), seeds=seeds,
                factors=factors, data=data, train=train, sizes=dict(merged["sizes"]), model=dict(merged["model"]),
                custom=custom, combos=tuple(combos))
    try:
        spec.variants()  # every combination must make a valid config
    except ValueError as exc:
        raise ConfigError(f"spec gives an invalid model: {exc}") from None
    return spec

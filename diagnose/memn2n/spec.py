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
import json
from dataclasses import dataclass, field
from pathlib import Path

from diagnose.ablation.schema import MAX_SEEDS, read_spec
from diagnose.ablation.seeding import SeedPlan
from diagnose.ablation.variants import RunTask, Variant, combination, expand, run_id, spec_digest
from diagnose.errors import ConfigError
from diagnose.memn2n import require_tensorflow
from diagnose.limits import check_run
from diagnose.memn2n.data.load import load_corpus
from diagnose.memn2n.factors import DEFAULT_LEVELS, FACTORS
from diagnose.memn2n.jobs import TRAINER, group_of
from diagnose.memn2n.spec_check import (check_budget, check_combos, check_corpus, check_factors, check_model,
                                        check_sizes, check_study, check_train, merged_with_defaults)
from diagnose.memn2n.config import DataConfig, RunConfig, TrainConfig
from diagnose.models.config import MemN2NConfig, apply_overrides, preset

__all__ = ["FACTORS", "DEFAULT_LEVELS", "MAX_SEEDS", "Spec", "Variant", "RunTask", "load_spec", "default_spec",
           "build_spec", "run_id"]


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

    def _expanded(self) -> tuple[dict, dict]:
        bases = {b: self.base_config(b) for b in self.bases}
        factors = {f: {lv: self.level_settings(f, lv) for lv in levels} for f, levels in self.factors.items()}
        return bases, factors

    def variants(self) -> list[tuple[Variant, MemN2NConfig]]:
        """Every base, then each single-factor counterfactual that changes something, then the combos
        (:func:`diagnose.ablation.variants.expand`)."""
        bases, factors = self._expanded()
        return expand(bases, factors, self.combos, apply_overrides, _key, self.level_settings)

    def combination(self, base: str, switches) -> tuple[Variant, MemN2NConfig]:
        """The base with several factors switched together (a contrast or a follow-up run)."""
        return combination(self.base_config(base), base, switches, self.level_settings, apply_overrides)

    def prepare(self, plan: SeedPlan | None = None) -> tuple[list[RunTask], dict]:
        """Every run of the study (``plan``: as :meth:`tasks`) and what the manifest records about its data.

        Loads the corpus, so a bad one is an error before anything runs.
        """
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
        plan = plan or SeedPlan()
        tasks = []
        for variant, model in self.variants():
            model = dataclasses.replace(model, vocab_size=vocab_size)
            for seed in plan.seeds_for(variant.name, self.seeds):
                cfg = RunConfig(model=model, data=self.data, train=dataclasses.replace(self.train, seed=seed))
                tasks.append(RunTask(run_id(cfg), variant, seed, cfg, group_of(cfg), TRAINER))
        return tasks


def _key(cfg: MemN2NConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


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
        DiagnoseError: Keras runs on another backend than TensorFlow.
    """
    raw = read_spec(path, raw)
    for section, values in (overrides or {}).items():
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"spec section [{section}] must be a table")
        raw[section].update(values)
    if "synthetic" in (overrides or {}).get("corpus", {}):
        raw["corpus"].pop("path", None)  # the command line's corpus replaces the spec's
    spec = build_spec(raw)
    require_tensorflow()  # (after the spec's own checks: a bad spec is named before TensorFlow loads)
    return spec


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

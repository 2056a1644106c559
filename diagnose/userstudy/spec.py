"""A study of the user's own Keras model: bases and factors as settings of a model-building function.

A spec is TOML (or the same dict from Python, :func:`diagnose.study`)::

    [study]
    name = "mine"                         # the directory ablations/<name>
    builder = "mypkg.model:build"         # build(settings) -> a compiled keras.Model
    data = "mypkg.model:data"             # data(settings) or data() -> (train, valid), see userstudy.data
    seeds = 3                             # a count (0..n-1) or a list of seeds
    max_seeds = 12                        # seeds added where an interval stays inconclusive, up to this many
    reference = "fixed"                   # optional: the base that works; the other one is the faulty one

    [fit]                                 # model.fit arguments for every run
    epochs = 6
    batch_size = 32

    [monitor]                             # diagnose.Monitor arguments: log_every, probe_every
    log_every = 20

    [bases.as-posted]                     # each base: the settings passed to build and data
    output = "relu"
    [bases.fixed]
    output = "softmax"

    [factors]
    output = ["softmax", "relu"]          # levels are values of the setting of the same name
    lr = {low = {learning_rate = 0.005}, high = {learning_rate = 0.5}}   # or named sets of settings

    [combos]                              # several switches at once
    "softmax, low lr" = {base = "as-posted", output = "softmax", lr = "low"}

A level may also carry ``changes``: mechanical changes applied to the built model
(:mod:`diagnose.userstudy.transforms`), which is how a proof tests a finding's fix
without the builder knowing about it. As in the built-in study, each level that
changes a base is that base with the factor alone switched; the verdict is the gap
between the two bases when ``reference`` names one, else each switch's effect.
Where an interval stays inconclusive, the study adds seeds to the variants it
compares, up to ``max_seeds``, as the built-in study does
(:mod:`diagnose.ablation.seeding`).
Every run builds the model and fits it after ``keras.utils.set_random_seed(seed)``,
instrumented by ``diagnose.instrument`` and ``diagnose.Monitor``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from diagnose import studydir
from diagnose.ablation.seeding import SeedPlan
from diagnose.ablation.spec import RunTask, Variant, run_id, spec_digest
from diagnose.ablation.spec_check import check_seeds, combo_entries
from diagnose.errors import ConfigError
from diagnose.limits import check_name
from diagnose.userstudy import refs

__all__ = ["Level", "UserRunConfig", "KerasSpec", "build_keras_spec", "is_keras_spec", "load_study_spec"]

_SECTIONS = {"study": {"name", "builder", "data", "seeds", "max_seeds", "reference"}, "fit": None, "monitor": None,
             "bases": None, "factors": None, "combos": None, "proof": None}
# [fit] keys and their checks: positive integers, except shuffle.
_FIT = {"epochs": int, "batch_size": int, "steps_per_epoch": int, "validation_batch_size": int, "shuffle": bool}
_MONITOR = {"log_every": int, "probe_every": int, "tensorboard": bool}
# A run's own record is all a study keeps: TensorBoard files would double its size for nothing.
_MONITOR_DEFAULTS = {"tensorboard": False}


@dataclass(frozen=True)
class Level:
    """What a base or a factor's level sets: settings for the builder, and mechanical changes."""

    settings: dict = field(default_factory=dict)
    changes: tuple = ()  # ({"op": ..., **params}, ...), applied in order to the built model

    def then(self, other: "Level") -> "Level":
        """This level with ``other`` applied over it."""
        return Level({**self.settings, **other.settings}, self.changes + tuple(c for c in other.changes
                                                                                if c not in self.changes))

    def key(self) -> str:
        return json.dumps({"settings": self.settings, "changes": list(self.changes)}, sort_keys=True)


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


@dataclass(frozen=True)
class KerasSpec:
    """A validated user study (see the module docstring); the harness runs it as it runs a :class:`Spec`."""

    raw: dict
    name: str
    builder: str
    data: str
    bases: dict  # name -> Level, in order
    seeds: tuple[int, ...]
    factors: dict  # factor -> {level: Level}
    fit: dict = field(default_factory=dict)
    monitor: dict = field(default_factory=dict)
    reference: str | None = None
    combos: tuple = ()  # ((base, ((factor, level), ...)), ...)
    about: dict = field(default_factory=dict)  # more for the manifest: a proof study's plan ([proof])

    kind = "keras"

    @property
    def digest(self) -> str:
        return spec_digest(self.raw)

    @property
    def faulty(self) -> str | None:
        """The base that is not the reference, when the study compares two."""
        if self.reference is None:
            return None
        return next(b for b in self.bases if b != self.reference)

    def variants(self) -> list[tuple[Variant, Level]]:
        """Every base, then each single-factor switch that changes it, then the combinations."""
        out, seen = [], set()
        for base, level in self.bases.items():
            out.append((Variant(base, base), level))
            seen.add((base, level.key()))
        for base, level in self.bases.items():
            for factor, levels in self.factors.items():
                for name, switch in levels.items():
                    changed = level.then(switch)
                    if changed == level or (base, changed.key()) in seen:
                        continue
                    seen.add((base, changed.key()))
                    level_of = tuple(b for b, other in self.bases.items() if b != base and other.then(switch) == other)
                    out.append((Variant(f"{base} | {factor}={name}", base, factor, name, ((factor, name),), level_of),
                                changed))
        for base, switches in self.combos:
            out.append(self.combination(base, switches))
        return out

    def combination(self, base: str, switches) -> tuple[Variant, Level]:
        level = self.bases[base]
        for factor, name in switches:
            level = level.then(self.factors[factor][name])
        label = f"{base} | " + " + ".join(f"{f}={lv}" for f, lv in switches)
        return Variant(label, base, None, None, tuple(switches)), level

    def tasks(self, plan: SeedPlan | None = None) -> list[RunTask]:
        """Every run, variants in order, seeds inner (``plan``: more seeds for some variants)."""
        plan = plan or SeedPlan()
        tasks = []
        for variant, level in self.variants():
            for seed in plan.seeds_for(variant.name, self.seeds):
                config = UserRunConfig(self.builder, self.data, level.settings, level.changes, self.fit,
                                       self.monitor, seed)
                tasks.append(RunTask(run_id(config), variant, seed, config, config.group(), kind="keras"))
        return tasks

    def prepare(self, plan: SeedPlan | None = None) -> tuple[list[RunTask], dict]:
        """Every run (``plan``: as :meth:`tasks`), and what the manifest records; the builder and data must
        import (else one line)."""
        from diagnose._tf import import_tensorflow_quietly

        import_tensorflow_quietly()  # the user's modules import keras: without TF's start-up chatter
        refs.resolve(self.builder, "builder")
        refs.resolve(self.data, "data")
        about = {"corpus": {"name": f"data from {self.data}"}, "model": {"builder": self.builder, "data": self.data}}
        if self.reference is not None:
            about.update(faulty=self.faulty, reference=self.reference)
        return self.tasks(plan), about | self.about

    @property
    def local(self) -> bool:
        """True when the builder or data function exists only in this process (runs must train here)."""
        return refs.needs_this_process(self.builder) or refs.needs_this_process(self.data)


def is_keras_spec(raw: dict) -> bool:
    """True for a spec of the user's own model (its [study] names a builder)."""
    return isinstance(raw.get("study"), dict) and "builder" in raw["study"]


def load_study_spec(path: str | Path | None, overrides: dict | None = None, *, raw: dict | None = None):
    """A spec from TOML (or ``raw``): a :class:`KerasSpec` when it names a builder, else the built-in study's.

    Raises:
        ConfigError: unreadable TOML, or anything :func:`build_keras_spec` refuses.
    """
    from diagnose.ablation.spec import load_spec

    data = json.loads(json.dumps(raw or {}))
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"spec file '{path}' does not exist; pass a TOML file or no spec for the default study")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"spec file '{path}' is not valid TOML ({str(exc).splitlines()[0]})") from None
    if not is_keras_spec(data):
        return load_spec(path, overrides, raw=raw)
    for section, values in (overrides or {}).items():
        if section != "study":
            option = {"budget": "--steps", "corpus": "--corpus/--synthetic"}.get(section, section)
            raise ConfigError(f"{option} is for the built-in model's studies; a study of your model sets its "
                              "budget in [fit] (epochs) and its data in its data function")
        data.setdefault("study", {}).update(values)
    return build_keras_spec(data)


def _level(value, where: str) -> Level:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of settings, e.g. {{learning_rate = 0.01}}")
    settings = {k: v for k, v in value.items() if k != "changes"}
    changes = value.get("changes", [])
    if not isinstance(changes, list) or not all(isinstance(c, dict) and isinstance(c.get("op"), str)
                                                for c in changes):
        raise ConfigError(f"{where}: changes must be a list of tables with an op, e.g. "
                          "[{op = \"learning_rate\", factor = 0.1}]")
    from diagnose.userstudy.transforms import OPS

    for change in changes:
        if change["op"] not in OPS:
            raise ConfigError(f"{where}: unknown change op {change['op']!r}; valid ops: {', '.join(OPS)}")
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: settings must be JSON values (numbers, strings, lists, tables)") from None
    return Level(dict(settings), tuple(dict(c) for c in changes))


def _checked(section: str, values: dict, kinds: dict) -> dict:
    for key, value in values.items():
        kind = kinds.get(key)
        if kind is None and (section, key) == ("fit", "validation_split"):
            raise ConfigError("[fit] validation_split is not taken: a study's validation data comes from its data "
                              "function; return (train, valid) from data(), e.g. split with x[:n], x[n:]")
        if kind is None:
            raise ConfigError(f"unknown key '{key}' in [{section}]; valid keys: {', '.join(sorted(kinds))}")
        if kind is bool and not isinstance(value, bool) or kind is int and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"[{section}] {key} must be {'true or false' if kind is bool else 'a positive integer'}, "
                              f"got {value!r}")
    return dict(values)


def build_keras_spec(raw: dict) -> KerasSpec:
    """Validates a user-study spec dict (see the module docstring) and resolves it.

    Raises:
        ConfigError: an unknown section or key, a missing builder or data, a bad
            reference, seed, level or combination, in one line naming the valid choices.
    """
    raw = json.loads(json.dumps(raw))
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown spec section [{section}]; a study of your model has "
                              f"{', '.join(f'[{s}]' for s in _SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"spec section [{section}] must be a table")
        allowed = _SECTIONS[section]
        for key in values:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"unknown key '{key}' in [{section}]; valid keys: {', '.join(sorted(allowed))}")
    study = raw.setdefault("study", {})
    for key in ("builder", "data"):
        if not refs.is_ref(study.get(key)):
            raise ConfigError(f"[study] {key} must be 'package.module:function', got {study.get(key)!r}")
    name = study.setdefault("name", re.sub(r"[^\w.-]", "_", study["builder"].rsplit(":", 1)[-1].split(".")[-1]))
    if not studydir.plain_name(name):
        raise ConfigError(f"[study] name={name!r} must be a plain name (letters, digits, '.', '_', '-'; not '.' or "
                          "'..'): it names the directory ablations/<name>")
    check_name("[study] name", name)
    seeds = study.setdefault("seeds", 3)
    seeds = check_seeds(seeds, study.get("max_seeds"))
    bases = {str(b): _level(v, f"[bases.{b}]") for b, v in (raw.get("bases") or {"model": {}}).items()}
    for base in bases:
        if not studydir.plain_name(base):
            raise ConfigError(f"base name {base!r} must be a plain name (letters, digits, '.', '_', '-')")
        check_name("base name", base)
    reference = study.get("reference")
    if reference is not None and (reference not in bases or len(bases) != 2):
        raise ConfigError(f"[study] reference={reference!r} must name one of exactly two bases (here: "
                          f"{', '.join(bases)}); the other is the faulty one")
    factors: dict = {}
    for factor, levels in (raw.get("factors") or {}).items():
        check_name("factor", factor)
        for level in (levels if isinstance(levels, (list, dict)) else ()):
            check_name(f"factor '{factor}' level", str(level))
        if isinstance(levels, list) and levels:
            factors[factor] = {str(v): Level({factor: v}) for v in levels}
            for v in levels:
                _level({factor: v}, f"factor '{factor}'")
        elif isinstance(levels, dict) and levels:
            factors[factor] = {str(lv): _level(v, f"factor '{factor}', level '{lv}'") for lv, v in levels.items()}
        else:
            raise ConfigError(f"factor '{factor}' needs levels: a list of values ({factor} = [1, 2]) or a table of "
                              f"named settings ({factor} = {{low = {{{factor} = 1}}}})")
    def switch(label: str, factor: str, level) -> tuple:
        if factor not in factors or str(level) not in factors[factor]:
            valid = ", ".join(f"{f}={lv}" for f, lvs in factors.items() for lv in lvs)
            raise ConfigError(f"combo '{label}': {factor}={level} is not a factor's level; valid: {valid}")
        return factor, str(level)

    combos = combo_entries(raw.get("combos") or {}, bases, switch)
    fit = _checked("fit", raw.get("fit") or {}, _FIT)
    monitor = _MONITOR_DEFAULTS | _checked("monitor", raw.get("monitor") or {}, _MONITOR)
    if not all(math.isfinite(v) for v in fit.values() if isinstance(v, (int, float))):
        raise ConfigError("[fit] values must be finite")
    about = {"proof": raw["proof"]} if raw.get("proof") else {}  # written by diagnose.userstudy.prove
    return KerasSpec(raw=raw, name=name, builder=study["builder"], data=study["data"], bases=bases, seeds=seeds,
                     factors=factors, fit=fit, monitor=monitor, reference=reference, combos=tuple(combos),
                     about=about)

"""A study spec's schema and its one loader, for both kinds of study.

A spec is TOML (or the same dict from Python). Two kinds share it: the built-in
MemN2N's studies (:mod:`diagnose.memn2n.spec`), whose ``[study]`` names model
presets as ``bases``, and a study of the user's own model
(:mod:`diagnose.userstudy.spec`), whose ``[study]`` names a ``builder`` and a
``data`` function. What both have is declared here once: ``[study] name``,
``seeds`` and ``max_seeds``, factor names, ``[combos]``, and how a table is
checked. Each kind declares its sections as tables (:class:`~diagnose.tables.Table`,
pydantic: unknown keys refused, types strict), and :func:`diagnose.tables.validate`
turns the first problem into one line naming the key and the fix.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Callable

from diagnose import studydir
from diagnose.errors import ConfigError
from diagnose.findings.verdict_plan import DEFAULT_MAX_SEEDS
from diagnose.limits import MAX_SEED, check_name
from diagnose.tables import Table

__all__ = ["StudyTable", "MAX_SEEDS", "read_spec", "check_study_name", "check_seeds", "combo_entries"]

# Seeds a spec may ask for: an interval over n seeds narrows as 1/sqrt(n), so 1000
# already puts it at ~0.03 of one seed's spread; more only multiplies the runs.
MAX_SEEDS = 1000


class StudyTable(Table):
    """``[study]`` keys every kind of study has (checked by :func:`check_study_name` and :func:`check_seeds`)."""

    name: Any = None
    seeds: Any = None
    max_seeds: Any = None


def read_spec(path: str | Path | None, raw: dict | None = None) -> dict:
    """The spec in the TOML file ``path`` (None: a deep copy of ``raw``, or the default study's empty spec).

    Raises:
        ConfigError: the file is missing or not TOML, in one line.
    """
    if path is None:
        return json.loads(json.dumps(raw or {}))  # a deep copy: overrides must not touch the caller's
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"spec file '{path}' does not exist; pass a TOML file or no spec for the default study")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"spec file '{path}' is not valid TOML ({str(exc).splitlines()[0]})") from None


def check_study_name(name) -> str:
    """[study] name: a plain name short enough to name a directory."""
    if not studydir.plain_name(name):
        raise ConfigError(f"[study] name={name!r} must be a plain name (letters, digits, '.', '_', '-'; "
                          "not '.' or '..'): it names the directory ablations/<name>")
    check_name("[study] name", name)
    return name


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
    # Seeds added where an interval stays inconclusive continue after the largest one.
    last = max(seeds) + max(0, (max_seeds or DEFAULT_MAX_SEEDS) - len(seeds))
    if last > MAX_SEED:
        raise ConfigError(f"[study] seeds: {max(seeds)} (with the seeds added after it, up to {last}) is outside the "
                          f"seeds numpy and Keras take (0 to 2**32 - 1 = {MAX_SEED}); give smaller seeds")
    return tuple(seeds)


def combo_entries(combos_raw: dict, bases, switch: Callable[[str, str, Any], tuple]) -> list[tuple]:
    """[combos] of any study: (base, ((factor, level), ...)) each, every pair checked by
    ``switch(label, factor, level) -> (factor, level)``, which raises ConfigError."""
    combos = []
    for label, entry in combos_raw.items():
        if not isinstance(entry, dict) or entry.get("base") not in bases:
            raise ConfigError(f"combo '{label}' needs base = one of {', '.join(bases)} and factor = level pairs")
        switches = tuple(switch(label, factor, level) for factor, level in entry.items() if factor != "base")
        combos.append((entry["base"], switches))
    return combos

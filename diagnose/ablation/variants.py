"""A study's variants and runs, whichever model it trains: one algorithm for every kind of study.

Every base is a variant; then, for every base and every factor, each level whose
settings change the base is one counterfactual: the base with that factor alone
switched; then the combinations a spec (or a verdict's follow-ups) asks for. What a
base and a level are differs by kind (a MemN2N config and its field overrides, a
user's settings and changes); the kind passes ``apply(base, level) -> switched``,
and equality of the results says whether a switch changes anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Variant", "RunTask", "expand", "combination", "run_id", "spec_digest"]


@dataclass(frozen=True)
class Variant:
    """One model configuration of the study: a base with factors switched (usually one)."""

    name: str  # "paper", "as-posted | output=softmax", "as-posted | loss_reduction=sum + temporal=ones"
    base: str
    factor: str | None = None  # the single switched factor (None for a base or a combination)
    level: str | None = None
    switches: tuple = ()  # ((factor, level), ...) in the order applied
    level_of: tuple = ()  # the other bases whose own setting this single switch adopts


@dataclass(frozen=True)
class RunTask:
    """One training run: a variant at one seed, with its resolved config, stable id and trainer.

    ``group`` names the compiled steps the run can share with others (runs of one
    group go to a worker together; None: the run trains alone). ``trainer`` is the
    study's :class:`~diagnose.ablation.trainer.Trainer`, which a worker calls with
    ``config.to_dict()``.
    """

    run_id: str
    variant: Variant
    seed: int
    config: Any  # anything with to_dict(): what the trainer takes
    group: str | None
    trainer: Any


def expand(bases: Mapping[str, Any], factors: Mapping[str, Mapping[str, Any]], combos,
           apply: Callable[[Any, Any], Any], key: Callable[[Any], str],
           settings: Callable[[str, str], Any] | None = None) -> list[tuple[Variant, Any]]:
    """Every base, then each single-factor switch that changes its base, then the combinations.

    Args:
        bases: base name -> its configuration, in order.
        factors: factor -> {level name: what the level sets}, in order.
        combos: ``((base, ((factor, level), ...)), ...)``.
        apply: ``apply(config, level) -> config`` with the level's settings switched on.
        key: a string equal for equal configurations (a switch landing on one already
            listed for the same base is not listed again).
        settings: ``settings(factor, level)`` for a combination's switches (default: from
            ``factors``; a kind whose combinations may name levels its spec does not vary passes its own).
    """
    out, seen = [], set()
    for base, config in bases.items():
        out.append((Variant(base, base), config))
        seen.add((base, key(config)))
    for base, config in bases.items():
        for factor, levels in factors.items():
            for level, switch in levels.items():
                changed = apply(config, switch)
                if changed == config or (base, key(changed)) in seen:
                    continue
                seen.add((base, key(changed)))
                # Which other base already has this level: the switch that moves
                # one base to the other's choice, the only one a verdict blames.
                level_of = tuple(b for b, other in bases.items() if b != base and apply(other, switch) == other)
                out.append((Variant(f"{base} | {factor}={level}", base, factor, level, ((factor, level),), level_of),
                            changed))
    settings = settings or (lambda factor, level: factors[factor][level])
    for base, switches in combos:
        out.append(combination(bases[base], base, switches, settings, apply))
    return out


def combination(config, base: str, switches, settings: Callable[[str, str], Any],
                apply: Callable[[Any, Any], Any]) -> tuple[Variant, Any]:
    """The base's ``config`` with several factors switched together, in order (a contrast or a follow-up run)."""
    for factor, level in switches:
        config = apply(config, settings(factor, level))
    name = f"{base} | " + " + ".join(f"{f}={lv}" for f, lv in switches)
    return Variant(name, base, None, None, tuple(switches)), config


def run_id(config) -> str:
    """A stable id: the first 16 hex digits of SHA-256 over the resolved config (seed included)."""
    blob = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def spec_digest(raw: dict) -> str:
    """16 hex digits of a hash of a resolved spec (as a study's manifest keeps it): equal, one study."""
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

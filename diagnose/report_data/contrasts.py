"""What a study's variants say when set side by side: interactions and one section per suspect.

Both are read from the variants' switches alone (the manifest), never from model
names, so a study of a user's own model and factors gets the same sections.

* An interaction: a combination of switches with every subset of it that ran
  (neither, A, B, both for a pair), so a reader sees why no single switch works.
* A suspect: a factor the study varies. Its *contexts* are the sets of variants
  that differ only in that factor's level (a base with each level, or a base with
  other switches held fixed and this one varied); its *contrast* is the context's
  pair of levels whose losses differ most, with the findings that fire on one of
  the two and not the other: the evidence of why one level fails.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from diagnose.findings.figures import CONTRAST_DEFAULTS
from diagnose.report_data.records import VariantInfo

__all__ = ["Cell", "Interaction", "Context", "Contrast", "Suspect", "interactions", "suspects", "EVIDENCE_PANELS"]

# Report figures that show a contrast's evidence when its findings point nowhere
# else: what each branch adds (a table drowning its content) and where attention lands.
EVIDENCE_PANELS = CONTRAST_DEFAULTS
_MAX_PANELS = 3  # beside the loss panels, more than three do not read in a minute


@dataclass
class Cell:
    label: str  # e.g. "loss_reduction=sum + output=softmax", or "neither"
    variant: VariantInfo | None  # None: that subset did not run


@dataclass
class Interaction:
    """A combination and the subsets of its switches, as a grid: rows by the first switches, columns by the last."""

    variant: VariantInfo
    switches: list[str]
    row_labels: list[str]
    col_labels: list[str]
    cells: list[list[Cell]]
    interaction: object = None  # the verdict's estimate (an Interval) of the effect beyond the parts' sum


@dataclass
class Context:
    """Variants that differ only in one factor's level: ``points[level]``."""

    label: str  # "as-posted" or "as-posted + loss_reduction=sum"
    base: str
    points: dict[str, VariantInfo]
    own_level: str  # the level of the variant that does not switch this factor


@dataclass
class Contrast:
    """The pair of levels in one context whose losses differ most, and the findings that tell them apart."""

    context: Context
    low: str  # the level with the lower loss
    high: str
    only_high: list[dict] = field(default_factory=list)  # findings on most seeds of high, not of low
    only_low: list[dict] = field(default_factory=list)
    panels: list[str] = field(default_factory=list)  # report figures (registry.FIGURES) that show the evidence


@dataclass
class Suspect:
    factor: str
    levels: list[str]  # in the spec's order, the bases' own levels included
    labels: dict[str, str]  # level -> what a reader sees
    contexts: list[Context]
    contrast: Contrast | None


def _key(base: str, switches) -> tuple:
    return base, frozenset(switches)


def _name(switches) -> str:
    return " + ".join(f"{f}={lv}" for f, lv in switches)


def interactions(variants: dict[str, VariantInfo]) -> list[Interaction]:
    """One grid per variant with two or more switches (the combinations the verdict ran)."""
    by_key = {_key(v.base, v.switches): v for v in variants.values()}
    out = []
    for v in variants.values():
        if len(v.switches) < 2:
            continue
        *first, last = v.switches
        rows = [sub for k in range(len(first) + 1) for sub in itertools.combinations(first, k)
                if len(first) == 1 or k in (0, len(first)) or _key(v.base, sub) in by_key]
        cells = [[Cell(_name(sub + extra) or "neither", by_key.get(_key(v.base, sub + extra)))
                  for extra in ((), (last,))] for sub in rows]
        out.append(Interaction(v, [_name([s]) for s in v.switches], [_name(sub) or "neither" for sub in rows],
                               [f"without {_name([last])}", f"with {_name([last])}"], cells))
    return out


def suspects(variants: dict[str, VariantInfo], spec_levels: dict[str, list[str]],
             labels: dict[str, dict[str, str]] | None = None, order: list[str] | None = None,
             declared: list[tuple] = ()) -> list[Suspect]:
    """One section per factor the study varies.

    Args:
        variants: the study's variants.
        spec_levels: each factor's levels in the spec's order (resolved: no empty lists).
        labels: readable names of levels, per factor (others show their names).
        order: factors to put first (the verdict's ranking); the rest follow in study order.
        declared: the spec's own combinations, ``(base, ((factor, level), ...))``: the
            contrasts its author asked for, shown before wider ones found elsewhere.
    """
    wanted = {_key(base, (tuple(sw) for sw in switches)) for base, switches in declared}
    factors = list(dict.fromkeys(f for v in variants.values() for f, _ in v.switches))
    factors.sort(key=lambda f: (order or []).index(f) if f in (order or []) else len(order or []))
    own = _own_levels(variants, spec_levels)
    out = []
    for factor in factors:
        contexts = _contexts(variants, factor, own)
        if not contexts:
            continue
        seen = [lv for c in contexts for lv in c.points]
        levels = [lv for lv in spec_levels.get(factor, []) if lv in seen]
        levels += [lv for lv in dict.fromkeys(seen) if lv not in levels]
        names = {lv: (labels or {}).get(factor, {}).get(lv, lv) for lv in levels}
        out.append(Suspect(factor, levels, names, contexts, _contrast(contexts, wanted)))
    return out


def _own_levels(variants: dict[str, VariantInfo], spec_levels: dict[str, list[str]]) -> dict[tuple, str]:
    """(base, factor) -> the base's own level: the one a single switch of another base adopts from it
    (``level_of``), else the one spec level never switched on that base."""
    own: dict[tuple, str] = {}
    for v in variants.values():
        for entry in v.entries[:1]:
            if len(v.switches) == 1:
                for other in entry.get("level_of") or []:
                    own[(other, v.switches[0][0])] = v.switches[0][1]
    bases = {v.base for v in variants.values()}
    for factor, levels in spec_levels.items():
        for base in bases:
            switched = {lv for v in variants.values() if v.base == base for f, lv in v.switches if f == factor}
            left = [lv for lv in levels if lv not in switched]
            if (base, factor) not in own and len(left) == 1:
                own[(base, factor)] = left[0]
    return own


def _contexts(variants: dict[str, VariantInfo], factor: str, own: dict[tuple, str]) -> list[Context]:
    groups: dict[tuple, dict[str, VariantInfo]] = {}
    for v in variants.values():
        if v.loss is None:
            continue
        rest = tuple(sw for sw in v.switches if sw[0] != factor)
        level = next((lv for f, lv in v.switches if f == factor), None)
        groups.setdefault((v.base, rest), {})[level] = v
    out = []
    for (base, rest), points in groups.items():
        if len(points) < 2 or not any(lv is not None for lv in points):
            continue  # no level of this factor switched here
        mine = own.get((base, factor), f"{base}'s own")
        named = {(mine if lv is None else lv): v for lv, v in points.items()}
        out.append(Context(base + (f" + {_name(rest)}" if rest else ""), base, named, mine))
    return out


def _contrast(contexts: list[Context], wanted: set) -> Contrast | None:
    """The widest pair of levels among those with the most variants the spec declared (both, one, none)."""
    best, rank = None, (0, 0.0)
    for c in contexts:
        for a, b in itertools.combinations(c.points, 2):
            va, vb = c.points[a], c.points[b]
            la, lb = va.loss.mean, vb.loss.mean
            if la is None or lb is None or not (math.isfinite(la) and math.isfinite(lb)) or la == lb:
                continue
            mine = (sum(_key(v.base, v.switches) in wanted for v in (va, vb)), abs(la - lb))
            if mine > rank:
                best, rank = (c, a, b) if la < lb else (c, b, a), mine
    if best is None:
        return None
    context, low, high = best
    only_high = _telling(context.points[high], context.points[low])
    only_low = _telling(context.points[low], context.points[high])
    panels = [f["figure"] for f in only_high + only_low if f.get("figure") and f["figure"] != "loss"]
    panels = list(dict.fromkeys(panels + list(EVIDENCE_PANELS)))[:_MAX_PANELS]
    return Contrast(context, low, high, only_high, only_low, panels)


def _telling(v: VariantInfo, other: VariantInfo) -> list[dict]:
    """Findings on most of ``v``'s seeds and on at most half of ``other``'s, each with its seed count."""
    out = {}
    for run in v.runs:
        for f in run.findings:
            if f["id"] not in out and 2 * v.seeds_with(f["id"]) > len(v.runs) \
                    and 2 * other.seeds_with(f["id"]) <= len(other.runs):
                out[f["id"]] = {**f, "seeds": v.seeds_with(f["id"]), "of": len(v.runs)}
    return list(out.values())

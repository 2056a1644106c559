"""Seeds per variant: the spec's seeds for every variant, more where a study's verdict asks for them.

A study starts every variant on its spec's seeds. Where an interval is still
inconclusive, the verdict asks for more seeds on the variants that comparison reads
(:func:`diagnose.findings.verdict_plan.plan_seeds`), and the sweep trains them:
a :class:`SeedPlan` says how many seeds each variant has. Seeds beyond the spec's
continue from its largest one, in the same order for every variant, so two variants
with n seeds share the same n and their runs pair up seed by seed.

Any spec whose ``tasks(...)`` takes a plan gets adaptive seeds: it asks
:meth:`SeedPlan.seeds_for` for each variant's seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SeedPlan", "extend_seeds"]


def extend_seeds(seeds: tuple[int, ...], count: int) -> tuple[int, ...]:
    """The first ``count`` seeds: ``seeds`` in order, then the integers after the largest of them."""
    out = list(seeds[:count])
    nxt = max(seeds, default=-1) + 1
    while len(out) < count:
        out.append(nxt)
        nxt += 1
    return tuple(out)


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds each variant trains when that is more than the spec's, and how often that grew.

    Attributes:
        counts: variant name -> number of seeds (never fewer than the spec's).
        looks: variant name -> how many times its intervals were read: 1 for the spec's
            seeds, one more for every time seeds were added (the verdict widens the
            intervals of a comparison that was looked at several times).
    """

    counts: dict = field(default_factory=dict)
    looks: dict = field(default_factory=dict)

    def seeds_for(self, variant: str, seeds: tuple[int, ...]) -> tuple[int, ...]:
        """The seeds ``variant`` trains: the spec's ``seeds``, extended to its count."""
        return extend_seeds(seeds, max(len(seeds), self.counts.get(variant, 0)))

    def with_counts(self, counts: dict) -> "SeedPlan":
        """This plan with each named variant raised to at least its count (a raise is one more look)."""
        merged, looks = dict(self.counts), dict(self.looks)
        for variant, n in counts.items():
            if n > merged.get(variant, 0):
                merged[variant] = n
                looks[variant] = looks.get(variant, 1) + 1
        return SeedPlan(dict(sorted(merged.items())), dict(sorted(looks.items())))

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "looks": dict(self.looks)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "SeedPlan":
        d = d or {}
        return cls({str(k): int(v) for k, v in (d.get("counts") or {}).items()},
                   {str(k): int(v) for k, v in (d.get("looks") or {}).items()})

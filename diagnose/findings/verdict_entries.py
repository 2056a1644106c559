"""The verdict's parts, declared once: intervals, effects, factors, the fix, comparisons
(:class:`~diagnose.findings.verdict_types.Verdict` holds them; import them from there).

Each type writes itself as the JSON ``verdict.json`` has always held (``to_json``: the
same keys, in the same order, so a study written before and after these types is the
same file) and reads itself back (``from_json``), also from a verdict written by an older
version: a key it lacks takes its default, and an effect without a ``status`` gets the one
its flag or interval says.

* :class:`Interval`: a mean over seeds with its t-interval (JSON: ``effect``, ``ci``, ``n``,
  ``sd``, ``confidence`` and, where the verdict judged it against its margin, ``status``).
* :class:`SwitchEffect`: a switch against its base; :class:`Factor` groups them by side.
* :class:`Combination`, :class:`Fix` (the smallest fix), :class:`Cause`, :class:`Comparison`,
  :class:`BaseEffect` (a study without a gap), :class:`Seeds`, :class:`SeedBlind`, :class:`Sweep`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diagnose.findings.verdict_stats import CONFIDENCE

__all__ = ["Interval", "SwitchEffect", "Factor", "Combination", "FixPart", "Fix", "Cause", "Comparison",
           "BaseEffect", "Seeds", "SeedBlind", "Sweep", "STATUSES"]

STATUSES = ("established", "negligible", "inconclusive")


def _tuple(items, kind=None) -> tuple:
    return tuple(kind.from_json(x) if kind else x for x in items or ())


def _opt(value, kind):
    return kind.from_json(value) if value is not None else None


@dataclass(frozen=True)
class Interval:
    """A mean over seeds (of paired differences: an effect) with its t-interval.

    Attributes:
        mean: the mean (JSON ``effect``); None without a common seed.
        lo, hi: the interval's ends (JSON ``ci``); None below two seeds.
        n: seeds.
        sd: the standard deviation of the paired differences; None below two seeds.
        confidence: the interval's level: 95%, or wider for a comparison read again after
            seeds were added (97.5% at the second look).
        status: what it settles against the verdict's margin (one of :data:`STATUSES`),
            where the verdict judged it; None where it did not (an interaction).
    """

    mean: float | None
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    sd: float | None = None
    confidence: float = CONFIDENCE
    status: str | None = None

    @property
    def excludes_zero(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    def to_json(self, status: bool = True, sd: bool = True) -> dict:
        out = {"effect": self.mean, "ci": [self.lo, self.hi], "n": self.n}
        if sd:
            out["sd"] = self.sd
        out["confidence"] = self.confidence
        if status and self.status is not None:
            out["status"] = self.status
        return out

    @classmethod
    def from_json(cls, d: dict) -> Interval:
        lo, hi = d.get("ci") or (None, None)
        status = d.get("status")
        return cls(d.get("effect"), lo, hi, int(d.get("n") or 0), d.get("sd"), d.get("confidence") or CONFIDENCE,
                   status if status in STATUSES else None)


def _judged(d: dict) -> tuple[Interval, bool]:
    """An entry's interval with its status, and its ``established`` flag; an older verdict's
    entry without one of them gets it from the other (or ``significant``, or the interval)."""
    interval = Interval.from_json(d)
    if "established" in d or "significant" in d:
        established = bool(d.get("established", d.get("significant")))
    elif interval.status is not None:
        established = interval.status == "established"
    else:
        established = interval.excludes_zero
    if interval.status is None:
        interval = dataclasses.replace(interval, status="established" if established else "inconclusive")
    return interval, established


@dataclass(frozen=True)
class SwitchEffect:
    """One variant against its base: ``effect`` is variant minus base, paired by seed.

    ``share_closed``: the share of the gap it closes (a switch on the faulty base);
    ``share_opened``: the share it opens (on the reference); one of them, or neither.
    """

    variant: str
    runs: tuple[str, ...]
    mean_loss: float | None
    diverged: int
    effect: Interval
    established: bool
    share_closed: float | None = None
    share_opened: float | None = None

    @property
    def status(self) -> str:
        return self.effect.status

    @property
    def switch(self) -> str:
        """``"output=softmax"`` of ``"as-posted | output=softmax"``."""
        return self.variant.split("|", 1)[1].strip() if "|" in self.variant else self.variant

    def to_json(self) -> dict:
        out = {"variant": self.variant, "runs": list(self.runs), "mean_loss": self.mean_loss,
               "diverged": self.diverged, **self.effect.to_json(), "established": self.established}
        if self.share_closed is not None:
            out["share_closed"] = self.share_closed
        if self.share_opened is not None:
            out["share_opened"] = self.share_opened
        return out

    @classmethod
    def from_json(cls, d: dict) -> SwitchEffect:
        interval, established = _judged(d)
        return cls(d["variant"], _tuple(d.get("runs")), d.get("mean_loss"), int(d.get("diverged") or 0), interval,
                   established, d.get("share_closed"), d.get("share_opened"))


@dataclass(frozen=True)
class Factor:
    """A factor's switches by side (``fixes``: the faulty base to the reference's choice; ``breaks``: the
    reference to the faulty choice; ``others``: a level neither base has), its best of each, and its score:
    the larger established share, which ranks root causes."""

    factor: str
    fixes: tuple[SwitchEffect, ...] = ()
    breaks: tuple[SwitchEffect, ...] = ()
    others: tuple[SwitchEffect, ...] = ()
    best_fix: str | None = None
    share_closed: float | None = None
    share_opened: float | None = None
    fix_established: bool = False
    break_established: bool = False
    significant: bool = False
    score: float = 0.0

    def to_json(self) -> dict:
        return {"factor": self.factor, "fix": [e.to_json() for e in self.fixes],
                "break": [e.to_json() for e in self.breaks], "other": [e.to_json() for e in self.others],
                "best_fix": self.best_fix, "share_closed": self.share_closed, "share_opened": self.share_opened,
                "fix_established": self.fix_established, "break_established": self.break_established,
                "significant": self.significant, "score": self.score}

    @classmethod
    def from_json(cls, d: dict) -> Factor:
        return cls(d["factor"], _tuple(d.get("fix"), SwitchEffect), _tuple(d.get("break"), SwitchEffect),
                   _tuple(d.get("other"), SwitchEffect), d.get("best_fix"), d.get("share_closed"),
                   d.get("share_opened"), bool(d.get("fix_established")), bool(d.get("break_established")),
                   bool(d.get("significant")), d.get("score") or 0.0)


@dataclass(frozen=True)
class Combination(SwitchEffect):
    """A set of switches on one base: ``interaction`` is its effect minus the sum of its switches'
    (None where one of them has no runs); ``falls_short``: a fix candidate that leaves more than the
    margin for sure (None: not a candidate)."""

    switches: tuple[str, ...] = ()
    interaction: Interval | None = None
    is_fix_candidate: bool = False
    falls_short: bool | None = None

    def to_json(self) -> dict:
        out = {"variant": self.variant, "runs": list(self.runs), "mean_loss": self.mean_loss,
               "diverged": self.diverged, **self.effect.to_json(), "established": self.established,
               "switches": list(self.switches)}
        if self.interaction is not None:
            out["interaction"] = self.interaction.to_json()
        out.update(share_closed=self.share_closed, is_fix_candidate=self.is_fix_candidate)
        if self.falls_short is not None:
            out["falls_short"] = self.falls_short
        return out

    @classmethod
    def from_json(cls, d: dict) -> Combination:
        interval, established = _judged(d)
        return cls(d["variant"], _tuple(d.get("runs")), d.get("mean_loss"), int(d.get("diverged") or 0), interval,
                   established, d.get("share_closed"), None, _tuple(d.get("switches")),
                   _opt(d.get("interaction"), Interval), bool(d.get("is_fix_candidate")), d.get("falls_short"))


@dataclass(frozen=True)
class FixPart:
    """A switch of a set, alone: its share of the gap (negative: it widens it), seeds and divergences."""

    switch: str
    share_closed: float | None
    diverged: int = 0
    n: int = 0
    status: str | None = None

    def to_json(self) -> dict:
        return {"switch": self.switch, "share_closed": self.share_closed, "diverged": self.diverged, "n": self.n,
                "status": self.status}

    @classmethod
    def from_json(cls, d: dict) -> FixPart:
        return cls(d["switch"], d.get("share_closed"), d.get("diverged") or 0, d.get("n") or 0, d.get("status"))


@dataclass(frozen=True)
class Fix:
    """The smallest fix: its switches, its effect on the faulty base (``effect``; its sd is not kept),
    and its ``residual`` against the reference (see :mod:`diagnose.findings.verdict`).

    ``interaction`` and ``parts`` are a set's (two switches or more): the set's effect beyond its
    switches' sum (None where not measured) and each switch alone.
    """

    switches: tuple[str, ...]
    variant: str
    share_closed: float | None
    effect: Interval
    runs: tuple[str, ...] = ()
    diverged: int = 0
    confident: bool = False
    stable: bool = True
    residual: Interval = field(default_factory=lambda: Interval(None))
    reaches: bool = False
    short_of_reference: bool = False
    unstable_alone: tuple[str, ...] = ()
    interaction: Interval | None = None
    parts: tuple[FixPart, ...] = ()

    def to_json(self) -> dict:
        out = {"switches": list(self.switches), "variant": self.variant, "share_closed": self.share_closed,
               **self.effect.to_json(status=False, sd=False), "runs": list(self.runs), "diverged": self.diverged,
               "confident": self.confident, "stable": self.stable, "residual": self.residual.to_json(),
               "reaches": self.reaches, "short_of_reference": self.short_of_reference,
               "unstable_alone": list(self.unstable_alone)}
        if len(self.switches) > 1:
            out["interaction"] = self.interaction.to_json() if self.interaction is not None else None
            out["parts"] = [p.to_json() for p in self.parts]
        return out

    @classmethod
    def from_json(cls, d: dict) -> Fix:
        effect = dataclasses.replace(Interval.from_json(d), sd=None, status=None)
        return cls(_tuple(d.get("switches")), d.get("variant", ""), d.get("share_closed"), effect,
                   _tuple(d.get("runs")),
                   int(d.get("diverged") or 0), bool(d.get("confident")), bool(d.get("stable", not d.get("diverged"))),
                   Interval.from_json(d.get("residual") or {}), bool(d.get("reaches")),
                   bool(d.get("short_of_reference")), _tuple(d.get("unstable_alone")),
                   _opt(d.get("interaction"), Interval), _tuple(d.get("parts"), FixPart))


@dataclass(frozen=True)
class Cause:
    """A factor the verdict blames: the shares of the gap its switches close and open (a minor cause's
    only where established), and the runs it cites (a root cause's; None for a minor one)."""

    factor: str
    share_closed: float | None
    share_opened: float | None
    runs: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        out = {"factor": self.factor, "share_closed": self.share_closed, "share_opened": self.share_opened}
        if self.runs is not None:
            out["runs"] = list(self.runs)
        return out

    @classmethod
    def from_json(cls, d: dict) -> Cause:
        return cls(d["factor"], d.get("share_closed"), d.get("share_opened"),
                   _tuple(d["runs"]) if "runs" in d else None)


@dataclass(frozen=True)
class Comparison:
    """One interval the verdict's sentences rest on: ``variant`` against ``against``.

    ``kind``: gap, fix, break, combination, residual, or effect (a study without a gap);
    ``factor``: a fix's or break's; ``falls_short``: a combination's (see :class:`Combination`).
    """

    kind: str
    variant: str
    against: str
    effect: Interval
    factor: str | None = None
    falls_short: bool | None = None

    @property
    def status(self) -> str | None:
        return self.effect.status

    @property
    def n(self) -> int:
        return self.effect.n

    def to_json(self) -> dict:
        out = {"kind": self.kind}
        if self.factor is not None:
            out["factor"] = self.factor
        out.update(variant=self.variant, against=self.against, **self.effect.to_json())
        if self.falls_short is not None:
            out["falls_short"] = self.falls_short
        return out

    @classmethod
    def from_json(cls, d: dict) -> Comparison:
        return cls(d["kind"], d["variant"], d["against"], Interval.from_json(d), d.get("factor"), d.get("falls_short"))


@dataclass(frozen=True)
class BaseEffect:
    """A switch's effect on its own base's loss, in a study without a gap to explain; ``margin``:
    within it the effect is negligible (2% of the base's loss)."""

    variant: str
    base: str
    factor: str | None
    runs: tuple[str, ...]
    mean_loss: float | None
    diverged: int
    margin: float | None
    established: bool
    effect: Interval

    @property
    def status(self) -> str:
        return self.effect.status

    def to_json(self) -> dict:
        return {"variant": self.variant, "base": self.base, "factor": self.factor, "runs": list(self.runs),
                "mean_loss": self.mean_loss, "diverged": self.diverged, "margin": self.margin,
                "significant": self.established, "established": self.established, "status": self.status,
                **self.effect.to_json(status=False)}

    @classmethod
    def from_json(cls, d: dict) -> BaseEffect:
        interval, established = _judged(d)
        return cls(d["variant"], d.get("base", ""), d.get("factor"), _tuple(d.get("runs")), d.get("mean_loss"),
                   int(d.get("diverged") or 0), d.get("margin"), established, interval)


@dataclass(frozen=True)
class Seeds:
    """Seeds with an outcome: the fewest and most of any variant, and per variant."""

    min: int = 0
    max: int = 0
    per_variant: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"min": self.min, "max": self.max, "per_variant": dict(self.per_variant)}

    @classmethod
    def from_json(cls, d: dict) -> Seeds:
        return cls(d.get("min", 0), d.get("max", 0), dict(d.get("per_variant") or {}))


@dataclass(frozen=True)
class SeedBlind:
    """Trainable variables whose initial values the seed does not change (see
    :func:`~diagnose.findings.verdict.seed_blind_weights`)."""

    variables: tuple[str, ...]
    random: int
    variants: tuple[str, ...]
    of_variants: int

    def to_json(self) -> dict:
        return {"variables": list(self.variables), "random": self.random, "variants": list(self.variants),
                "of_variants": self.of_variants}

    @classmethod
    def from_json(cls, d: dict) -> SeedBlind:
        return cls(_tuple(d.get("variables")), d.get("random", 0), _tuple(d.get("variants")), d.get("of_variants", 0))


@dataclass(frozen=True)
class Sweep:
    """What one sweep of a study trained (runs), and in a verdict written before the timings moved to the
    manifest, its wall seconds (None otherwise: a verdict is a function of the records, the same bytes on
    every machine; how long a sweep took is the manifest's ``sweeps``)."""

    runs: int
    wall_s: float | None = None

    def to_json(self) -> dict:
        return {"runs": self.runs} if self.wall_s is None else {"runs": self.runs, "wall_s": self.wall_s}

    @classmethod
    def from_json(cls, d: dict) -> Sweep:
        return cls(d.get("runs", 0), d.get("wall_s"))

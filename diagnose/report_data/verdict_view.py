"""The one place the report reads the verdict: outcomes, intervals, effects and sentences.

The verdict is a :class:`~diagnose.findings.verdict_types.Verdict`, read by attribute; the
report reaches it only through this module, which lays its effects out for the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# The verdict's own outcome of a run and its paired t-interval: the page's numbers are the verdict's.
from diagnose.findings import verdict_stats
from diagnose.findings.proof import proof_line
from diagnose.findings.verdict_text import verdict_parts
from diagnose.findings.verdict_types import Interval, Verdict

__all__ = ["Interval", "Effect", "run_outcome", "interval", "effects", "gap", "smallest_fix", "interaction_of",
           "outcome_label", "parts", "cause_of", "mode"]


@dataclass(frozen=True)
class Effect:
    """One switch (or set of switches) and what it does to its base's loss.

    Attributes:
        variant: the variant's name (``"as-posted | output=softmax"``).
        side: ``fix`` (faulty base to the reference's choice), ``break`` (reference to
            the faulty choice), ``other`` (a level neither base has), ``combination``,
            or ``effect`` (a study without a gap).
        effect: variant minus base, paired by seed.
        established: the interval settles the direction (the verdict's word for it).
        status: ``established``, ``negligible`` (the verdict rules it out: its interval lies
            within the verdict's margin) or ``inconclusive``.
        share: the share of the gap it closes (fix, combination, other on the faulty
            base) or opens (break, other on the reference); None without a gap.
        diverged: seeds on which the variant diverged.
    """

    variant: str
    side: str
    effect: Interval
    established: bool
    share: float | None
    diverged: int
    status: str = ""  # established, negligible (within the verdict's margin) or inconclusive


def run_outcome(run_dir: str | Path) -> tuple[float | None, str | None]:
    """(outcome, status) of a run, as the verdict counts it."""
    return verdict_stats.run_outcome(Path(run_dir))


def interval(values: list[float]) -> Interval | None:
    """The mean of ``values`` with the verdict's t-interval; None without values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return Interval.from_json(verdict_stats.paired(dict(enumerate([0.0] * len(values))), dict(enumerate(values))))


def outcome_label(verdict: Verdict | None) -> str:
    """What a run's outcome is, short enough for an axis: the verdict's phrase up to its first bracket.

    "the mean validation loss over the last 25% of a run's steps (nats ...)" reads
    "validation loss over the last 25% of steps"; "final validation loss" where the
    verdict says nothing.
    """
    words = (verdict.outcome if verdict else "") or "final validation loss"
    label = words.split(" (", 1)[0].split(";", 1)[0].strip()
    for lead in ("the ", "mean "):  # a mean over validations: the captions say "mean over seeds" of it
        label = label[len(lead):] if label.startswith(lead) else label
    return label.replace(" of a run's steps", " of steps")


def mode(verdict: Verdict | None) -> str | None:
    """``gap`` (a faulty base against a reference), ``effects`` (no gap), or None (no usable verdict)."""
    return None if verdict is None or verdict.mode == "error" else verdict.mode


def gap(verdict: Verdict) -> Interval | None:
    return verdict.gap if mode(verdict) == "gap" else None


def effects(verdict: Verdict) -> list[Effect]:
    """Every single switch and combination the verdict compared with its base."""
    if mode(verdict) == "effects":
        return [Effect(e.variant, "effect", e.effect, e.established, None, e.diverged, e.status)
                for e in verdict.effects if e.effect.mean is not None]
    out = []
    for f in verdict.factors:
        for side, entries in (("fix", f.fixes), ("break", f.breaks), ("other", f.others)):
            for e in entries:
                if e.effect.mean is None:
                    continue
                share = e.share_closed if e.share_closed is not None else e.share_opened
                out.append(Effect(e.variant, side, e.effect, e.established, share, e.diverged, e.status))
    for c in verdict.combinations:
        if c.effect.mean is not None:
            out.append(Effect(c.variant, "combination", c.effect, c.established, c.share_closed, c.diverged,
                              c.status))
    return out


def smallest_fix(verdict: Verdict) -> str | None:
    """The variant the verdict names as the fix (the best switch where there is no gap)."""
    if mode(verdict) == "effects":
        best = next((e for e in verdict.effects if e.established and (e.effect.mean or 0) < 0 and not e.diverged),
                    None)
        return best.variant if best else None
    fix = verdict.smallest_fix if mode(verdict) else None
    return fix.variant if fix else None


def interaction_of(verdict: Verdict | None, variant: str) -> Interval | None:
    """A combination's effect beyond the sum of its switches' effects, if the verdict measured it."""
    entry = verdict.combination(variant) if verdict else None
    inter = entry.interaction if entry else None
    return inter if inter and inter.mean is not None else None


def parts(verdict: Verdict | None) -> dict | None:
    """The verdict's sentences (:func:`verdict_text.verdict_parts`), or None without a verdict; with
    ``proof`` (per finding: id, kind, status, sentence) and ``proof_definition`` where a proof study's."""
    if not verdict:
        return None
    view = verdict_parts(verdict)
    proof = verdict.proof
    view["proof"] = ([{"id": e["id"], "kind": e["kind"], "status": e["status"], "line": proof_line(e)}
                      for e in proof["findings"]] if proof else None)
    view["proof_definition"] = proof["definition"] if proof else ""
    return view


def cause_of(verdict: Verdict | None, factor: str) -> tuple[int, str] | None:
    """(rank, sentence) when the verdict names ``factor`` a root cause, else None."""
    if mode(verdict) != "gap":
        return None
    causes = parts(verdict)["causes"]
    return next(((i, c["text"]) for i, c in enumerate(causes, start=1) if c["factor"] == factor), None)

"""The one place the report reads the verdict: outcomes, intervals, effects and sentences.

The verdict's dict (:mod:`diagnose.findings.verdict`) is the contract between the
statistics and everything that shows them. The report reads it only through this
module, so when the verdict's fields change (an ``established`` flag or a ``status``
per effect, ``n`` seeds, a ``method`` string) this is the one file to follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# The verdict's own outcome of a run and its paired t-interval: the page's numbers are the verdict's.
from diagnose.findings import verdict_stats
from diagnose.findings.verdict_text import verdict_parts

__all__ = ["Interval", "Effect", "run_outcome", "interval", "effects", "gap", "smallest_fix", "interaction_of",
           "established", "status", "outcome_label", "parts", "cause_of", "mode"]


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its t-interval (``lo``/``hi`` None below two seeds).

    ``confidence`` is the interval's level: 95%, or wider for a comparison the
    verdict read again after adding seeds (97.5% at the second look).
    """

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    confidence: float = verdict_stats.CONFIDENCE

    @property
    def excludes_zero(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)


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
    return _interval(verdict_stats.paired(dict(enumerate([0.0] * len(values))), dict(enumerate(values))))


def established(entry: dict) -> bool:
    """Whether an effect entry's interval settles it: the verdict's flag or status, else the interval."""
    if "established" in entry:
        return bool(entry["established"])
    if "status" in entry:
        return entry["status"] == "established"
    return _interval(entry).excludes_zero


def status(entry: dict) -> str:
    """The verdict's status of an effect, or what its flag or interval says where it gives none."""
    if entry.get("status") in ("established", "negligible", "inconclusive"):
        return entry["status"]
    return "established" if established(entry) else "inconclusive"


def outcome_label(verdict: dict | None) -> str:
    """What a run's outcome is, short enough for an axis: the verdict's phrase up to its first bracket.

    "the mean validation loss over the last 25% of a run's steps (nats ...)" reads
    "validation loss over the last 25% of steps"; "final validation loss" where the
    verdict says nothing.
    """
    words = (verdict or {}).get("outcome") or "final validation loss"
    label = words.split(" (", 1)[0].split(";", 1)[0].strip()
    for lead in ("the ", "mean "):  # a mean over validations: the captions say "mean over seeds" of it
        label = label[len(lead):] if label.startswith(lead) else label
    return label.replace(" of a run's steps", " of steps")


def mode(verdict: dict | None) -> str | None:
    """``gap`` (a faulty base against a reference), ``effects`` (no gap), or None (no usable verdict)."""
    if not verdict or verdict.get("error"):
        return None
    return "effects" if verdict.get("mode") == "effects" else "gap"


def gap(verdict: dict) -> Interval | None:
    return _interval(verdict["gap"]) if mode(verdict) == "gap" else None


def effects(verdict: dict) -> list[Effect]:
    """Every single switch and combination the verdict compared with its base."""
    if mode(verdict) == "effects":
        return [Effect(e["variant"], "effect", _interval(e), established(e), None, e.get("diverged") or 0, status(e))
                for e in verdict["effects"] if e.get("effect") is not None]
    out = []
    for f in verdict.get("factors", []):
        for side in ("fix", "break", "other"):
            for e in f.get(side, []):
                if e.get("effect") is None:
                    continue
                share = e.get("share_closed") if e.get("share_closed") is not None else e.get("share_opened")
                out.append(Effect(e["variant"], side, _interval(e), established(e), share, e.get("diverged") or 0,
                                  status(e)))
    for c in verdict.get("combinations", []):
        if c.get("effect") is not None:
            out.append(Effect(c["variant"], "combination", _interval(c), established(c), c.get("share_closed"),
                              c.get("diverged") or 0, status(c)))
    return out


def smallest_fix(verdict: dict) -> str | None:
    """The variant the verdict names as the fix (the best switch where there is no gap)."""
    if mode(verdict) == "effects":
        best = next((e for e in verdict["effects"] if established(e) and (e.get("effect") or 0) < 0), None)
        return best["variant"] if best else None
    fix = verdict.get("smallest_fix") if mode(verdict) else None
    return fix.get("variant") if fix else None


def interaction_of(verdict: dict | None, variant: str) -> Interval | None:
    """A combination's effect beyond the sum of its switches' effects, if the verdict measured it."""
    entry = next((c for c in (verdict or {}).get("combinations", []) if c.get("variant") == variant), None)
    inter = (entry or {}).get("interaction")
    return _interval(inter) if inter and inter.get("effect") is not None else None


def parts(verdict: dict | None) -> dict | None:
    """The verdict's sentences (:func:`verdict_text.verdict_parts`), or None without a verdict; with
    ``proof`` (per finding: id, kind, status, sentence) and ``proof_definition`` where a proof study's."""
    if not verdict:
        return None
    from diagnose.findings.proof import proof_line

    view = verdict_parts(verdict)
    proof = verdict.get("proof")
    view["proof"] = ([{"id": e["id"], "kind": e["kind"], "status": e["status"], "line": proof_line(e)}
                      for e in proof["findings"]] if proof else None)
    view["proof_definition"] = proof["definition"] if proof else ""
    return view


def cause_of(verdict: dict | None, factor: str) -> tuple[int, str] | None:
    """(rank, sentence) when the verdict names ``factor`` a root cause, else None."""
    if mode(verdict) != "gap":
        return None
    causes = parts(verdict)["causes"]
    return next(((i, c["text"]) for i, c in enumerate(causes, start=1) if c["factor"] == factor), None)


def _interval(entry: dict) -> Interval:
    ci = entry.get("ci") or [None, None]
    return Interval(entry.get("effect"), ci[0], ci[1], int(entry.get("n") or 0),
                    entry.get("confidence") or verdict_stats.CONFIDENCE)

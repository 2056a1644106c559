"""What a verdict asks the harness to run next: combinations of switches, and seeds where it is unsure.

Both read only the verdict (:class:`~diagnose.findings.verdict_types.Verdict`), so they serve
any study the harness runs: the variants they name are the verdict's, and the
harness turns them into runs (``combos`` of a spec; a
:class:`~diagnose.ablation.seeding.SeedPlan`).
"""

from __future__ import annotations

import itertools
import math

from diagnose.findings.verdict_stats import CONFIDENCE, confidence_after
from diagnose.findings.verdict_types import Comparison, Interval, Verdict

__all__ = ["plan_follow_ups", "plan_seeds", "switch_set", "seeds_needed", "seeds_for_half_width",
           "DEFAULT_MAX_SEEDS", "MAX_FIX_SIZE", "CANDIDATES",
           "MIN_ADDED_SEEDS"]

# Seeds per variant that adaptive seeding stops at. An interval narrows as
# 1/sqrt(n): from 3 seeds (t = 4.30) to 12 (t = 2.20) it shrinks 4x, enough for an
# effect of a quarter of the default study's gap on its noisiest base (the as-posted
# model, sd of paired differences ~1 nat); beyond it the budget goes to other runs.
DEFAULT_MAX_SEEDS = 12
# Seeds added to an inconclusive comparison at least, per round: its sd, estimated
# from a few seeds, is itself noisy, and each round costs a sweep.
MIN_ADDED_SEEDS = 3
# A comparison whose estimated need is beyond this many times the cap is left
# inconclusive without spending seeds on it (an effect near zero on a noisy base
# would need hundreds of seeds to be shown negligible). 1: on the default study's 12
# seeds, the comparisons estimated at 13-24 seeds from their first 3 stayed
# inconclusive at 12 (measured), and cost a third of its added runs.
HOPELESS_FACTOR = 1
# Larger sets than this are not searched: 4 switches of 11 factors is already 330
# combinations; beyond it the answer is "switch to the paper's recipe".
MAX_FIX_SIZE = 4
# Strongest factors kept as candidates for combinations: pairs of 3 are 3 runs per
# seed; triples follow if no pair reaches the reference.
CANDIDATES = 3


def plan_follow_ups(verdict: Verdict, tried: set[str], faulty: str = "as-posted") -> list[tuple]:
    """Combinations to run next, or [] when a fix is settled or none is left to try.

    The search goes on while no set of switches closes the gap stably and without a
    residual beyond seed noise; a fix that diverged on some seed, or that leaves part
    of the gap for sure, does not end it. One whose effect is still inconclusive does:
    its seeds decide, and the search resumes if they show it short of the reference.

    Candidates are the strongest factors (by the share of the gap they close on the
    faulty model or open on the reference, whichever is larger: a switch that widens
    the gap alone can close it with another), each as its switch to the reference's
    choice. Greedy, cheapest first: the pair of the two candidates whose switches move
    the loss most (by their means, whether established yet or not); once it ran
    without settling the fix, every other pair of candidates; if none reaches the
    reference, the best pairs extended by one more candidate; and so on up to
    :data:`MAX_FIX_SIZE`. Only sets made of candidates count as tried.

    Returns:
        ``[(base, ((factor, level), ...)), ...]``, switches sorted, whose sets of switches no
        variant in ``tried`` has (in any order).
    """
    fix = verdict.smallest_fix
    if not verdict.factors:
        return []
    # A fix that is stable and not short of the reference for sure ends the search even while
    # its effect is unsure: seeds settle that (plan_seeds), and a larger set would not be smaller.
    if fix and fix.stable and not fix.short_of_reference:
        return []
    faulty = verdict.faulty or faulty
    ranked = sorted((f for f in verdict.factors if f.best_fix and ((f.share_closed or 0) > 0 or f.significant)),
                    key=lambda f: (-f.score, -(f.share_closed or 0)))[:CANDIDATES]
    switches = [f.best_fix.split("|", 1)[1].strip() for f in ranked]
    shares = {switch_set(c.variant): c.share_closed or 0 for c in verdict.combinations}

    # A set is named by its switches in sorted order, and a set counts as tried whatever order it
    # ran in: the ranking that orders the candidates changes as seeds are added.
    ran = {switch_set(v) for v in tried}

    def name(combo) -> str:
        return f"{faulty} | " + " + ".join(combo)

    def as_tuple(combo) -> tuple:
        return (faulty, tuple(tuple(sw.split("=", 1)) for sw in combo))

    level = [tuple(sorted(c)) for c in itertools.combinations(switches, 2)]
    moves = {sw: max(f.share_closed or 0, f.share_opened or 0) for f, sw in zip(ranked, switches)}
    strongest = tuple(sorted(sorted(switches, key=lambda sw: -moves[sw])[:2]))
    for size in range(2, MAX_FIX_SIZE + 1):
        if len(switches) < size:
            return []
        untried = [c for c in level if switch_set(name(c)) not in ran]
        if size == 2 and strongest in untried:  # the other pairs wait until this one falls short
            return [as_tuple(strongest)]
        if untried:
            return [as_tuple(c) for c in untried]
        # All sets of this size ran and none settled it: extend the best two by one switch.
        best = sorted(level, key=lambda c: -shares.get(switch_set(name(c)), 0))[:2]
        level = list(dict.fromkeys(tuple(sorted(c + (sw,))) for c in best for sw in switches if sw not in c))
    return []


def switch_set(variant: str) -> tuple[str, frozenset]:
    """A variant's base and its set of switches, whatever their order: ``"b | x=1 + y=2"`` -> ``("b", {x=1, y=2})``."""
    base, _, rest = variant.partition("|")
    return base.strip(), frozenset(sw.strip() for sw in rest.split(" + ") if sw.strip())


def seeds_needed(comparison: Comparison, margin: float | None, cap: int) -> int | None:
    """Seeds at which ``comparison``'s interval would likely settle what the verdict asks of it, at most ``cap``.

    An effect is worth seeds only while it may matter: its mean at least ``margin``
    (a tenth of the gap), where the question is whether it is real (the interval's
    half-width below |mean|). Showing that an effect smaller than that is negligible
    changes no cause and no fix, and on a noisy base would take far more seeds. A
    ``residual`` asks whether the fix reaches the reference: its half-width below
    ``margin`` - mean when the mean is under the margin, else below the mean.

    From the comparison's current mean and sd, at the level of its next look: the
    fewest n that would do, at least :data:`MIN_ADDED_SEEDS` more than now. None when
    the effect is too small to matter or that n is beyond :data:`HOPELESS_FACTOR` x ``cap``.
    """
    mean = comparison.effect.mean
    if mean is None:
        return seeds_for_half_width(comparison.effect, None, cap)
    if comparison.kind == "residual" and margin is not None:
        target = margin - mean if mean < margin else mean
    elif margin is not None and abs(mean) < margin:
        return None
    else:
        target = abs(mean)
    return seeds_for_half_width(comparison.effect, target, cap)


def seeds_for_half_width(interval: Interval, target: float | None, cap: int) -> int | None:
    """The fewest seeds at which ``interval``, read once more, would likely be narrower
    than ``target`` on each side; at least :data:`MIN_ADDED_SEEDS` more than now, at most ``cap``.

    From its ``n``, ``sd`` (of the paired differences) and ``confidence`` (the level of
    its last look; the next look's is wider, :func:`~diagnose.findings.verdict_stats.confidence_after`).
    Too few seeds to estimate the sd: the next step up. None when that n is beyond
    :data:`HOPELESS_FACTOR` x ``cap``.
    """
    from scipy import stats

    looks = round((1 - CONFIDENCE) / (1 - interval.confidence))
    level = confidence_after(looks + 1)
    n, sd = interval.n, interval.sd
    floor = min(cap, n + MIN_ADDED_SEEDS)
    if target is None or n < 2 or sd is None or sd == 0:
        return floor
    for k in range(max(n, 2), HOPELESS_FACTOR * cap + 1):
        if stats.t.ppf(0.5 + level / 2, k - 1) * sd / math.sqrt(k) < target:
            return min(cap, max(k, floor))
    return None


def plan_seeds(verdict: Verdict, cap: int | None = None) -> dict[str, int]:
    """Seeds each variant should have so that the verdict's inconclusive comparisons may settle.

    A comparison pairs two variants by seed, so both get the same count. Comparisons
    already at ``cap`` seeds, or hopeless within it (:func:`seeds_needed`), get none;
    nor does a combination that ``falls_short`` of the reference (its residual's
    interval lies beyond the margin), unless it is the smallest fix: it cannot be the fix.

    Returns:
        ``{variant: seeds}`` for the variants to extend (more than they have now), or {}.
    """
    cap = cap or verdict.max_seeds or DEFAULT_MAX_SEEDS
    have = verdict.seeds.per_variant
    fix = verdict.smallest_fix.variant if verdict.smallest_fix else None
    counts: dict[str, int] = {}
    for c in verdict.comparisons:
        if c.status != "inconclusive" or c.n >= cap:
            continue
        if c.falls_short and c.variant != fix:  # not a fix whatever its effect: nothing to settle
            continue
        margin = verdict.margin
        if margin is None and c.kind == "effect":
            margin = next((e.margin for e in verdict.effects if e.variant == c.variant), None)
        n = seeds_needed(c, margin, cap)
        if n is None:
            continue
        for variant in (c.variant, c.against):
            counts[variant] = max(counts.get(variant, 0), n)
    return {v: n for v, n in counts.items() if n > have.get(v, 0)}

"""The verdict of an ablation: which switches cause the gap between its two bases, and how sure.

The two bases of a gap are the manifest's ``faulty`` and ``reference`` (a study of
the user's own model names them), else as-posted and paper.

Outcomes, intervals and what an interval settles are :mod:`verdict_stats`'s; the
combinations and seeds a verdict asks the harness for are :mod:`verdict_plan`'s;
its sentences are :mod:`verdict_text`'s (the CLI's and the report's).

* gap: faulty - reference, paired by seed, with its interval.
* Per factor, on the faulty side: the effect of switching it alone to the
  reference's level and the share of the gap that closes; on the reference side: the
  effect of switching it alone to the faulty level and the share of the gap it opens.
  Each effect has ``status``: established, negligible (within +-``margin``, a tenth
  of the gap) or inconclusive.
* Interactions: for a combination of switches, its effect minus the sum of the
  single switches' effects (non-additivity, interval by pairing seeds).
* Root causes: factors whose switch moves the loss with an established interval and
  explains at least a tenth of the gap, ranked by the share they explain; each cites
  its runs. Established effects under a tenth are ``minor_causes``.
* The smallest fix: the fewest switches to the reference's choices that close the
  gap with an established effect, never diverge, and leave a ``residual`` against the
  reference under the margin (its interval's upper end below ``margin``: ``reaches``).
  A residual whose interval lies above zero and reaches past the margin is beyond
  seed noise (``short_of_reference``): then :func:`verdict_plan.plan_follow_ups`
  proposes combinations to run. A fix that falls short is named with what it leaves.
* ``comparisons``: every interval the verdict's sentences rest on, with its status
  and seed count; :func:`verdict_plan.plan_seeds` adds seeds to the inconclusive ones.
* ``seed_blind``: trainable variables whose initial values the seed does not change
  (:func:`seed_blind_weights`), or None. Its intervals then speak for what the seeds
  do vary (data order, dropout), not for another initialisation.

A study without both bases (one base of your own, say) has no gap to explain: its
verdict has ``mode: "effects"`` and ``effects``, each switch's effect on its own
base's loss with its interval and status, lowest loss first. So does a study whose
faulty base ends no higher than the reference on average, with the ``gap`` it
measured and ``no_gap`` saying why (:func:`_no_gap`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.errors import RecordError
from diagnose.findings.verdict_plan import DEFAULT_MAX_SEEDS, plan_follow_ups, plan_seeds
from diagnose.findings.verdict_stats import (EFFECTS_MARGIN_SHARE, NEGLIGIBLE_SHARE, confidence_after, loss_unit,
                                             outcome_words, paired, run_outcome, status_of, test_words)
from diagnose.findings.verdict_text import effect_words, format_verdict
from diagnose.findings.verdict_types import (BaseEffect, Cause, Combination, Comparison, Factor, Fix, FixPart,
                                             Interval, SeedBlind, Seeds, SwitchEffect, Verdict)

__all__ = ["compute_verdict", "plan_follow_ups", "plan_seeds", "format_verdict", "effect_words", "load_outcomes",
           "seed_blind_weights", "RECOVERED_SHARE"]

# Where no set is shown to reach the reference within noise, a set that closes this
# share of the gap on average is preferred to one that closes less: the last 20%
# leaves room for seed noise and small factors without calling a half-fixed model fixed.
RECOVERED_SHARE = 0.8


def load_outcomes(ablation_dir: str | Path) -> tuple[dict, dict, dict]:
    """Per variant: {seed: outcome} and what the manifest says of it, and the manifest, from ABLATION_DIR."""
    out = Path(ablation_dir)
    manifest = studydir.read_manifest(out)
    outcomes: dict[str, dict[int, float]] = {}
    info: dict[str, dict] = {}
    for e in manifest["runs"]:
        meta = info.setdefault(e["variant"], {"base": e["base"], "factor": e["factor"], "level": e["level"],
                                              "runs": [], "diverged": 0, "level_of": e.get("level_of"),
                                              "switches": [tuple(x) for x in e.get("switches") or []]})
        meta["runs"].append(e["id"])
        y, status = run_outcome(studydir.run_path(out, e["id"]))
        if status == "diverged":
            meta["diverged"] += 1
        if y is not None:
            outcomes.setdefault(e["variant"], {})[e["seed"]] = y
    return outcomes, info, manifest


def _comparer(outcomes: dict, manifest: dict):
    """``compare(a, b)``: b - a paired by seed, its interval widened for the looks either variant had."""
    looks = ((manifest.get("adaptive") or {}).get("seeds") or {}).get("looks") or {}

    def compare(a: str, b: str, a_outcomes: dict | None = None, b_outcomes: dict | None = None) -> Interval:
        level = confidence_after(max(looks.get(a, 1), looks.get(b, 1)))
        return Interval.from_json(paired(outcomes[a] if a_outcomes is None else a_outcomes,
                                         outcomes[b] if b_outcomes is None else b_outcomes, confidence=level))

    return compare


def _judged(interval: Interval, margin: float | None) -> Interval:
    """The interval with what it settles against ``margin`` (:func:`verdict_stats.status_of`)."""
    return dataclasses.replace(interval, status=status_of({"ci": (interval.lo, interval.hi)}, margin))


def _method(manifest: dict, margin_words: str, model: dict) -> dict:
    """How the verdict reads the runs; ``model``: a run's config.json ``model`` entry (the loss's unit)."""
    spec_study = (manifest.get("spec") or {}).get("study") or {}
    cap = spec_study.get("max_seeds", DEFAULT_MAX_SEEDS)
    unit = loss_unit(model)
    outcome = outcome_words(unit, "example" if model.get("kind") == "keras" else "token")
    return {"outcome": outcome, "test": test_words(), "max_seeds": cap, "unit": unit,
            "method": (f"outcome: {outcome}; {test_words()}; an effect is established when its interval "
                       f"excludes zero and negligible when it lies within {margin_words}; seeds are added to the "
                       f"comparisons still inconclusive, up to {cap} per variant")}


def _model_config(out: Path, manifest: dict) -> dict:
    """The ``model`` entry of the first run whose config.json reads ({} where none does)."""
    for e in manifest["runs"]:
        try:
            return runrecord.read_config(studydir.run_path(out, e["id"])).get("model") or {}
        except RecordError:
            continue
    return {}


def compute_verdict(ablation_dir: str | Path, faulty: str | None = None, reference: str | None = None) -> Verdict:
    """The verdict (see the module docstring).

    ``faulty`` and ``reference`` name the two bases of a gap; by default the manifest's
    own (a study of the user's model names them), else as-posted and paper.
    """
    out = Path(ablation_dir)
    outcomes, info, manifest = load_outcomes(out)
    faulty = faulty or manifest.get("faulty") or "as-posted"
    reference = reference or manifest.get("reference") or "paper"
    if faulty not in outcomes or reference not in outcomes:
        if not any(meta["base"] == variant for variant, meta in info.items() if variant in outcomes):
            return Verdict(mode="error",
                           error="no base model of the study has a completed run to compare its switches with")
        return dataclasses.replace(_effects(manifest, outcomes, info, _model_config(out, manifest)),
                                   seed_blind=seed_blind_weights(out, manifest))
    compare = _comparer(outcomes, manifest)
    gap = _judged(compare(reference, faulty), None)  # faulty - reference
    if gap.mean is None or gap.mean <= 0:  # a gap above zero, if unsure yet, is explained (and gets seeds)
        return _no_gap(out, manifest, outcomes, info, gap, faulty, reference)
    gap_size = gap.mean
    margin = NEGLIGIBLE_SHARE * abs(gap_size) if gap_size else None
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    sides: dict[str, dict[str, list[SwitchEffect]]] = {}  # factor -> fix, break, other -> its switches
    combos: list[Combination] = []
    comparisons = [Comparison("gap", faulty, reference, gap)]
    for variant, meta in info.items():
        if variant in (faulty, reference) or variant not in outcomes or meta["base"] not in outcomes:
            continue
        base = meta["base"]
        effect = _judged(compare(base, variant), margin)  # variant - base
        entry = SwitchEffect(variant, tuple(meta["runs"]), means[variant], meta["diverged"], effect,
                             effect.status == "established")
        if meta["factor"] is None:  # a combination of switches
            combos.append(_combination(entry, info, outcomes, compare, faulty, gap_size))
            continue
        f = sides.setdefault(meta["factor"], {"fix": [], "break": [], "other": []})
        # Only a switch to the other base's own choice can blame a factor; other
        # levels (say, no temporal encoding at all) are reported, not ranked.
        level_of = meta["level_of"]
        side = None
        if base == faulty:
            entry = dataclasses.replace(entry, share_closed=(-effect.mean / gap_size) if gap_size else None)
            side = "fix" if level_of is None or reference in level_of else "other"
        elif base == reference:
            entry = dataclasses.replace(entry, share_opened=(effect.mean / gap_size) if gap_size else None)
            side = "break" if level_of is None or faulty in level_of else "other"
        if side:
            f[side].append(entry)
            if side != "other":
                comparisons.append(Comparison(side, variant, base, effect, factor=meta["factor"]))
    factors = [_factor(name, f) for name, f in sides.items() if f["fix"] or f["break"] or f["other"]]
    # A root cause explains at least a tenth of the gap; smaller established effects are listed apart.
    ranked = sorted((f for f in factors if f.significant and f.score >= NEGLIGIBLE_SHARE), key=lambda f: -f.score)
    minor = [f for f in factors if f.significant and 0 < f.score < NEGLIGIBLE_SHARE]
    # A set of switches is a fix only if each switch adopts the reference's choice.
    direct = {f"{m['factor']}={m['level']}" for m in info.values()
              if m["factor"] and m["base"] == faulty and (m["level_of"] is None or reference in m["level_of"])}
    for i, c in enumerate(combos):
        if info[c.variant]["base"] == faulty and all(sw in direct for sw in c.switches):
            # A set that leaves more than the margin for sure can never reach the reference: its
            # effect on the faulty model then decides nothing, and gets no seeds (plan_seeds).
            lo = compare(reference, c.variant).lo
            combos[i] = c = dataclasses.replace(c, is_fix_candidate=True,
                                                falls_short=bool(lo is not None and margin is not None and lo > margin))
            comparisons.append(Comparison("combination", c.variant, faulty, c.effect, falls_short=c.falls_short))
    smallest = _smallest_fix(factors, combos, compare, reference, margin)
    if smallest:
        comparisons.append(Comparison("residual", smallest.variant, reference, smallest.residual))
    return Verdict(
        study=manifest.get("study"), faulty=faulty, reference=reference,
        **_method(manifest, f"+-{NEGLIGIBLE_SHARE:.0%} of the gap", _model_config(out, manifest)),
        margin=margin, means=means, gap=gap, factors=tuple(sorted(factors, key=lambda f: -f.score)),
        combinations=tuple(combos),
        root_causes=tuple(Cause(f.factor, f.share_closed, f.share_opened,
                                tuple(r for e in f.fixes + f.breaks for r in e.runs)) for f in ranked),
        minor_causes=tuple(Cause(f.factor, f.share_closed if f.fix_established else None,
                                 f.share_opened if f.break_established else None)
                           for f in sorted(minor, key=lambda f: -f.score)),
        smallest_fix=smallest, comparisons=tuple(comparisons), seeds=_seed_counts(outcomes),
        baselines=manifest.get("corpus") or {}, seed_blind=seed_blind_weights(out, manifest))


def _no_gap(out: Path, manifest: dict, outcomes: dict, info: dict, gap: Interval, faulty: str,
            reference: str) -> Verdict:
    """The verdict where the faulty base ends no higher than the reference on average.

    There is then no gap whose shares could rank causes or name a fix: the verdict is
    each switch's effect on its own base (``mode: "effects"``), headed by the gap as
    measured and ``no_gap``: ``"inconclusive"`` (its interval includes zero; seeds go to
    it as to any inconclusive comparison, so a later round may find the gap) or
    ``"reversed"`` (the faulty base ends below the reference beyond seed noise: the two
    are likely named the wrong way round). A gap above zero whose interval still
    includes zero is explained as any gap, its headline saying it is unsure.
    """
    verdict = _effects(manifest, outcomes, info, _model_config(out, manifest))
    return dataclasses.replace(verdict, faulty=faulty, reference=reference, gap=gap,
                               no_gap="inconclusive" if gap.status != "established" else "reversed",
                               seed_blind=seed_blind_weights(out, manifest),
                               comparisons=(Comparison("gap", faulty, reference, gap), *verdict.comparisons))


def seed_blind_weights(ablation_dir: str | Path, manifest: dict | None = None) -> SeedBlind | None:
    """Trainable variables whose initial values do not change with the run's seed.

    Each record keeps a 64-bit digest of every variable's initial values
    (``initial_weight_digests``; none for a variable whose entries are all equal, as
    zeros or ones, which no seed draws). Two runs of one variant at different seeds
    with the same digest of a variable did not draw it from their seeds: its
    initializer was given a fixed seed, or made once outside the builder (Keras then
    draws the same values at every call, and another set in another process), or the
    weights were loaded. Weights drawn from the seed coincide with probability about
    2**-64, so one such pair decides; nothing here is estimated.

    Returns:
        None where no variant has such a pair (or no record has digests); else the
        variables, how many variables have digests, the variants in which it was seen,
        and how many variants have runs at two seeds or more.
    """
    out = Path(ablation_dir)
    manifest = manifest or studydir.read_manifest(out)
    by_variant: dict[str, list[tuple[int, dict]]] = {}
    for e in manifest["runs"]:
        try:
            digests = runrecord.read_summary(studydir.run_path(out, e["id"])).get("initial_weight_digests")
        except RecordError:
            continue  # a run not run yet, or damaged: check and the sweep say so
        if isinstance(digests, dict):
            by_variant.setdefault(e["variant"], []).append((e["seed"], digests))
    blind: set[str] = set()
    variants, compared, random_names = [], 0, set()
    for variant, runs in by_variant.items():
        if len({seed for seed, _ in runs}) < 2:
            continue
        compared += 1
        seen: dict[tuple[str, str], set] = {}
        for seed, digests in runs:
            for name, digest in digests.items():
                if digest is not None:
                    random_names.add(name)
                    seen.setdefault((name, digest), set()).add(seed)
        names = {name for (name, _), seeds in seen.items() if len(seeds) > 1}
        if names:
            blind |= names
            variants.append(variant)
    if not blind:
        return None
    return SeedBlind(tuple(sorted(blind)), len(random_names), tuple(variants), compared)


def _factor(name: str, sides: dict[str, list[SwitchEffect]]) -> Factor:
    """A factor's switches, its best fixing and breaking switch, whether either is established, and its score."""
    best_fix = max(sides["fix"], key=lambda e: e.share_closed or -math.inf, default=None)
    best_break = max(sides["break"], key=lambda e: e.share_opened or -math.inf, default=None)
    share_closed = best_fix.share_closed if best_fix else None
    share_opened = best_break.share_opened if best_break else None
    fix_sig = bool(best_fix and best_fix.effect.mean is not None and best_fix.effect.mean < 0
                   and best_fix.effect.excludes_zero)
    break_sig = bool(best_break and best_break.effect.mean is not None and best_break.effect.mean > 0
                     and best_break.effect.excludes_zero)
    # Only an established side's share counts: a factor is not a cause by a share its interval does not back.
    score = max((share_closed or 0.0) if fix_sig else 0.0, (share_opened or 0.0) if break_sig else 0.0)
    return Factor(name, tuple(sides["fix"]), tuple(sides["break"]), tuple(sides["other"]),
                  best_fix.variant if best_fix else None, share_closed, share_opened, fix_sig, break_sig,
                  fix_sig or break_sig, score)


def _combination(e: SwitchEffect, info: dict, outcomes: dict, compare, faulty: str, gap_size) -> Combination:
    """A combination's switches, share of the gap and interaction (its effect minus its parts' sum)."""
    parts = [f"{f}={lv}" for f, lv in info[e.variant]["switches"]] or \
        [p.strip() for p in e.variant.split("|", 1)[1].split("+")]
    base = info[e.variant]["base"]
    singles = [f"{base} | {p}" for p in parts]
    interaction = None
    if all(s in outcomes for s in singles):
        seeds = set(outcomes[e.variant]).intersection(*(outcomes[s] for s in singles), outcomes[base])
        additive = {s: sum(outcomes[x][s] - outcomes[base][s] for x in singles) + outcomes[base][s] for s in seeds}
        interaction = compare(base, e.variant, additive, {s: outcomes[e.variant][s] for s in seeds})
    closed = (-e.effect.mean / gap_size) if gap_size and e.effect.mean is not None and base == faulty else None
    return Combination(e.variant, e.runs, e.mean_loss, e.diverged, e.effect, e.established, closed,
                       switches=tuple(parts), interaction=interaction)


def _smallest_fix(factors: list[Factor], combos: list[Combination], compare, reference: str,
                  margin) -> Fix | None:
    """The fewest switches that close the gap for sure, stably, reaching the reference (see the module docstring).

    Candidates are ordered by: reaching the reference within noise (interval); else
    closing :data:`RECOVERED_SHARE` of the gap on average; then never diverging; then
    an established effect; then fewer switches; then a larger share. The first is
    named, with what it falls short of.
    """
    def candidate(switches: tuple[str, ...], e: SwitchEffect) -> Fix:
        residual = _judged(compare(reference, e.variant), margin)  # fix - reference
        reaches = bool(residual.hi is not None and margin is not None and residual.hi < margin)
        return Fix(switches, e.variant, e.share_closed, dataclasses.replace(e.effect, sd=None, status=None), e.runs,
                   e.diverged, confident=bool(e.effect.mean is not None and e.effect.mean < 0
                                               and e.effect.excludes_zero),
                   stable=not e.diverged, residual=residual, reaches=reaches,
                   short_of_reference=bool(not reaches and residual.lo is not None and residual.lo > 0))

    singles = [candidate((e.switch,), e) for f in factors for e in f.fixes if (e.share_closed or 0) > 0]
    sets = [candidate(c.switches, c) for c in combos if c.is_fix_candidate and (c.share_closed or 0) > 0]
    smallest = min(singles + sets, key=lambda x: (not x.reaches, (x.share_closed or 0) < RECOVERED_SHARE,
                                                  not x.stable, not x.confident, len(x.switches),
                                                  -(x.share_closed or 0)), default=None)
    if smallest is None:
        return None
    # Single switches that close as much but diverged on some seed: why a set was needed.
    smallest = dataclasses.replace(smallest, unstable_alone=tuple(
        x.switches[0] for x in singles if x.diverged and x is not smallest
        and (x.share_closed or 0) >= (smallest.share_closed or 0) - 0.1))
    if len(smallest.switches) > 1:
        by_switch = {x.switches[0]: x for x in singles}
        combo = next(c for c in combos if c.variant == smallest.variant)
        smallest = dataclasses.replace(smallest, interaction=combo.interaction, parts=tuple(
            _part(sw, by_switch.get(sw), factors) for sw in smallest.switches))
    return smallest


def _part(switch: str, single: Fix | None, factors: list[Factor]) -> FixPart:
    """A switch of a set, alone: its share of the gap (negative: it widens it), seeds and divergences."""
    if single is not None:  # it closes part of the gap alone: a candidate of its own, whose status
        # verdict.json has never held (None), unlike a part that widens the gap (kept as found)
        return FixPart(switch, single.share_closed, single.diverged, single.effect.n, None)
    # It widens the gap alone, so it is not among the single candidates.
    factor = next((f for f in factors if f.factor == switch.split("=", 1)[0]), None)
    alone = next((e for e in (factor.fixes if factor else ()) if e.variant.endswith(f"| {switch}")), None)
    if alone is None:
        return FixPart(switch, None)
    return FixPart(switch, alone.share_closed, alone.diverged, alone.effect.n, alone.status)


def _seed_counts(outcomes: dict) -> Seeds:
    """Seeds with an outcome: the fewest and most of any variant, and per variant."""
    counts = {v: len(ys) for v, ys in outcomes.items()}
    return Seeds(min(counts.values(), default=0), max(counts.values(), default=0), counts)


def _effects(manifest: dict, outcomes: dict, info: dict, model: dict) -> Verdict:
    """A study without both bases of a gap (say one base of your own): no gap to
    explain, so each switch's effect on its own base's loss, best first."""
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    compare = _comparer(outcomes, manifest)
    effects, comparisons = [], []
    for variant, meta in info.items():
        base = meta["base"]
        if variant == base or variant not in outcomes or base not in outcomes:
            continue
        margin = EFFECTS_MARGIN_SHARE * abs(means[base])
        effect = _judged(compare(base, variant), margin)  # variant - base
        effects.append(BaseEffect(variant, base, meta["factor"], tuple(meta["runs"]), means[variant],
                                  meta["diverged"], margin, effect.status == "established", effect))
        comparisons.append(Comparison("effect", variant, base, effect))
    effects.sort(key=lambda e: math.inf if e.effect.mean is None else e.effect.mean)
    return Verdict(
        mode="effects", study=manifest.get("study"), bases=tuple(sorted({e.base for e in effects})),
        **_method(manifest, f"+-{EFFECTS_MARGIN_SHARE:.0%} of the base's loss", model),
        means=means, effects=tuple(effects), comparisons=tuple(comparisons), seeds=_seed_counts(outcomes),
        baselines=manifest.get("corpus") or {})

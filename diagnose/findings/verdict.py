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

import math
import statistics
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.errors import RecordError
from diagnose.findings.verdict_plan import DEFAULT_MAX_SEEDS, plan_follow_ups, plan_seeds
from diagnose.findings.verdict_stats import (EFFECTS_MARGIN_SHARE, NEGLIGIBLE_SHARE, confidence_after,
                                             divergence_of, excludes_zero, loss_unit, outcome_words, paired,
                                             run_outcome, status_of, test_words)
from diagnose.findings.verdict_text import effect_words, format_verdict
from diagnose.findings.verdict_types import Verdict

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
            how = divergence_of(studydir.run_path(out, e["id"])) or {}
            for key in ("at_once", "went_on"):
                meta[key] = meta.get(key, 0) + bool(how.get(key))
        if y is not None:
            outcomes.setdefault(e["variant"], {})[e["seed"]] = y
    return outcomes, info, manifest


def _comparer(outcomes: dict, manifest: dict):
    """``compare(a, b)``: b - a paired by seed, its interval widened for the looks either variant had."""
    looks = ((manifest.get("adaptive") or {}).get("seeds") or {}).get("looks") or {}

    def compare(a: str, b: str, a_outcomes: dict | None = None, b_outcomes: dict | None = None) -> dict:
        level = confidence_after(max(looks.get(a, 1), looks.get(b, 1)))
        return paired(outcomes[a] if a_outcomes is None else a_outcomes,
                      outcomes[b] if b_outcomes is None else b_outcomes, confidence=level)

    return compare


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
    """The verdict (see the module docstring): built as its JSON, read back as its type.

    ``faulty`` and ``reference`` name the two bases of a gap; by default the manifest's
    own (a study of the user's model names them), else as-posted and paper.
    """
    return Verdict.from_json(_verdict_json(ablation_dir, faulty, reference))


def _verdict_json(ablation_dir: str | Path, faulty: str | None, reference: str | None) -> dict:
    outcomes, info, manifest = load_outcomes(ablation_dir)
    faulty = faulty or manifest.get("faulty") or "as-posted"
    reference = reference or manifest.get("reference") or "paper"
    if faulty not in outcomes or reference not in outcomes:
        if not any(meta["base"] == variant for variant, meta in info.items() if variant in outcomes):
            return {"error": "no base model of the study has a completed run to compare its switches with",
                    "factors": [], "root_causes": [], "comparisons": []}
        return {**_effects(manifest, outcomes, info, _model_config(Path(ablation_dir), manifest)),
                "seed_blind": seed_blind_weights(ablation_dir, manifest)}
    compare = _comparer(outcomes, manifest)
    gap = compare(reference, faulty)  # faulty - reference
    gap["status"] = status_of(gap, None)
    if gap["effect"] is None or gap["effect"] <= 0:  # a gap above zero, if unsure yet, is explained (and gets seeds)
        return _no_gap(ablation_dir, manifest, outcomes, info, gap, faulty, reference)
    gap_size = gap["effect"]
    margin = NEGLIGIBLE_SHARE * abs(gap_size) if gap_size else None
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    factors: dict[str, dict] = {}
    combos, comparisons = [], [{"kind": "gap", "variant": faulty, "against": reference, **gap}]
    for variant, meta in info.items():
        if variant in (faulty, reference) or variant not in outcomes or meta["base"] not in outcomes:
            continue
        base = meta["base"]
        effect = compare(base, variant)  # variant - base
        entry = {"variant": variant, "runs": meta["runs"], "mean_loss": means[variant], "diverged": meta["diverged"],
                 **effect, "status": status_of(effect, margin)}
        entry["established"] = entry["status"] == "established"
        if meta["factor"] is None:  # a combination of switches
            combos.append(entry)
            continue
        f = factors.setdefault(meta["factor"], {"factor": meta["factor"], "fix": [], "break": [], "other": []})
        # Only a switch to the other base's own choice can blame a factor; other
        # levels (say, no temporal encoding at all) are reported, not ranked.
        level_of = meta["level_of"]
        side = None
        if base == faulty:
            entry["share_closed"] = (-effect["effect"] / gap_size) if gap_size else None
            side = "fix" if level_of is None or reference in level_of else "other"
        elif base == reference:
            entry["share_opened"] = (effect["effect"] / gap_size) if gap_size else None
            side = "break" if level_of is None or faulty in level_of else "other"
        if side:
            f[side].append(entry)
            if side != "other":
                comparisons.append({"kind": side, "factor": meta["factor"], "variant": variant, "against": base,
                                    **effect, "status": entry["status"]})
    for f in factors.values():
        _summarise_factor(f)
    _interactions(combos, info, outcomes, compare, faulty, gap_size)
    factors = {k: f for k, f in factors.items() if f["fix"] or f["break"] or f["other"]}
    # A root cause explains at least a tenth of the gap; smaller established effects are listed apart.
    ranked = sorted((f for f in factors.values() if f["significant"] and f["score"] >= NEGLIGIBLE_SHARE),
                    key=lambda f: -f["score"])
    minor = [f for f in factors.values() if f["significant"] and 0 < f["score"] < NEGLIGIBLE_SHARE]
    # A set of switches is a fix only if each switch adopts the reference's choice.
    direct = {f"{m['factor']}={m['level']}" for m in info.values()
              if m["factor"] and m["base"] == faulty and (m["level_of"] is None or reference in m["level_of"])}
    for c in combos:
        c["is_fix_candidate"] = info[c["variant"]]["base"] == faulty and all(sw in direct for sw in c["switches"])
        if c["is_fix_candidate"]:
            # A set that leaves more than the margin for sure can never reach the reference: its
            # effect on the faulty model then decides nothing, and gets no seeds (plan_seeds).
            lo = compare(reference, c["variant"])["ci"][0]
            c["falls_short"] = bool(lo is not None and margin is not None and lo > margin)
            comparisons.append({"kind": "combination", "variant": c["variant"], "against": faulty,
                                **{k: c[k] for k in ("effect", "ci", "n", "sd", "confidence", "status",
                                                     "falls_short")}})
    smallest = _smallest_fix(factors, combos, compare, reference, margin)
    if smallest:
        comparisons.append({"kind": "residual", "variant": smallest["variant"], "against": reference,
                            **smallest["residual"]})
    return {
        "study": manifest.get("study"), "faulty": faulty, "reference": reference,
        **_method(manifest, f"+-{NEGLIGIBLE_SHARE:.0%} of the gap", _model_config(Path(ablation_dir), manifest)),
        "margin": margin, "means": means, "gap": gap,
        "factors": sorted(factors.values(), key=lambda f: -f["score"]),
        "combinations": combos,
        "root_causes": [{"factor": f["factor"], "share_closed": f["share_closed"], "share_opened": f["share_opened"],
                         "runs": [r for e in f["fix"] + f["break"] for r in e["runs"]]} for f in ranked],
        "minor_causes": [{"factor": f["factor"], "share_closed": f["share_closed"] if f["fix_established"] else None,
                          "share_opened": f["share_opened"] if f["break_established"] else None}
                         for f in sorted(minor, key=lambda f: -f["score"])],
        "smallest_fix": smallest,
        "comparisons": comparisons,
        "seeds": _seed_counts(outcomes),
        "baselines": manifest.get("corpus", {}),
        "seed_blind": seed_blind_weights(ablation_dir, manifest),
        **_divergences(info),
    }


def _divergences(info: dict) -> dict:
    """``{"divergences": {variant: {"at_once", "went_on"}}}``: per variant, its seeds that diverged by the first
    logged row and those whose training went on past the divergence; ``{}`` where none did either (a run that
    diverged later and stopped there, as the built-in trainer's do, is said by ``diverged`` alone)."""
    found = {v: {"at_once": m.get("at_once", 0), "went_on": m.get("went_on", 0)} for v, m in info.items()
             if m.get("at_once") or m.get("went_on")}
    return {"divergences": found} if found else {}


def _no_gap(ablation_dir, manifest: dict, outcomes: dict, info: dict, gap: dict, faulty: str, reference: str) -> dict:
    """The verdict where the faulty base ends no higher than the reference on average.

    There is then no gap whose shares could rank causes or name a fix: the verdict is
    each switch's effect on its own base (``mode: "effects"``), headed by the gap as
    measured and ``no_gap``: ``"inconclusive"`` (its interval includes zero; seeds go to
    it as to any inconclusive comparison, so a later round may find the gap) or
    ``"reversed"`` (the faulty base ends below the reference beyond seed noise: the two
    are likely named the wrong way round). A gap above zero whose interval still
    includes zero is explained as any gap, its headline saying it is unsure.
    """
    verdict = _effects(manifest, outcomes, info, _model_config(Path(ablation_dir), manifest))
    verdict.update(faulty=faulty, reference=reference, gap=gap,
                   no_gap="inconclusive" if gap["status"] != "established" else "reversed",
                   seed_blind=seed_blind_weights(ablation_dir, manifest))
    verdict["comparisons"].insert(0, {"kind": "gap", "variant": faulty, "against": reference, **gap})
    return verdict


def seed_blind_weights(ablation_dir: str | Path, manifest: dict | None = None) -> dict | None:
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
        None where no variant has such a pair (or no record has digests); else
        ``{"variables": [NAME, ...], "random": int, "variants": [VARIANT, ...],
        "of_variants": int}``: the variables, how many variables have digests, the
        variants in which it was seen, and how many variants have runs at two seeds or more.
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
    return {"variables": sorted(blind), "random": len(random_names), "variants": variants, "of_variants": compared}


def _summarise_factor(f: dict) -> None:
    """A factor's best fixing and breaking switch, whether either is established, and its score."""
    best_fix = max(f["fix"], key=lambda e: e.get("share_closed") or -math.inf, default=None)
    best_break = max(f["break"], key=lambda e: e.get("share_opened") or -math.inf, default=None)
    f["best_fix"] = best_fix["variant"] if best_fix else None
    f["share_closed"] = best_fix.get("share_closed") if best_fix else None
    f["share_opened"] = best_break.get("share_opened") if best_break else None
    fix_sig = bool(best_fix and best_fix["effect"] is not None and best_fix["effect"] < 0
                   and excludes_zero(best_fix["ci"]))
    break_sig = bool(best_break and best_break["effect"] is not None and best_break["effect"] > 0
                     and excludes_zero(best_break["ci"]))
    f["fix_established"], f["break_established"] = fix_sig, break_sig
    f["significant"] = fix_sig or break_sig
    # Only an established side's share counts: a factor is not a cause by a share its interval does not back.
    f["score"] = max((f["share_closed"] or 0.0) if fix_sig else 0.0, (f["share_opened"] or 0.0) if break_sig else 0.0)


def _interactions(combos: list, info: dict, outcomes: dict, compare, faulty: str, gap_size) -> None:
    """Each combination's switches, share of the gap and interaction (its effect minus its parts' sum)."""
    for c in combos:
        parts = [f"{f}={lv}" for f, lv in info[c["variant"]]["switches"]] or \
            [p.strip() for p in c["variant"].split("|", 1)[1].split("+")]
        c["switches"] = parts
        base = info[c["variant"]]["base"]
        singles = [f"{base} | {p}" for p in parts]
        if all(s in outcomes for s in singles):
            seeds = set(outcomes[c["variant"]]).intersection(*(outcomes[s] for s in singles), outcomes[base])
            additive = {s: sum(outcomes[x][s] - outcomes[base][s] for x in singles) + outcomes[base][s] for s in seeds}
            c["interaction"] = compare(base, c["variant"], additive, {s: outcomes[c["variant"]][s] for s in seeds})
        c["share_closed"] = (-c["effect"] / gap_size) if gap_size and c["effect"] is not None and base == faulty \
            else None


def _smallest_fix(factors: dict, combos: list, compare, reference: str, margin) -> dict | None:
    """The fewest switches that close the gap for sure, stably, reaching the reference (see the module docstring).

    Candidates are ordered by: reaching the reference within noise (interval); else
    closing :data:`RECOVERED_SHARE` of the gap on average; then never diverging; then
    an established effect; then fewer switches; then a larger share. The first is
    named, with what it falls short of.
    """
    def entry(switches: list[str], e: dict) -> dict:
        residual = compare(reference, e["variant"])  # fix - reference
        residual["status"] = status_of(residual, margin)
        lo, hi = residual["ci"]
        reaches = bool(hi is not None and margin is not None and hi < margin)
        return {"switches": switches, "variant": e["variant"], "share_closed": e.get("share_closed"),
                "effect": e["effect"], "ci": e["ci"], "n": e["n"], "confidence": e.get("confidence"),
                "runs": e["runs"], "diverged": e["diverged"],
                "confident": bool(e["effect"] is not None and e["effect"] < 0 and excludes_zero(e["ci"])),
                "stable": not e["diverged"], "residual": residual,
                "reaches": reaches, "short_of_reference": bool(not reaches and lo is not None and lo > 0)}

    singles = [entry([e["variant"].split("|", 1)[1].strip()], e)
               for f in factors.values() for e in f["fix"] if (e.get("share_closed") or 0) > 0]
    sets = [entry(c["switches"], c) for c in combos if c["is_fix_candidate"] and (c.get("share_closed") or 0) > 0]
    candidates = singles + sets
    smallest = min(candidates, key=lambda x: (not x["reaches"], (x["share_closed"] or 0) < RECOVERED_SHARE,
                                              not x["stable"], not x["confident"], len(x["switches"]),
                                              -(x["share_closed"] or 0)), default=None)
    if smallest is None:
        return None
    by_switch = {x["switches"][0]: x for x in singles}
    # Single switches that close as much but diverged on some seed: why a set was needed.
    smallest["unstable_alone"] = [x["switches"][0] for x in singles if x["diverged"] and x is not smallest
                                  and (x["share_closed"] or 0) >= (smallest["share_closed"] or 0) - 0.1]
    if len(smallest["switches"]) > 1:
        combo = next(c for c in combos if c["variant"] == smallest["variant"])
        smallest["interaction"] = combo.get("interaction")
        smallest["parts"] = [_part(sw, by_switch.get(sw), factors) for sw in smallest["switches"]]
    return smallest


def _part(switch: str, single: dict | None, factors: dict) -> dict:
    """A switch of a set, alone: its share of the gap (negative: it widens it), seeds and divergences."""
    if single is None:  # it widens the gap alone, so it is not among the singles above
        factor = switch.split("=", 1)[0]
        single = next((e for e in factors.get(factor, {}).get("fix", []) if e["variant"].endswith(f"| {switch}")), {})
    return {"switch": switch, "share_closed": single.get("share_closed"), "diverged": single.get("diverged", 0),
            "n": single.get("n", 0), "status": single.get("status")}


def _seed_counts(outcomes: dict) -> dict:
    """Seeds with an outcome: the fewest and most of any variant, and per variant."""
    counts = {v: len(ys) for v, ys in outcomes.items()}
    return {"min": min(counts.values(), default=0), "max": max(counts.values(), default=0), "per_variant": counts}


def _effects(manifest: dict, outcomes: dict, info: dict, model: dict) -> dict:
    """A study without both bases of a gap (say one base of your own): no gap to
    explain, so each switch's effect on its own base's loss, best first."""
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    compare = _comparer(outcomes, manifest)
    effects, comparisons = [], []
    for variant, meta in info.items():
        base = meta["base"]
        if variant == base or variant not in outcomes or base not in outcomes:
            continue
        effect = compare(base, variant)  # variant - base
        margin = EFFECTS_MARGIN_SHARE * abs(means[base])
        status = status_of(effect, margin)
        effects.append({"variant": variant, "base": base, "factor": meta["factor"], "runs": meta["runs"],
                        "mean_loss": means[variant], "diverged": meta["diverged"], "margin": margin,
                        "significant": status == "established", "established": status == "established",
                        "status": status, **effect})
        comparisons.append({"kind": "effect", "variant": variant, "against": base, **effect, "status": status})
    # A run that blew up never ranks above one that did not: its loss counts what it scored before, or a
    # model that learned nothing, which may be lower than a base that learned little.
    effects.sort(key=lambda e: (e["diverged"] > 0, math.inf if e["effect"] is None else e["effect"]))
    return {
        "study": manifest.get("study"), "mode": "effects",
        "bases": sorted({e["base"] for e in effects}),
        **_method(manifest, f"+-{EFFECTS_MARGIN_SHARE:.0%} of the base's loss", model),
        "means": means, "effects": effects, "comparisons": comparisons, "seeds": _seed_counts(outcomes),
        "factors": [], "combinations": [], "root_causes": [], "smallest_fix": None,
        "baselines": manifest.get("corpus", {}), **_divergences(info),
    }

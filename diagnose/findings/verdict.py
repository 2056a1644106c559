"""The verdict of an ablation: which switches cause the gap between as-posted and paper, with CIs.

Outcome of a run: its final validation loss (nats per token). A diverged run counts
with its last validation loss before the divergence, or ln V when it has none: it
did not learn (for a regression, the targets' variance). For each variant, the seeds
pair up with the base's seeds (same seed, same batch order), so an effect is the mean
of per-seed differences, with a 95% paired t-interval (``scipy.stats.t``, n - 1
degrees of freedom). The two bases of a gap are the manifest's ``faulty`` and
``reference`` (a study of the user's own model names them), else as-posted and paper.

* gap: mean(as-posted) - mean(paper), with its interval.
* Per factor, on the as-posted side: the effect of switching it alone to the paper's
  level and the share of the gap that closes; on the paper side: the effect of
  switching it alone to the as-posted level and the share of the gap it opens.
* Interactions: for a combination of switches, its effect minus the sum of the
  single switches' effects (non-additivity, interval by pairing seeds).
* Root causes: factors whose switch moves the loss with an interval that excludes
  zero, ranked by the share of the gap they explain. Each cites its runs.
* The smallest set of fixes: if no single switch closes most of the gap without
  diverging on some seed, :func:`plan_follow_ups` proposes combinations of the
  strongest switches (pairs, then triples, greedily) for the harness to run, until
  one recovers the paper stably. A fix that diverges on some seed is named only when
  no stable one is found, and then with that caveat. ``smallest_fix`` holds the
  ``switches``, ``variant``, ``share_closed``, ``runs``, ``diverged`` (seeds),
  ``confident`` (interval excludes zero) and ``unstable_alone`` (single switches that
  recover the loss but diverged on some seed).

A study without both bases (one base of your own, say) has no gap to explain: its
verdict has ``mode: "effects"`` and ``effects``, each switch's effect on its own
base's loss with its interval and ``significant`` (the interval excludes zero),
lowest loss first.
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.errors import DiagnoseError

__all__ = ["compute_verdict", "plan_follow_ups", "format_verdict", "effect_words", "RECOVERED_SHARE",
           "MAX_FIX_SIZE"]

# A set of switches "recovers the paper" when it closes at least this share of the
# as-posted/paper gap: the last 20% leaves room for seed noise and for factors
# that matter little, without calling a half-fixed model fixed.
RECOVERED_SHARE = 0.8
# Larger sets than this are not searched: 4 switches of 11 factors is already 330
# combinations; beyond it the answer is "switch to the paper's recipe".
MAX_FIX_SIZE = 4
# Strongest single switches kept as candidates for combinations: pairs of 3 are 3 runs per seed,
# which keeps the default study within its 3-minute budget; triples follow if no pair recovers.
CANDIDATES = 3
CONFIDENCE = 0.95


def _outcome(run_dir: Path) -> tuple[float | None, str | None]:
    """(outcome, status) of a run from its own summary (a manifest cut off by a kill may lag)."""
    try:
        summary = runrecord.read_summary(run_dir)
    except DiagnoseError:  # missing or damaged: not an outcome
        return None, None
    status = summary.get("status")
    return _loss(summary, status), status


def _loss(summary: dict, status: str | None) -> float | None:
    loss = (summary.get("final") or {}).get("valid_loss")
    if status == "diverged" and loss is None:
        loss = _unlearned(summary)
    if status not in ("completed", "diverged") or loss is None or not math.isfinite(loss):
        return None if status != "diverged" else _unlearned(summary)
    return float(loss)


def _unlearned(summary: dict) -> float | None:
    """The loss of a model that learned nothing: ln V (a uniform guess) for a classifier, the targets'
    variance (predicting their mean) for a regression."""
    baselines = summary.get("baselines") or {}
    return baselines.get("ln_vocab", baselines.get("target_variance"))


def _paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """Mean of b - a over common seeds with a 95% paired t-interval."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [b[s] - a[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return {"effect": None, "ci": [None, None], "n": 0}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"effect": mean, "ci": [None, None], "n": n}
    sd = statistics.stdev(diffs)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return {"effect": mean, "ci": [mean - half, mean + half], "n": n}


def _excludes_zero(ci) -> bool:
    lo, hi = ci
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def load_outcomes(ablation_dir: str | Path) -> tuple[dict, dict]:
    """Per variant: {seed: outcome} and the manifest entries, from ABLATION_DIR."""
    out = Path(ablation_dir)
    manifest = studydir.read_manifest(out)
    outcomes: dict[str, dict[int, float]] = {}
    info: dict[str, dict] = {}
    for e in manifest["runs"]:
        info.setdefault(e["variant"], {"base": e["base"], "factor": e["factor"], "level": e["level"], "runs": [],
                                       "diverged": 0, "level_of": e.get("level_of"),
                                       "switches": [tuple(x) for x in e.get("switches") or []]})
        info[e["variant"]]["runs"].append(e["id"])
        y, status = _outcome(studydir.run_path(out, e["id"]))
        if status == "diverged":
            info[e["variant"]]["diverged"] += 1
        if y is not None:
            outcomes.setdefault(e["variant"], {})[e["seed"]] = y
    return outcomes, info | {"__manifest__": manifest}


def compute_verdict(ablation_dir: str | Path, faulty: str | None = None, reference: str | None = None) -> dict:
    """The verdict as a JSON-ready dict (see the module docstring).

    ``faulty`` and ``reference`` name the two bases of a gap; by default the manifest's
    own (a study of the user's model names them), else as-posted and paper.
    """
    outcomes, info = load_outcomes(ablation_dir)
    manifest = info.pop("__manifest__")
    faulty = faulty or manifest.get("faulty") or "as-posted"
    reference = reference or manifest.get("reference") or "paper"
    if faulty not in outcomes or reference not in outcomes:
        if not any(meta["base"] == variant for variant, meta in info.items() if variant in outcomes):
            return {"error": "no base model of the study has a completed run to compare its switches with",
                    "factors": [], "root_causes": []}
        return _effects(manifest, outcomes, info)
    gap = _paired(outcomes[reference], outcomes[faulty])  # faulty - reference
    gap_size = gap["effect"]
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    factors: dict[str, dict] = {}
    combos = []
    for variant, meta in info.items():
        if variant in (faulty, reference) or variant not in outcomes:
            continue
        base = meta["base"]
        effect = _paired(outcomes[base], outcomes[variant])  # variant - base
        entry = {"variant": variant, "runs": meta["runs"], "mean_loss": means[variant], "diverged": meta["diverged"],
                 **effect}
        if meta["factor"] is None:  # a combination of switches
            combos.append(entry)
            continue
        f = factors.setdefault(meta["factor"], {"factor": meta["factor"], "fix": [], "break": [], "other": []})
        # Only a switch to the other base's own choice can blame a factor; other
        # levels (say, no temporal encoding at all) are reported, not ranked.
        level_of = meta["level_of"]
        if base == faulty:
            entry["share_closed"] = (-effect["effect"] / gap_size) if gap_size else None
            f["fix" if level_of is None or reference in level_of else "other"].append(entry)
        elif base == reference:
            entry["share_opened"] = (effect["effect"] / gap_size) if gap_size else None
            f["break" if level_of is None or faulty in level_of else "other"].append(entry)
    for f in factors.values():
        best_fix = max(f["fix"], key=lambda e: e.get("share_closed") or -math.inf, default=None)
        best_break = max(f["break"], key=lambda e: e.get("share_opened") or -math.inf, default=None)
        f["best_fix"] = best_fix["variant"] if best_fix else None
        f["share_closed"] = best_fix.get("share_closed") if best_fix else None
        f["share_opened"] = best_break.get("share_opened") if best_break else None
        fix_sig = bool(best_fix and best_fix["effect"] is not None and best_fix["effect"] < 0
                       and _excludes_zero(best_fix["ci"]))
        break_sig = bool(best_break and best_break["effect"] is not None and best_break["effect"] > 0
                         and _excludes_zero(best_break["ci"]))
        f["significant"] = fix_sig or break_sig
        f["score"] = max(f["share_closed"] or 0.0, f["share_opened"] or 0.0)
    # Interactions: a combination's effect against the sum of its parts.
    for c in combos:
        parts = [f"{f}={lv}" for f, lv in info[c["variant"]]["switches"]] or \
            [p.strip() for p in c["variant"].split("|", 1)[1].split("+")]
        c["switches"] = parts
        singles = [f"{faulty if c['variant'].startswith(faulty) else reference} | {p}" for p in parts]
        if all(s in outcomes for s in singles):
            base = info[c["variant"]]["base"]
            seeds = set(outcomes[c["variant"]]).intersection(*(outcomes[s] for s in singles), outcomes[base])
            additive = {s: sum(outcomes[x][s] - outcomes[base][s] for x in singles) + outcomes[base][s] for s in seeds}
            c["interaction"] = _paired(additive, {s: outcomes[c["variant"]][s] for s in seeds})
        c["share_closed"] = (-c["effect"] / gap_size) if gap_size and c["effect"] is not None else None
    factors = {k: f for k, f in factors.items() if f["fix"] or f["break"] or f["other"]}
    ranked = sorted((f for f in factors.values() if f["significant"] and f["score"] > 0),
                    key=lambda f: -f["score"])
    # A set of switches is a fix only if each switch adopts the reference's choice.
    direct = {f"{m['factor']}={m['level']}" for m in info.values()
              if m["factor"] and m["base"] == faulty and (m["level_of"] is None or reference in m["level_of"])}
    for c in combos:
        c["is_fix_candidate"] = c["variant"].startswith(faulty) and all(sw in direct for sw in c["switches"])
    recovered = [c for c in combos if c["is_fix_candidate"] and (c.get("share_closed") or 0) >= RECOVERED_SHARE]
    def fix_entry(switches: list[str], share: float, e: dict) -> dict:
        return {"switches": switches, "variant": e["variant"], "share_closed": share, "runs": e["runs"],
                "diverged": e["diverged"], "confident": _excludes_zero(e["ci"])}

    singles = [fix_entry([f["best_fix"].split("|", 1)[1].strip()], f["share_closed"],
                         next(e for e in f["fix"] if e["variant"] == f["best_fix"]))
               for f in factors.values() if (f["share_closed"] or 0) >= RECOVERED_SHARE]
    sets = [fix_entry(c["switches"], c["share_closed"], c) for c in recovered]
    # A fix that diverges on some seed is no fix yet: a stable set of switches is
    # preferred to it, however many switches that takes; the best unstable one is
    # named (with its caveat) only when no stable set has been found.
    smallest = None
    for pool in ([x for x in singles if not x["diverged"]], [x for x in sets if not x["diverged"]], singles, sets):
        if pool:
            smallest = min(pool, key=lambda x: (len(x["switches"]), -(x["share_closed"] or 0)))
            break
    if smallest:
        # Single switches that recover the loss but diverged on some seed: why a set was needed.
        smallest["unstable_alone"] = [x["switches"][0] for x in singles if x["diverged"] and x is not smallest]
    return {
        "study": manifest.get("study"), "faulty": faulty, "reference": reference,
        "outcome": "final validation loss (nats per token); diverged runs count at their last validation loss",
        "test": f"paired t-interval over seeds, {int(CONFIDENCE * 100)}% (scipy.stats.t)",
        "means": means,
        "gap": gap,
        "factors": sorted(factors.values(), key=lambda f: -f["score"]),
        "combinations": combos,
        "root_causes": [{"factor": f["factor"], "share_closed": f["share_closed"], "share_opened": f["share_opened"],
                         "runs": [r for e in f["fix"] + f["break"] for r in e["runs"]]} for f in ranked],
        "smallest_fix": smallest,
        "baselines": manifest.get("corpus", {}),
    }


def _effects(manifest: dict, outcomes: dict, info: dict) -> dict:
    """A study without both as-posted and paper (say one base of your own): no gap to
    explain, so each switch's effect on its own base's loss, best first."""
    means = {v: statistics.fmean(ys.values()) for v, ys in outcomes.items() if ys}
    effects = []
    for variant, meta in info.items():
        base = meta["base"]
        if variant == base or variant not in outcomes or base not in outcomes:
            continue
        effect = _paired(outcomes[base], outcomes[variant])  # variant - base
        effects.append({"variant": variant, "base": base, "factor": meta["factor"], "runs": meta["runs"],
                        "mean_loss": means[variant], "diverged": meta["diverged"],
                        "significant": _excludes_zero(effect["ci"]), **effect})
    effects.sort(key=lambda e: math.inf if e["effect"] is None else e["effect"])
    return {
        "study": manifest.get("study"), "mode": "effects",
        "bases": sorted({e["base"] for e in effects}),
        "outcome": "final validation loss (nats per token); diverged runs count at their last validation loss",
        "test": f"paired t-interval over seeds, {int(CONFIDENCE * 100)}% (scipy.stats.t)",
        "means": means, "effects": effects,
        "factors": [], "combinations": [], "root_causes": [], "smallest_fix": None,
        "baselines": manifest.get("corpus", {}),
    }


def effect_words(entry: dict) -> str:
    """'lowers the loss', 'raises the loss' or 'within seed noise' for an effects entry."""
    if not entry.get("significant"):
        return "within seed noise"
    return "lowers the loss" if entry["effect"] < 0 else "raises the loss"


def plan_follow_ups(verdict: dict, tried: set[str], faulty: str = "as-posted") -> list[tuple]:
    """Combinations to run next, or [] when a stable fix is known or none is left to try.

    A fix that diverged on some seed does not end the search: sets that add other
    switches to it may train stably.

    Candidates are the strongest switches of the faulty base to the reference's
    choices, one per factor. Greedy: every pair of candidates first; if no pair
    recovers, the best pairs extended by one more candidate; and so on up to
    :data:`MAX_FIX_SIZE`. Only sets made of candidates count as tried.

    Returns:
        ``[(base, ((factor, level), ...)), ...]`` whose variant names are not in ``tried``.
    """
    fix = verdict.get("smallest_fix")
    if (fix and not fix.get("diverged")) or not verdict.get("factors"):
        return []
    faulty = verdict.get("faulty") or faulty
    ranked = sorted((f for f in verdict["factors"] if f.get("best_fix") and (f.get("share_closed") or 0) > 0),
                    key=lambda f: -(f["share_closed"] or 0))[:CANDIDATES]
    switches = [f["best_fix"].split("|", 1)[1].strip() for f in ranked]
    shares = {c["variant"]: c.get("share_closed") or 0 for c in verdict.get("combinations", [])}

    def name(combo) -> str:
        return f"{faulty} | " + " + ".join(combo)

    def as_tuple(combo) -> tuple:
        return (faulty, tuple(tuple(sw.split("=", 1)) for sw in combo))

    level = [tuple(c) for c in itertools.combinations(switches, 2)]
    for size in range(2, MAX_FIX_SIZE + 1):
        if len(switches) < size:
            return []
        untried = [c for c in level if name(c) not in tried]
        if untried:
            return [as_tuple(c) for c in untried]
        # All sets of this size ran and none recovered: extend the best two by one switch.
        best = sorted(level, key=lambda c: -shares.get(name(c), 0))[:2]
        level = list(dict.fromkeys(c + (sw,) for c in best for sw in switches if sw not in c))
    return []


def format_verdict(verdict: dict) -> str:
    """The plain-text verdict: root causes in order, one line each, then the smallest fix."""
    if verdict.get("error"):
        return f"verdict: {verdict['error']}"
    if verdict.get("mode") == "effects":
        lines = [f"effects ({verdict['test']}) of each switch on the final validation loss of its base "
                 f"({', '.join(verdict['bases'])}); no faulty/reference pair here, so no gap to explain:"]
        for e in verdict["effects"]:
            ci = e["ci"]
            lines.append(f"  {e['variant']}: {_signed(e['effect'])} nats (CI {_signed(ci[0])} to {_signed(ci[1])}), "
                         f"{effect_words(e)}{_diverged_note(e)}")
        if not verdict["effects"]:
            lines.append("  no switch has a completed run beside its base")
        return "\n".join(lines)
    gap = verdict["gap"]
    lines = [f"verdict ({verdict['test']}): {verdict['faulty']} ends {_f(gap['effect'])} nats above "
             f"{verdict['reference']} (95% CI {_f(gap['ci'][0])} to {_f(gap['ci'][1])})"]
    if not verdict["root_causes"]:
        lines.append("  no single switch moves the loss beyond seed noise")
    for i, rc in enumerate(verdict["root_causes"], start=1):
        f = next(x for x in verdict["factors"] if x["factor"] == rc["factor"])
        parts = []
        if rc["share_closed"] is not None:
            fix = next(e for e in f["fix"] if e["variant"] == f["best_fix"])
            parts.append(f"switching it alone ({f['best_fix'].split('|', 1)[1].strip()}) closes "
                         f"{rc['share_closed']:.0%} of the gap (effect {_f(fix['effect'])}, "
                         f"CI {_f(fix['ci'][0])} to {_f(fix['ci'][1])}){_diverged_note(fix)}")
        if rc["share_opened"] is not None:
            parts.append(f"on the {verdict['reference']} model it opens {rc['share_opened']:.0%}")
        lines.append(f"  {i}. {rc['factor']}: " + "; ".join(parts))
    fix = verdict.get("smallest_fix")
    if fix and not fix.get("confident"):
        lines.append("  (at this many seeds the 95% interval of the fix's effect still includes zero: "
                     "run more seeds to establish it)")
    if fix and len(fix["switches"]) == 1:
        lines.append(f"  smallest fix: {fix['switches'][0]} ({fix['share_closed']:.0%} of the gap closed)")
    elif fix:
        lines.append(f"  smallest fix: switch {' and '.join(fix['switches'])} together "
                     f"({fix['share_closed']:.0%} of the gap closed); no single one of them does"
                     + (" without diverging on some seed" if fix.get("unstable_alone") else ""))
    else:
        lines.append(f"  no tested set of switches recovers the {verdict['reference']} model's loss")
    if fix and fix.get("diverged"):
        lines.append(f"  (the fix diverged later on {fix['diverged']} of {len(fix['runs'])} seeds: its share counts "
                     "their last validation loss before; it is not yet a stable fix)")
    return "\n".join(lines)


def _diverged_note(entry: dict) -> str:
    """', N of M seeds diverged later' for a variant with diverged runs, else ''."""
    n = entry.get("diverged") or 0
    return f"; {n} of {len(entry['runs'])} seeds diverged later" if n else ""


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"

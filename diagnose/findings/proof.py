"""Proven, refuted or inconclusive: what counterfactual runs over seeds say of each finding's fix.

A proof study trains the run's model as it was (the base) and, for each finding
with a mechanical fix (:mod:`diagnose.findings.fixes`), the same model with that fix
alone, over the same seeds. The fix's effect is the paired difference of the runs'
outcomes (fix - base; the validation loss over the last quarter of a run's steps,
:mod:`diagnose.findings.verdict_stats`) with its 95% t-interval
(:mod:`diagnose.findings.verdict`, effects mode). Each finding is then:

* **proven**: the interval lies below zero (the fix lowers the loss beyond seed
  noise) and the mean improvement is at least the practical margin;
* **refuted**: the interval excludes any improvement larger than the practical margin
  (its lower end is above -margin): whatever the fix does, it does not undo a failure
  of any size that matters, so what the finding blames is not what holds the run back;
* **inconclusive**: neither, at this many seeds (more seeds narrow the interval);
* **untested**: no mechanical fix is declared for it, or none applies to this model;
* **failed**: the fix's runs could not be trained (the error is kept).

A base that diverged on every seed is compared by divergence first: a fix none of
whose runs diverged is proven by that alone (a blown-up run's loss counts as a model
that learned nothing, which can hide a fix that trains).

A fault the loss cannot show (a softmax over one unit: Keras' binary cross-entropy
reads the logits under it) is judged the same way by the validation error (1 -
accuracy) instead, with the margin 5% of the unfixed model's error; without a
recorded accuracy, by the task's error on the probe batch (a classifier's balanced
error, 1 - R^2 for continuous targets, whatever the loss), which also judges a fix
that changes the loss itself (a cross-entropy for a squared error: the two losses'
values are in other units).

The two cannot both hold: a mean improvement of at least the margin puts the
interval's lower end at or below -margin.
"""

from __future__ import annotations

import functools
import statistics

from diagnose import studydir
from diagnose.findings.verdict_plan import seeds_for_half_width
from diagnose.findings.verdict_stats import paired, run_error, run_task_error
from diagnose.findings.verdict_types import Interval, Verdict

__all__ = ["REFUTE_MARGIN", "DEFINITION", "PROOF_MAX_SEEDS", "judge", "proof_of", "proof_seeds", "format_proof",
           "proof_line", "findings_with_proof"]

# The practical margin: 5% of the unfixed model's validation loss (its outcome). A failure worth
# diagnosing costs more than that (the faults this toolkit is built for cost 20% to
# several times the loss), while seed-to-seed noise of a small model is ~1-3% of it;
# relative, so it means the same for nats and for a squared error.
REFUTE_MARGIN = 0.05
# Seeds a proof adds to, where a finding stays inconclusive (3 to start): at 8 a paired
# interval (t = 2.84 at the second look's 97.5%) is about a seed-sd wide on each side,
# 2.5x narrower than at 3; past it each seed buys little and a proof should stay quick
# (``--max-seeds`` buys more).
PROOF_MAX_SEEDS = 8
# A base that diverged on every one of at least 3 seeds (a fix that then diverges on none is proven by
# that alone): fewer seeds could be luck; on 3 of 3 against 0 of 3, the chance that the fix changed nothing
# is 1 in 20 (Fisher's exact test, one-sided).
MIN_DIVERGED_SEEDS = 3
DEFINITION = (f"proven: the fix lowers the validation loss with a 95% interval below zero, by at least "
              f"the margin ({REFUTE_MARGIN:.0%} of the unfixed model's loss) on average; refuted: the interval "
              "excludes any improvement larger than the margin; inconclusive: neither at this many seeds")


def judge(effect: float | None, ci, margin: float) -> str:
    """'proven', 'refuted' or 'inconclusive' for a fix's effect (fix - base) and its interval."""
    lo, hi = ci if ci else (None, None)
    if effect is None or lo is None or hi is None:
        return "inconclusive"
    if hi < 0 and effect <= -margin:
        return "proven"
    if lo > -margin:
        return "refuted"
    return "inconclusive"


def _measured(study, base: str, variant: str, read) -> dict[str, dict[int, float]]:
    values: dict[str, dict[int, float]] = {base: {}, variant: {}}
    for e in studydir.read_manifest(study).get("runs", []):
        if e.get("variant") in values:
            value = read(studydir.run_path(study, e["id"]))
            if value is not None:
                values[e["variant"]][int(e["seed"])] = value
    return values


def _by_error(study, base: str, variant: str, confidence: float, judged_by: str = "error",
              output: str | None = None) -> tuple[dict | None, float | None, str | None, str]:
    """The fix's paired effect on the validation error (fix - base), the base's error, why not where there is
    none, and the measure's name: for a finding whose fault the loss cannot show (``judged_by="error"``: the
    validation error where the runs recorded an accuracy, else the task's error on the probe batch) or whose
    fix changes the loss itself (``judged_by="task"``: the task's error, comparable across losses). ``output``:
    the output the finding is about, on a model with several (its own accuracy and task error)."""
    if study is None:
        return None, None, "judged by the validation error, which needs the proof study's records", ""
    values = _measured(study, base, variant, functools.partial(run_error, output=output)) \
        if judged_by == "error" else {}
    measure = "validation error"
    if not values or not values[base] or not values[variant]:
        values, measure = (_measured(study, base, variant, functools.partial(run_task_error, output=output)),
                           "task error on the probe batch")
    if output is not None:
        measure += f" of output '{output}'"
    if not values[base] or not values[variant]:
        return None, None, ("judged by the task's error (the loss cannot show this fault, or the fix changes the "
                            "loss), which the runs did not record: they had no held-out probe batch with "
                            "targets"), measure
    effect = paired(values[base], values[variant], confidence)
    return effect, statistics.fmean(values[base].values()), None, measure


def _diverged_seeds(study, variant: str) -> tuple[int, int] | None:
    """(diverged, runs) of a variant in the proof study, or None without its manifest."""
    if study is None:
        return None
    runs = [e for e in studydir.read_manifest(study).get("runs", []) if e.get("variant") == variant
            and e.get("status") in ("completed", "diverged")]
    return sum(e.get("status") == "diverged" for e in runs), len(runs)


def proof_of(verdict: Verdict, plan: dict, errors: dict | None = None, study=None) -> dict:
    """The proof section of a proof study's verdict.

    Args:
        verdict: the study's verdict (effects mode: each variant against the base).
        plan: the manifest's ``proof``: ``base`` (the variant name of the unfixed model)
            and ``findings``, each with ``id``, ``kind``, ``title`` and either
            ``variant`` and ``fix`` (its fix's variant and words) or ``untested`` (why).
        errors: variant -> the first error of its failed runs, where some failed.
        study: the proof study's directory, read for the findings judged by the
            validation error rather than the loss (see :mod:`diagnose.findings.fixes`).
    """
    base = plan["base"]
    base_loss = verdict.means.get(base)
    margin = REFUTE_MARGIN * abs(base_loss) if base_loss is not None else None
    effects = {e.variant: e for e in verdict.effects}
    findings = []
    base_diverged = _diverged_seeds(study, base)
    for planned in plan.get("findings", []):
        entry = dict(planned)
        variant = planned.get("variant")
        fixed_diverged = _diverged_seeds(study, variant) if variant is not None else None
        if variant is None:
            entry["status"] = "untested"
        elif (errors or {}).get(variant) and variant not in effects:
            entry.update(status="failed", error=errors[variant])  # the fix could not be run: say so, with why
        elif base_diverged and fixed_diverged and base_diverged[1] >= MIN_DIVERGED_SEEDS \
                and base_diverged[0] == base_diverged[1] and fixed_diverged[1] == base_diverged[1] \
                and fixed_diverged[0] == 0:
            # Every unfixed run blew up and no fixed one did: a loss compared with a blown-up run's says less
            # than that (it counts as a model that learned nothing, however far it blew).
            e = effects.get(variant)
            effect = e.effect if e else Interval(None, confidence=None)
            entry.update(status="proven", measure="divergence", effect=effect.mean,
                         ci=[effect.lo, effect.hi] if e else None,
                         n=base_diverged[1], sd=effect.sd, confidence=effect.confidence,
                         fixed_loss=e.mean_loss if e else None, diverged=0, runs=list(e.runs) if e else [],
                         base_diverged=base_diverged[0])
        elif planned.get("judged_by") in ("error", "task"):
            fixed_effect = effects.get(variant)
            e, base_error, why, measure = _by_error(study, base, variant,
                                                    fixed_effect.effect.confidence if fixed_effect else 0.95,
                                                    planned["judged_by"], planned.get("output"))
            if e is None:
                entry.update(status="untested", untested=why)
            else:
                fixed = None if e["effect"] is None else base_error + e["effect"]
                entry.update(status=judge(e["effect"], e["ci"], REFUTE_MARGIN * base_error), effect=e["effect"],
                             ci=e["ci"], n=e["n"], sd=e["sd"], confidence=e["confidence"],
                             measure=measure, base_value=base_error,
                             fixed_value=fixed, margin=REFUTE_MARGIN * base_error,
                             diverged=fixed_effect.diverged if fixed_effect else 0,
                             runs=list(fixed_effect.runs) if fixed_effect else [])
        elif variant not in effects or margin is None:
            entry["status"] = "inconclusive"
            entry["untested"] = (errors or {}).get(variant) or "the fix's runs have no outcome beside the base's"
        else:
            e = effects[variant]
            effect = e.effect
            entry.update(status=judge(effect.mean, [effect.lo, effect.hi], margin), effect=effect.mean,
                         ci=[effect.lo, effect.hi], n=effect.n, sd=effect.sd, confidence=effect.confidence,
                         fixed_loss=e.mean_loss, diverged=e.diverged, runs=list(e.runs))
        findings.append(entry)
    return {"run": plan.get("run"), "base": base, "base_loss": base_loss, "margin": margin,
            "definition": DEFINITION, "findings": findings,
            "counts": {s: sum(f["status"] == s for f in findings)
                       for s in ("proven", "refuted", "inconclusive", "untested", "failed")}}


def proof_seeds(proof: dict, cap: int = PROOF_MAX_SEEDS) -> dict[str, int]:
    """Seeds each variant of a proof study should have so that its inconclusive findings may settle.

    A finding whose fix helps by at least the margin on average needs an interval
    clear of zero (half-width under its mean improvement); any other needs it clear
    of an improvement of the margin (half-width under mean + margin), which refutes
    it. Both the fix's variant and the base get the seeds (they pair by seed), at
    most ``cap``; a finding estimated to need more than ``cap`` gets none.

    Returns:
        ``{variant: seeds}`` for the variants to extend, or {}.
    """
    counts: dict[str, int] = {}
    for f in proof.get("findings", []):
        margin = f.get("margin", proof.get("margin"))
        if f.get("status") != "inconclusive" or f.get("effect") is None or margin is None or f.get("n", 0) >= cap:
            continue
        target = -f["effect"] if f["effect"] <= -margin else f["effect"] + margin
        n = seeds_for_half_width(Interval.from_json(f), target, cap)
        if n is not None and n > f["n"]:
            for variant in (f["variant"], proof["base"]):
                counts[variant] = max(counts.get(variant, 0), n)
    return counts


def proof_line(entry: dict) -> str:
    """One line on one finding's proof: its status and what the fix did."""
    status = entry["status"].upper()
    if entry["status"] == "untested":
        return f"{status}: {entry.get('untested') or 'no mechanical fix'}"
    if entry["status"] == "failed":
        return f"{status}: {entry.get('fix')} could not be run: {entry.get('error')}"
    if entry.get("measure") == "divergence":
        return (f"{status}: {entry['fix']}: none of {entry['n']} fixed runs diverged, every unfixed one did"
                + (f" (validation loss {entry['effect']:+.3f})" if entry.get("effect") is not None else ""))
    if entry.get("effect") is None:
        return f"{status}: {entry.get('fix')}: {entry.get('untested')}"
    lo, hi = entry["ci"]
    diverged = f"; {entry['diverged']} of {len(entry['runs'])} fixed runs diverged" if entry.get("diverged") else ""
    ci = "n/a" if lo is None else f"{lo:+.3f} to {hi:+.3f}"
    measure = entry.get("measure", "validation loss")
    return (f"{status}: {entry['fix']} moves the {measure} by {entry['effect']:+.3f} "
            f"(95% CI {ci}, {entry['n']} seeds){diverged}")


def format_proof(proof: dict) -> str:
    """The proof as text: the base, the margin, then one line per finding."""
    base = proof.get("base_loss")
    margin = proof.get("margin")
    lines = [f"proof over seeds: the unfixed model ends at {base:.3f}" if base is not None
             else "proof over seeds: the unfixed model has no outcome",
             f"  (margin {margin:.3f}: {proof['definition']})" if margin is not None else ""]
    for f in proof["findings"]:
        lines.append(f"  {f['id']} [{f['kind']}]: {proof_line(f)}")
    counts = proof.get("counts") or {}
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(line for line in lines if line)


def findings_with_proof(findings: list, proof: dict | None) -> tuple[str, list[dict]]:
    """``check``'s output for a run: each finding's block with a line on its proof, where there is one.

    Returns:
        (the text, the findings as dicts, each with its ``proof`` entry or None, then
        findings tested on request that the rules did not report).
    """
    from diagnose.findings.check import format_findings

    by_id = {e["id"]: e for e in (proof or {}).get("findings", [])}
    entries = [{**f.to_dict(), "proof": by_id.get(f.id)} for f in findings]
    blocks = []
    for f in findings:
        block = format_findings([f]).rstrip()
        if f.id in by_id:
            block += f"\n  proof: {proof_line(by_id[f.id])}"
        blocks.append(block)
    found = {f.id for f in findings}
    for entry in by_id.values():
        if entry["id"] not in found:
            entries.append({"id": entry["id"], "kind": entry["kind"], "title": entry["title"], "proof": entry})
            blocks.append(f"[not found, tested on request] {entry['id']}\n  proof: {proof_line(entry)}")
    if not blocks:
        return "no findings: nothing in this run looks wrong", entries
    if proof:
        margin, base = proof.get("margin"), proof.get("base_loss")
        unfixed = "no unfixed run finished" if base is None else f"{base:.3f} unfixed"
        blocks.append(f"proof ({unfixed}, margin {margin if margin is None else round(margin, 3)}): "
                      f"{proof['definition']}")
    return "\n\n".join(blocks), entries

"""The verdict's sentences, written once: the CLI prints them, the report shows them.

:func:`verdict_parts` turns a verdict dict (:mod:`diagnose.findings.verdict`) into a
headline, one line per root cause (or per switch, for a study without a gap), the
fix, notes and the method; :func:`format_verdict` joins the same sentences into the
plain text ``run-ablation`` and ``check`` print.
"""

from __future__ import annotations

__all__ = ["verdict_parts", "format_verdict", "effect_words"]


def effect_words(entry: dict) -> str:
    """'lowers the loss', 'raises the loss' or 'within seed noise' for an effects entry."""
    if not entry.get("significant"):
        return "within seed noise"
    return "lowers the loss" if entry["effect"] < 0 else "raises the loss"


def verdict_parts(verdict: dict) -> dict:
    """The verdict's sentences, for a page.

    Returns:
        ``{"headline", "causes": [{"factor", "text", "runs"}], "fix_label", "fix",
        "notes": [...], "method"}``; ``causes`` is empty when nothing moves the loss.
    """
    method = verdict.get("method") or (f"outcome: {verdict['outcome']}; {verdict['test']}"
                                       if verdict.get("outcome") and verdict.get("test") else "")
    if verdict.get("error"):
        return {"headline": verdict["error"], "causes": [], "fix_label": "Fix", "fix": "n/a", "notes": [],
                "method": ""}
    if verdict.get("mode") == "effects":
        causes = [{"factor": e["variant"], "text": _effect_text(e), "runs": len(e["runs"])}
                  for e in verdict["effects"]]
        return {"headline": _effects_headline(verdict), "causes": causes, "fix_label": "Best switch",
                "fix": _best_switch(verdict), "notes": [] if verdict["effects"] else [_NO_EFFECTS],
                "method": method}
    fix = verdict.get("smallest_fix")
    notes = [note for note in (_unconfident_note(fix), _fix_diverged_note(fix)) if note]
    return {"headline": _gap_headline(verdict),
            "causes": [{"factor": rc["factor"], "text": _cause_text(verdict, rc), "runs": len(rc.get("runs", []))}
                       for rc in verdict["root_causes"]],
            "fix_label": "Smallest fix" if fix else "Fix", "fix": _fix_text(fix), "notes": notes, "method": method}


def format_verdict(verdict: dict) -> str:
    """The plain-text verdict: root causes in order, one line each, then the smallest fix."""
    if verdict.get("error"):
        return f"verdict: {verdict['error']}"
    if verdict.get("mode") == "effects":
        lines = [_effects_headline(verdict, test=verdict["test"]) + ":"]
        lines += [f"  {e['variant']}: {_effect_text(e)}" for e in verdict["effects"]]
        if not verdict["effects"]:
            lines.append(f"  {_NO_EFFECTS}")
        return "\n".join(lines)
    lines = [f"verdict ({verdict['test']}): {_gap_headline(verdict)}"]
    if not verdict["root_causes"]:
        lines.append(f"  {_NOTHING_MOVES}")
    for i, rc in enumerate(verdict["root_causes"], start=1):
        lines.append(f"  {i}. {rc['factor']}: {_cause_text(verdict, rc)}")
    fix = verdict.get("smallest_fix")
    if _unconfident_note(fix):
        lines.append(f"  ({_unconfident_note(fix)})")
    lines.append(f"  smallest fix: {_fix_text(fix)}" if fix else f"  {_fix_text(fix)}")
    if _fix_diverged_note(fix):
        lines.append(f"  ({_fix_diverged_note(fix)})")
    return "\n".join(lines)


_NO_EFFECTS = "no switch has a completed run beside its base"
_NOTHING_MOVES = "no single switch moves the loss beyond seed noise"


def _gap_headline(verdict: dict) -> str:
    gap = verdict["gap"]
    return (f"{verdict['faulty']} ends {_f(gap['effect'])} nats above {verdict['reference']} "
            f"(95% CI {_f(gap['ci'][0])} to {_f(gap['ci'][1])})")


def _cause_text(verdict: dict, rc: dict) -> str:
    """What switching a root cause's factor does: the share it closes (and opens on the reference)."""
    f = next(x for x in verdict["factors"] if x["factor"] == rc["factor"])
    parts = []
    if rc["share_closed"] is not None:
        fix = next(e for e in f["fix"] if e["variant"] == f["best_fix"])
        parts.append(f"switching it alone ({f['best_fix'].split('|', 1)[1].strip()}) closes "
                     f"{rc['share_closed']:.0%} of the gap (effect {_f(fix['effect'])}, "
                     f"CI {_f(fix['ci'][0])} to {_f(fix['ci'][1])}){_diverged_note(fix)}")
    if rc["share_opened"] is not None:
        parts.append(f"on the paper model it opens {rc['share_opened']:.0%}")
    return "; ".join(parts)


def _fix_text(fix: dict | None) -> str:
    if not fix:
        return "no tested set of switches recovers the paper's loss"
    if len(fix["switches"]) == 1:
        return f"{fix['switches'][0]} ({fix['share_closed']:.0%} of the gap closed)"
    return (f"switch {' and '.join(fix['switches'])} together ({fix['share_closed']:.0%} of the gap closed); "
            "no single one of them does" + (" without diverging on some seed" if fix.get("unstable_alone") else ""))


def _unconfident_note(fix: dict | None) -> str:
    if fix and not fix.get("confident"):
        return ("at this many seeds the 95% interval of the fix's effect still includes zero: run more seeds to "
                "establish it")
    return ""


def _fix_diverged_note(fix: dict | None) -> str:
    if fix and fix.get("diverged"):
        return (f"the fix diverged later on {fix['diverged']} of {len(fix['runs'])} seeds: its share counts their "
                "last validation loss before; it is not yet a stable fix")
    return ""


def _effects_headline(verdict: dict, test: str | None = None) -> str:
    return (f"effects{f' ({test})' if test else ''} of each switch on the final validation loss of its base "
            f"({', '.join(verdict['bases'])}); no as-posted/paper pair here, so no gap to explain")


def _effect_text(e: dict) -> str:
    ci = e["ci"]
    return (f"{_signed(e['effect'])} nats (CI {_signed(ci[0])} to {_signed(ci[1])}), "
            f"{effect_words(e)}{_diverged_note(e)}")


def _best_switch(verdict: dict) -> str:
    best = next((e for e in verdict["effects"] if e["significant"] and e["effect"] < 0), None)
    return (f"{best['variant']} lowers the loss by {_f(-best['effect'])} nats" if best
            else "no switch lowers the loss beyond seed noise")


def _diverged_note(entry: dict) -> str:
    """'; N of M seeds diverged later' for a variant with diverged runs, else ''."""
    n = entry.get("diverged") or 0
    return f"; {n} of {len(entry['runs'])} seeds diverged later" if n else ""


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"

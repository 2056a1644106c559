"""The verdict's sentences, written once: the CLI prints them, the report shows them.

:func:`verdict_parts` turns a verdict dict into a headline, one line per root
cause, the fix, notes and the method; :func:`format_verdict` joins them into the
plain text ``run-ablation`` and ``check`` print.
"""

from __future__ import annotations

__all__ = ["verdict_parts", "format_verdict", "effect_words"]


def effect_words(entry: dict, unit: str = "nats") -> str:
    """What an effects entry's interval says: lowers / raises the loss, negligible, or inconclusive."""
    status = entry.get("status") or ("established" if entry.get("significant") else "inconclusive")
    if status == "established":
        return "lowers the loss" if entry["effect"] < 0 else "raises the loss"
    if status == "negligible":
        return f"within seed noise and negligible (interval within +-{_f(entry.get('margin'))} {unit})"
    return "within seed noise"


def verdict_parts(verdict: dict) -> dict:
    """The verdict's sentences, each also in a short form for a page's first screen.

    Returns:
        ``{"headline", "tally", "causes": [{"factor", "text", "short", "runs"}], "fix_label",
        "fix", "fix_short", "notes": [...], "method"}``: ``text`` and ``fix`` carry every
        interval (the CLI prints them); ``short`` and ``fix_short`` say the same without
        them, for a page that draws the intervals; ``tally`` counts the comparisons by status.
    """
    if verdict.get("error"):
        return {"headline": verdict["error"], "tally": "", "causes": [], "fix_label": "Fix", "fix": "n/a",
                "fix_short": "n/a", "notes": [], "method": ""}
    if verdict.get("mode") == "effects":
        return _effects_parts(verdict)
    gap = verdict["gap"]
    headline = (f"{verdict['faulty']} ends {_f(gap['effect'])} {_unit(verdict)} above {verdict['reference']} "
                f"({_level(gap)} CI {_f(gap['ci'][0])} to {_f(gap['ci'][1])}, {gap.get('n', 'n/a')} seeds)")
    if gap.get("status", "established") != "established":
        headline += "; the gap itself is still within seed noise, and what follows with it"
    causes = []
    for rc in verdict["root_causes"]:
        f = next((x for x in verdict.get("factors", []) if x["factor"] == rc["factor"]), {})
        parts, short = [], []
        if rc.get("share_closed") is not None:
            fix = next((e for e in f.get("fix", []) if e["variant"] == f.get("best_fix")), {"runs": []})
            switch = _switch(f.get("best_fix") or "to the reference")
            parts.append(f"switching it alone ({switch}) closes "
                         f"{rc['share_closed']:.0%} of the gap ({_interval(fix)}){_diverged_note(fix)}")
            short.append(f"{switch} alone closes {rc['share_closed']:.0%} of the gap{_diverged_short(fix)}")
        if rc.get("share_opened") is not None:
            brk = max(f.get("break") or [{"variant": "it", "runs": []}], key=lambda e: e.get("share_opened") or -1e9)
            parts.append(f"on the {verdict['reference']} model {_switch(brk['variant'])} opens "
                         f"{rc['share_opened']:.0%} ({_interval(brk)})")
            short.append(f"on {verdict['reference']}, {_switch(brk['variant'])} opens {rc['share_opened']:.0%}")
        causes.append({"factor": rc["factor"], "text": "; ".join(parts), "short": "; ".join(short),
                       "runs": len(rc.get("runs", []))})
    return {"headline": headline, "tally": _tally(verdict, ("fix", "break", "combination")), "causes": causes,
            "fix_label": "Smallest fix", "fix": _fix_text(verdict), "fix_short": _fix_short(verdict),
            "notes": _notes(verdict), "method": verdict.get("method", "")}


def format_verdict(verdict: dict) -> str:
    """The plain-text verdict: the gap, root causes in order, the smallest fix, what stays open, the method."""
    parts = verdict_parts(verdict)
    if verdict.get("error"):
        return f"verdict: {parts['headline']}"
    lines = [f"verdict: {parts['headline']}"]
    if verdict.get("mode") != "effects" and not parts["causes"]:
        lines.append("  no single switch moves the loss beyond seed noise")
    for i, cause in enumerate(parts["causes"], start=1):
        number = "" if verdict.get("mode") == "effects" else f"{i}. "  # effects are listed, not ranked causes
        lines.append(f"  {number}{cause['factor']}: {cause['text']}")
    lines.append(f"  {parts['fix_label'].lower()}: {parts['fix']}")
    lines += [f"  {note}" for note in parts["notes"]]
    if parts["method"]:
        lines.append(f"  ({parts['method']})")
    return "\n".join(lines)


def _effects_parts(verdict: dict) -> dict:
    unit = _unit(verdict)
    causes = [{"factor": e["variant"],
               "text": (f"{_signed(e['effect'])} {unit} against {e['base']} ({_level(e)} CI {_signed(e['ci'][0])} "
                        f"to {_signed(e['ci'][1])}, {e.get('n', 'n/a')} seeds): "
                        f"{effect_words(e, unit)}{_diverged_note(e)}"),
               "short": f"{_signed(e['effect'])} {unit}: {effect_words(e, unit)}{_diverged_short(e)}",
               "runs": len(e["runs"])} for e in verdict["effects"]]
    best = next((e for e in verdict["effects"] if e.get("status", "established" if e.get("significant") else "")
                 == "established" and e["effect"] < 0), None)
    fix = (f"{best['variant']} lowers the loss by {_f(-best['effect'])} {unit}" if best
           else "no switch lowers the loss beyond seed noise")
    headline = (f"effects of each switch on the loss of its base ({', '.join(verdict['bases'])}), lowest first; "
                "no faulty/reference pair here, so no gap to explain")
    if verdict.get("no_gap"):
        gap, faulty, reference = verdict["gap"], verdict["faulty"], verdict["reference"]
        ci = gap.get("ci") or [None, None]
        measured = (f"{faulty} - {reference} = {_signed(gap['effect'])} {unit}, {_level(gap)} CI {_signed(ci[0])} to "
                    f"{_signed(ci[1])}, {gap.get('n', 0)} seeds")
        if verdict["no_gap"] == "reversed":
            headline = (f"{faulty} ends below {reference}, not above ({measured}): the base named faulty does "
                        f"better, so there is no gap to explain; is {reference} the base that works? Each "
                        "switch's effect on the loss of its base, lowest first")
        else:
            headline = (f"{faulty} ends no higher than {reference} on average ({measured}): no gap to explain "
                        "at this many seeds. Each switch's effect on the loss of its base, lowest first")
    notes = _seed_blind_notes(verdict)
    if not verdict["effects"]:
        notes.append("no switch has a completed run beside its base")
    return {"headline": headline, "tally": _tally(verdict, ("effect",)), "causes": causes,
            "fix_label": "Best switch", "fix": fix, "fix_short": fix, "notes": notes,
            "method": verdict.get("method", "")}


def _fix_text(verdict: dict) -> str:
    fix = verdict.get("smallest_fix")
    reference = verdict["reference"]
    if not fix:
        return f"no tested set of switches closes the gap to {reference}"
    share = f"{fix['share_closed']:.0%}" if fix.get("share_closed") is not None else "n/a"
    residual = fix.get("residual") or {"effect": None, "ci": [None, None], "n": 0}
    res = (f"residual {_signed(residual['effect'])}, {_level(residual)} CI {_signed(residual['ci'][0])} to "
           f"{_signed(residual['ci'][1])}")
    if len(fix["switches"]) == 1:
        text = f"{fix['switches'][0]} closes {share} of the gap ({_interval(fix)})"
    else:
        text = f"switch {' and '.join(fix['switches'])} together: they close {share} of the gap ({_interval(fix)})"
    one = len(fix["switches"]) == 1  # "it reaches", "they reach"
    if fix.get("reaches"):
        text += (f" and {'reaches' if one else 'reach'} {reference}: what {'it leaves' if one else 'they leave'} "
                 f"is under a tenth of the gap ({res})")
    elif fix.get("short_of_reference"):
        text += (f" but {'stays' if one else 'stay'} {_f(residual['effect'])} {_unit(verdict)} short of "
                 f"{reference}, beyond seed noise ({res}); no tested set of switches reaches {reference}")
    else:
        text += (f"; whether {'it reaches' if one else 'they reach'} {reference} stays inconclusive at "
                 f"{residual.get('n', 0)} seeds ({res})")
    if not fix.get("diverged"):
        text += "; stable on every seed"
    else:
        text += (f"; it diverged later on {fix['diverged']} of {len(fix['runs'])} seeds: its share counts their "
                 "validations before, and it is not yet a stable fix")
    if not fix.get("confident"):
        text += f"; at {fix.get('n', 'these')} seeds the interval of its effect still includes zero"
    if len(fix["switches"]) > 1:
        text += ". " + _why_a_set(fix, _unit(verdict))
    return text


def _fix_short(verdict: dict) -> str:
    """The smallest fix without its intervals: what to switch, what it closes, whether it reaches and holds."""
    fix = verdict.get("smallest_fix")
    reference = verdict["reference"]
    if not fix:
        return f"no tested set of switches closes the gap to {reference}"
    share = f"{fix['share_closed']:.0%}" if fix.get("share_closed") is not None else "n/a"
    if len(fix["switches"]) == 1:
        text = f"{fix['switches'][0]}: it closes {share} of the gap"
    else:
        text = f"switch {' and '.join(fix['switches'])} together: they close {share} of the gap"
    residual = fix.get("residual") or {}
    one = len(fix["switches"]) == 1
    if fix.get("reaches"):
        text += f" and {'reaches' if one else 'reach'} {reference}"
    elif fix.get("short_of_reference"):
        text += f" but {'stays' if one else 'stay'} {_f(residual.get('effect'))} {_unit(verdict)} short of {reference}"
    else:
        text += f"; whether {'it reaches' if one else 'they reach'} {reference} is inconclusive"
    text += ("; stable on every seed" if not fix.get("diverged")
             else f"; diverged on {fix['diverged']} of {len(fix['runs'])} seeds")
    if not fix.get("confident"):
        text += "; its effect is not yet established"
    if len(fix["switches"]) > 1:
        text += "; no single one of them does"
    return text


def _tally(verdict: dict, kinds: tuple) -> str:
    """'of 23 comparisons: 9 established, 4 negligible, 10 inconclusive' over the verdict's comparisons."""
    wanted = [c for c in verdict.get("comparisons", []) if c.get("kind") in kinds]
    if not wanted:
        return ""
    counts = {s: sum(c.get("status") == s for c in wanted) for s in ("established", "negligible", "inconclusive")}
    return f"of {len(wanted)} comparisons: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _why_a_set(fix: dict, unit: str) -> str:
    """No single one of the switches does it; what each does alone, and the interaction."""
    text = "No single one of them does" + (" without diverging on some seed" if fix.get("unstable_alone") else "")
    alone = []
    for p in fix.get("parts") or []:
        if p.get("share_closed") is None:
            continue
        share = p["share_closed"]
        verb = f"closes {share:.0%}" if share >= 0 else f"widens the gap by {-share:.0%}"
        note = f", diverging on {p['diverged']} of {p['n']} seeds" if p.get("diverged") else ""
        alone.append(f"{p['switch']} {verb}{note}")
    if alone:
        text += ": alone, " + " and ".join(alone)
    inter = fix.get("interaction")
    if inter and inter.get("effect") is not None:
        better = "better" if inter["effect"] < 0 else "worse"
        lo, hi = inter["ci"]
        sure = "" if lo is not None and hi is not None and (lo > 0 or hi < 0) else ": within seed noise"
        text += (f"; together they do {_f(abs(inter['effect']))} {unit} {better} than their effects added "
                 f"(interaction {_signed(inter['effect'])}, {_level(inter)} CI {_signed(lo)} to {_signed(hi)}{sure})")
    return text


def _notes(verdict: dict) -> list[str]:
    """What the seeds do not vary, what stays open (inconclusive comparisons, by seed count) and what is
    ruled out (negligible)."""
    wanted = [c for c in verdict.get("comparisons", []) if c["kind"] in ("fix", "break", "combination")]
    cap = verdict.get("max_seeds")
    open_ = [c for c in wanted if c["status"] == "inconclusive" and not c.get("falls_short")]
    small = [c for c in wanted if c["status"] == "negligible"]
    fix = (verdict.get("smallest_fix") or {}).get("variant")
    not_fixes = [c for c in wanted if c.get("falls_short") and c["variant"] != fix]
    notes = _seed_blind_notes(verdict)
    if open_:
        at_cap = [_label(c) for c in open_ if cap and c["n"] >= cap]
        short = [f"{_label(c)} ({c['n']})" for c in open_ if not (cap and c["n"] >= cap)]
        if at_cap:
            notes.append(f"inconclusive at the cap of {cap} seeds: {', '.join(at_cap)}")
        if short:
            notes.append("inconclusive at fewer seeds (in brackets; seeds go only to effects that may reach a "
                         "tenth of the gap and that the cap would likely settle): " + ", ".join(short))
    if not_fixes:
        notes.append(f"not fixes (each leaves more than a tenth of the gap to {verdict.get('reference')} for sure; "
                     f"no seeds added for their effects): {', '.join(_switch(c['variant']) for c in not_fixes)}")
    minor = verdict.get("minor_causes") or []
    if minor:
        notes.append("established but under a tenth of the gap: " + ", ".join(
            f"{m['factor']} ({_shares(m)})" for m in minor))
    if small:
        margin = verdict.get("margin")
        notes.append(f"negligible (within +-{_f(margin)} {_unit(verdict)}, a tenth of the gap): "
                     f"{', '.join(map(_label, small))}")
    return notes


def _seed_blind_notes(verdict: dict) -> list[str]:
    """The caveat on every interval when seeds do not change some initial weights (``seed_blind``)."""
    blind = verdict.get("seed_blind")
    if not blind:
        return []
    names = blind["variables"]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return [f"seeds do not change the initial values of {len(names)} of {blind['random']} variables that start "
            f"non-constant ({shown}), in {len(blind['variants'])} of {blind['of_variants']} variants: their "
            "initializers have a fixed seed or were made once outside the builder, or the weights are loaded. "
            "Runs then differ by seed only in data order and dropout, and the intervals speak for that alone; "
            "if those weights should be random, make their initializers inside the builder without a seed "
            "(each run's seed is set before the builder runs)"]


def _unit(verdict: dict) -> str:
    """What the verdict's losses are in: nats (a cross-entropy), else the loss's own name."""
    return verdict.get("unit") or "nats"


def _shares(m: dict) -> str:
    parts = [f"closes {m['share_closed']:.0%}" if m.get("share_closed") is not None else "",
             f"opens {m['share_opened']:.0%}" if m.get("share_opened") is not None else ""]
    return ", ".join(p for p in parts if p)


def _label(c: dict) -> str:
    if c["kind"] in ("fix", "break"):
        return f"{_switch(c['variant'])} on {c['against']}"
    return c["variant"]


def _interval(entry: dict) -> str:
    ci = entry.get("ci") or [None, None]
    return f"effect {_f(entry.get('effect'))}, {_level(entry)} CI {_f(ci[0])} to {_f(ci[1])}, {entry.get('n', 0)} seeds"


def _level(entry: dict) -> str:
    """'95%', or the wider level of a comparison read again after seeds were added ('97.5%')."""
    return f"{100 * entry.get('confidence', 0.95):.3g}%"


def _switch(variant: str) -> str:
    return variant.split("|", 1)[1].strip() if "|" in variant else variant


def _diverged_note(entry: dict) -> str:
    """'; N of M seeds diverged later' for a variant with diverged runs, else ''."""
    n = entry.get("diverged") or 0
    return f"; {n} of {len(entry['runs'])} seeds diverged later" if n else ""


def _diverged_short(entry: dict) -> str:
    """', diverging on N of M seeds' for a variant with diverged runs, else ''."""
    n = entry.get("diverged") or 0
    return f", diverging on {n} of {len(entry['runs'])} seeds" if n else ""


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"

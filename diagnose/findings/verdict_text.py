"""The verdict's sentences, written once: the CLI prints them, the report shows them.

:func:`verdict_parts` turns a :class:`~diagnose.findings.verdict_types.Verdict` into a headline, one line per root
cause, the fix, notes and the method; :func:`format_verdict` joins them into the
plain text ``run-ablation`` and ``check`` print.
"""

from __future__ import annotations

from diagnose.findings.verdict_types import BaseEffect, Cause, Comparison, Fix, Interval, SwitchEffect, Verdict

__all__ = ["verdict_parts", "format_verdict", "effect_words"]


def effect_words(entry: BaseEffect, unit: str = "nats") -> str:
    """What an effects entry's interval says: lowers / raises the loss, negligible, or inconclusive. A variant
    that diverged never lowers it: its loss counts what its runs scored before they blew up."""
    if entry.status == "established" and entry.diverged and entry.effect.mean < 0:
        return ("lower only as counted (a diverged run counts its validations before the divergence, or the loss "
                "of a model that learned nothing without one): not an improvement")
    if entry.status == "established":
        return "lowers the loss" if entry.effect.mean < 0 else "raises the loss"
    if entry.status == "negligible":
        return f"within seed noise and negligible (interval within +-{_f(entry.margin)} {unit})"
    return "within seed noise"


def verdict_parts(verdict: Verdict) -> dict:
    """The verdict's sentences, each also in a short form for a page's first screen.

    Returns:
        ``{"headline", "tally", "causes": [{"factor", "text", "short", "runs"}], "fix_label",
        "fix", "fix_short", "notes": [...], "method"}``: ``text`` and ``fix`` carry every
        interval (the CLI prints them); ``short`` and ``fix_short`` say the same without
        them, for a page that draws the intervals; ``tally`` counts the comparisons by status.
    """
    if verdict.mode == "error":
        return {"headline": verdict.error, "tally": "", "causes": [], "fix_label": "Fix", "fix": "n/a",
                "fix_short": "n/a", "notes": [], "method": ""}
    if verdict.mode == "effects":
        return _effects_parts(verdict)
    gap = verdict.gap
    headline = (f"{verdict.faulty} ends {_f(gap.mean)} {verdict.unit} above {verdict.reference} "
                f"({_ci(gap)}, {gap.n} seeds)")
    if gap.status not in (None, "established"):
        headline += "; the gap itself is still within seed noise, and what follows with it"
    causes = [_cause(verdict, rc) for rc in verdict.root_causes]
    tally = "; ".join(t for t in (_tally(verdict, ("fix", "break", "combination")), _others_tally(verdict)) if t)
    return {"headline": headline, "tally": tally, "causes": causes,
            "fix_label": "Smallest fix", "fix": _fix_text(verdict), "fix_short": _fix_short(verdict),
            "notes": _notes(verdict), "method": verdict.method}


def _cause(verdict: Verdict, rc: Cause) -> dict:
    """A root cause's sentence: what its switch closes on the faulty base and opens on the reference."""
    f = verdict.factor(rc.factor)
    parts, short = [], []
    if rc.share_closed is not None:
        fix = next((e for e in f.fixes if e.variant == f.best_fix), None) if f else None
        switch = _switch(f.best_fix if f and f.best_fix else "to the reference")
        parts.append(f"switching it alone ({switch}) {_closes(rc.share_closed)} "
                     f"({_interval(fix)}){_diverged_note(fix, verdict)}")
        short.append(f"{switch} alone {_closes(rc.share_closed)}{_diverged_short(fix, verdict)}")
    if rc.share_opened is not None:
        brk = max(f.breaks, key=lambda e: e.share_opened or -1e9) if f and f.breaks else None
        name = _switch(brk.variant) if brk else "it"
        parts.append(f"on the {verdict.reference} model {name} {_opens(rc.share_opened)} ({_interval(brk)})")
        short.append(f"on {verdict.reference}, {name} {_opens(rc.share_opened)}")
    return {"factor": rc.factor, "text": "; ".join(parts), "short": "; ".join(short), "runs": len(rc.runs or ())}


def format_verdict(verdict: Verdict) -> str:
    """The plain-text verdict: the gap, root causes in order, the smallest fix, what stays open, the method."""
    parts = verdict_parts(verdict)
    if verdict.mode == "error":
        return f"verdict: {parts['headline']}"
    lines = [f"verdict: {parts['headline']}"]
    if verdict.mode != "effects" and not parts["causes"]:
        lines.append("  no single switch moves the loss beyond seed noise")
    for i, cause in enumerate(parts["causes"], start=1):
        number = "" if verdict.mode == "effects" else f"{i}. "  # effects are listed, not ranked causes
        lines.append(f"  {number}{cause['factor']}: {cause['text']}")
    lines.append(f"  {parts['fix_label'].lower()}: {parts['fix']}")
    lines += [f"  {note}" for note in parts["notes"]]
    if parts["method"]:
        lines.append(f"  ({parts['method']})")
    return "\n".join(lines)


def _effects_parts(verdict: Verdict) -> dict:
    unit = verdict.unit
    causes = []
    for e in verdict.effects:  # a variant that diverged: that first, then its numbers
        lead = f"diverged on {e.diverged} of {len(e.runs)} seeds{_how_diverged(e, verdict, ' later')}; " \
            if e.diverged else ""
        causes.append({"factor": e.variant,
                       "text": (f"{lead}{_signed(e.effect.mean)} {unit} against {e.base} "
                                f"({_ci(e.effect, signed=True)}, {e.effect.n} seeds): {effect_words(e, unit)}"),
                       "short": f"{lead}{_signed(e.effect.mean)} {unit}: {effect_words(e, unit)}",
                       "runs": len(e.runs)})
    best = next((e for e in verdict.effects if e.status == "established" and e.effect.mean < 0 and not e.diverged),
                None)
    fix = (f"{best.variant} lowers the loss by {_f(-best.effect.mean)} {unit}" if best
           else "no switch lowers the loss beyond seed noise")
    headline = (f"effects of each switch on the loss of its base ({', '.join(verdict.bases)}), lowest first; "
                "no faulty/reference pair here, so no gap to explain")
    if verdict.no_gap:
        gap, faulty, reference = verdict.gap, verdict.faulty, verdict.reference
        measured = (f"{faulty} - {reference} = {_signed(gap.mean)} {unit}, {_ci(gap, signed=True)}, "
                    f"{gap.n} seeds")
        if verdict.no_gap == "reversed":
            headline = (f"{faulty} ends below {reference}, not above ({measured}): the base named faulty does "
                        f"better, so there is no gap to explain; is {reference} the base that works? Each "
                        "switch's effect on the loss of its base, lowest first")
        else:
            headline = (f"{faulty} ends no higher than {reference} on average ({measured}): no gap to explain "
                        "at this many seeds. Each switch's effect on the loss of its base, lowest first")
    notes = _seed_blind_notes(verdict)
    if not verdict.effects:
        notes.append("no switch has a completed run beside its base")
    return {"headline": headline, "tally": _tally(verdict, ("effect",)), "causes": causes,
            "fix_label": "Best switch", "fix": fix, "fix_short": fix, "notes": notes, "method": verdict.method}


def _fix_text(verdict: Verdict) -> str:
    fix = verdict.smallest_fix
    reference = verdict.reference
    if not fix:
        return f"no tested set of switches closes the gap to {reference}"
    share = f"{fix.share_closed:.0%}" if fix.share_closed is not None else "n/a"
    residual = fix.residual
    res = f"residual {_signed(residual.mean)}, {_ci(residual, signed=True)}"
    if len(fix.switches) == 1:
        text = f"{fix.switches[0]} closes {share} of the gap ({_interval(fix)})"
    else:
        text = f"switch {' and '.join(fix.switches)} together: they close {share} of the gap ({_interval(fix)})"
    one = len(fix.switches) == 1  # "it reaches", "they reach"
    if fix.reaches:
        text += (f" and {'reaches' if one else 'reach'} {reference}: what {'it leaves' if one else 'they leave'} "
                 f"is under a tenth of the gap ({res})")
    elif fix.short_of_reference:
        text += (f" but {'stays' if one else 'stay'} {_f(residual.mean)} {verdict.unit} short of "
                 f"{reference}, beyond seed noise ({res}); no tested set of switches reaches {reference}")
    else:
        text += (f"; whether {'it reaches' if one else 'they reach'} {reference} stays inconclusive at "
                 f"{residual.n} seeds ({res})")
    if not fix.diverged:
        text += "; stable on every seed"
    else:
        text += (f"; it diverged{_how_diverged(fix, verdict, ' later')} on {fix.diverged} of {len(fix.runs)} seeds: "
                 "its share counts their validations before, and it is not yet a stable fix")
    if not fix.confident:
        text += f"; at {fix.effect.n} seeds the interval of its effect still includes zero"
    if len(fix.switches) > 1:
        text += ". " + _why_a_set(fix, verdict.unit)
    return text


def _fix_short(verdict: Verdict) -> str:
    """The smallest fix without its intervals: what to switch, what it closes, whether it reaches and holds."""
    fix = verdict.smallest_fix
    reference = verdict.reference
    if not fix:
        return f"no tested set of switches closes the gap to {reference}"
    share = f"{fix.share_closed:.0%}" if fix.share_closed is not None else "n/a"
    if len(fix.switches) == 1:
        text = f"{fix.switches[0]}: it closes {share} of the gap"
    else:
        text = f"switch {' and '.join(fix.switches)} together: they close {share} of the gap"
    one = len(fix.switches) == 1
    if fix.reaches:
        text += f" and {'reaches' if one else 'reach'} {reference}"
    elif fix.short_of_reference:
        text += f" but {'stays' if one else 'stay'} {_f(fix.residual.mean)} {verdict.unit} short of {reference}"
    else:
        text += f"; whether {'it reaches' if one else 'they reach'} {reference} is inconclusive"
    text += ("; stable on every seed" if not fix.diverged
             else f"; diverged on {fix.diverged} of {len(fix.runs)} seeds")
    if not fix.confident:
        text += "; its effect is not yet established"
    if len(fix.switches) > 1:
        text += "; no single one of them does"
    return text


def _tally(verdict: Verdict, kinds: tuple) -> str:
    """'of 23 comparisons: 9 established, 4 negligible, 10 inconclusive' over the verdict's comparisons."""
    wanted = [c for c in verdict.comparisons if c.kind in kinds]
    if not wanted:
        return ""
    counts = {s: sum(c.status == s for c in wanted) for s in ("established", "negligible", "inconclusive")}
    return f"of {len(wanted)} comparisons: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _others(verdict: Verdict) -> list[SwitchEffect]:
    """The switches to a level neither base has (a factor's ``others``): reported, never ranked as causes."""
    return [e for f in verdict.factors for e in f.others if e.effect.mean is not None]


def _others_tally(verdict: Verdict) -> str:
    """'and 6 switches to levels neither base has: 1 established, 5 inconclusive', or ''."""
    others = _others(verdict)
    if not others:
        return ""
    counts = {s: sum(e.status == s for e in others) for s in ("established", "negligible", "inconclusive")}
    return (f"and {len(others)} switch{'es' * (len(others) > 1)} to levels neither base has: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))


def _others_note(verdict: Verdict) -> list[str]:
    """Every switch to a level neither base has, with what it does to the gap and how sure, in one note."""
    others = _others(verdict)
    if not others:
        return []
    words = []
    for e in others:
        share = _share_words(e) or f"{_signed(e.effect.mean)} {verdict.unit}"
        words.append(f"{_switch(e.variant)} on {_base(e.variant)} {share} ({e.status}, {e.effect.n} seeds"
                     f"{_diverged_short(e, verdict)})")
    return ["levels neither base has (reported, not ranked as causes): " + "; ".join(words)]


def _why_a_set(fix: Fix, unit: str) -> str:
    """No single one of the switches does it; what each does alone, and the interaction."""
    text = "No single one of them does" + (" without diverging on some seed" if fix.unstable_alone else "")
    alone = []
    for p in fix.parts:
        if p.share_closed is None:
            continue
        verb = _closes(p.share_closed, of=False)
        note = f", diverging on {p.diverged} of {p.n} seeds" if p.diverged else ""
        alone.append(f"{p.switch} {verb}{note}")
    if alone:
        text += ": alone, " + " and ".join(alone)
    inter = fix.interaction
    if inter and inter.mean is not None:
        better = "better" if inter.mean < 0 else "worse"
        sure = "" if inter.excludes_zero else ": within seed noise"
        text += (f"; together they do {_f(abs(inter.mean))} {unit} {better} than their effects added "
                 f"(interaction {_signed(inter.mean)}, {_ci(inter, signed=True)}{sure})")
    return text


def _notes(verdict: Verdict) -> list[str]:
    """What the seeds do not vary, what stays open (inconclusive comparisons, by seed count) and what is
    ruled out (negligible)."""
    wanted = [c for c in verdict.comparisons if c.kind in ("fix", "break", "combination")]
    cap = verdict.max_seeds
    open_ = [c for c in wanted if c.status == "inconclusive" and not c.falls_short]
    small = [c for c in wanted if c.status == "negligible"]
    fix = verdict.smallest_fix.variant if verdict.smallest_fix else None
    not_fixes = [c for c in wanted if c.falls_short and c.variant != fix]
    notes = _seed_blind_notes(verdict)
    if open_:
        at_cap = [_label(c) for c in open_ if cap and c.n >= cap]
        short = [f"{_label(c)} ({c.n})" for c in open_ if not (cap and c.n >= cap)]
        if at_cap:
            notes.append(f"inconclusive at the cap of {cap} seeds: {', '.join(at_cap)}")
        if short:
            notes.append("inconclusive at fewer seeds (in brackets; seeds go only to effects that may reach a "
                         "tenth of the gap and that the cap would likely settle): " + ", ".join(short))
    if not_fixes:
        notes.append(f"not fixes (each leaves more than a tenth of the gap to {verdict.reference} for sure; "
                     f"no seeds added for their effects): {', '.join(_switch(c.variant) for c in not_fixes)}")
    if verdict.minor_causes:
        notes.append("established but under a tenth of the gap: " + ", ".join(
            f"{m.factor} ({_shares(m)})" for m in verdict.minor_causes))
    if small:
        notes.append(f"negligible (within +-{_f(verdict.margin)} {verdict.unit}, a tenth of the gap): "
                     f"{', '.join(map(_label, small))}")
    causes = {c.factor for c in (*verdict.root_causes, *verdict.minor_causes)}
    against = [f"{_switch(e.variant)} on {_base(e.variant)} ({_share_words(e)})"
               for f in verdict.factors if f.factor not in causes for e in (*f.fixes, *f.breaks)
               if e.status == "established" and (e.share_closed is not None or e.share_opened is not None)]
    if against:
        notes.append("established, but they move the loss away from the other base, so they explain none of the "
                     f"gap: {', '.join(against)}")
    return notes + _others_note(verdict)


def _seed_blind_notes(verdict: Verdict) -> list[str]:
    """The caveat on every interval when seeds do not change some initial weights (``seed_blind``)."""
    blind = verdict.seed_blind
    if not blind:
        return []
    names = blind.variables
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return [f"seeds do not change the initial values of {len(names)} of {blind.random} variables that start "
            f"non-constant ({shown}), in {len(blind.variants)} of {blind.of_variants} variants: their "
            "initializers have a fixed seed or were made once outside the builder, or the weights are loaded. "
            "Runs then differ by seed only in data order and dropout, and the intervals speak for that alone; "
            "if those weights should be random, make their initializers inside the builder without a seed "
            "(each run's seed is set before the builder runs)"]


def _shares(m: Cause) -> str:
    parts = [_closes(m.share_closed, of=False) if m.share_closed is not None else "",
             _opens(m.share_opened) if m.share_opened is not None else ""]
    return ", ".join(p for p in parts if p)


def _closes(share: float, of: bool = True) -> str:
    """A switch on the faulty base's share of the gap, by its sign: 'closes 35% of the gap' or 'widens the
    gap by 63%' (a negative share closes nothing)."""
    if share >= 0:
        return f"closes {share:.0%}" + (" of the gap" if of else "")
    return f"widens the gap by {-share:.0%}"


def _share_words(e: SwitchEffect) -> str:
    """What a switch does to the gap, by its side and sign; '' where it has no share."""
    if e.share_closed is not None:
        return _closes(e.share_closed)
    return _opens(e.share_opened) if e.share_opened is not None else ""


def _opens(share: float) -> str:
    """A switch on the reference's share of the gap, by its sign: 'opens 55%' or 'narrows the gap by 10%'."""
    return f"opens {share:.0%}" if share >= 0 else f"narrows the gap by {-share:.0%}"


def _label(c: Comparison) -> str:
    if c.kind in ("fix", "break"):
        return f"{_switch(c.variant)} on {c.against}"
    return c.variant


def _interval(entry: SwitchEffect | Fix | None) -> str:
    """'effect -1.007, 97.5% CI -1.800 to -0.214, 9 seeds' of an entry's effect ('n/a's without one)."""
    effect = entry.effect if entry is not None else Interval(None)
    return f"effect {_f(effect.mean)}, {_ci(effect)}, {effect.n} seeds"


def _ci(interval: Interval, signed: bool = False) -> str:
    """'97.5% CI -1.800 to -0.214': an interval at its level (95%, or wider for a comparison read again
    after seeds were added), its ends signed or not; every sentence writes an interval so."""
    fmt = _signed if signed else _f
    return f"{100 * interval.confidence:.3g}% CI {fmt(interval.lo)} to {fmt(interval.hi)}"


def _base(variant: str) -> str:
    """``"as-posted"`` of ``"as-posted | output=softmax"``."""
    return variant.split("|", 1)[0].strip()


def _switch(variant: str) -> str:
    return variant.split("|", 1)[1].strip() if "|" in variant else variant


def _diverged_note(entry: SwitchEffect | BaseEffect | None, verdict: Verdict | None = None) -> str:
    """'; N of M seeds diverged later' for a variant with diverged runs (how, where the verdict says:
    :func:`_how_diverged`), else ''."""
    n = entry.diverged if entry is not None else 0
    return f"; {n} of {len(entry.runs)} seeds diverged{_how_diverged(entry, verdict, ' later')}" if n else ""


def _diverged_short(entry: SwitchEffect | BaseEffect | None, verdict: Verdict | None = None) -> str:
    """', diverging on N of M seeds' for a variant with diverged runs, else ''."""
    n = entry.diverged if entry is not None else 0
    return f", diverging on {n} of {len(entry.runs)} seeds{_how_diverged(entry, verdict)}" if n else ""


def _how_diverged(entry, verdict: Verdict | None, later: str = "") -> str:
    """How a variant's seeds diverged, as the verdict's ``divergences`` say: at the first logged row (else
    ``later``), and whether training went on past it or stopped there (said where the verdict records how:
    a variant it does not list diverged later, and an older verdict's runs may have gone on)."""
    n = entry.diverged
    how = (verdict.divergences.get(entry.variant) if verdict is not None else None) or {}
    at_once, went_on = how.get("at_once", 0), how.get("went_on", 0)
    words = "" if not at_once else " at the first logged row" if at_once == n else \
        f" ({at_once} at the first logged row)"
    words = words or later
    if went_on:
        words += (" and training went on" if went_on == n else f" and training went on on {went_on}") + \
            " (stopped on the others)" * (0 < went_on < n)
    elif how:
        words += " and training stopped there"
    return words


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"

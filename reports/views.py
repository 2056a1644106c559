"""What the templates get: the report's data laid out for the page, with the figures' captions and alt text."""

from __future__ import annotations

from diagnose.findings.figures import TABLE
from diagnose.report_data import ReportData, RunInfo, VariantInfo, verdict_view
from diagnose.report_data.contrasts import Suspect
from .plots import baseline_words, num

__all__ = ["index_view", "run_view", "PANEL_CAPTIONS", "SIDE_BY_SIDE"]

# Runs side by side on the index beyond this many would shrink below reading: each has its own page.
SIDE_BY_SIDE = 4

# What each evidence panel shows, in the words a caption needs (diagnose.findings.figures).
PANEL_CAPTIONS = {f.id: f.evidence for f in TABLE if f.evidence}

_DIAGNOSTICS = tuple((f.id, f.title, f.caption) for f in TABLE)  # figure id, title, caption


def index_view(data: ReportData, figures: dict[str, str]) -> dict:
    """The index page's context (see templates/report.html.j2)."""
    linked = {fid for fid in figures if ":" not in fid}
    side = ", ".join(r.label for r in _firsts(data.shown[:SIDE_BY_SIDE]))
    return {
        "title": data.title, "subtitle": data.subtitle, "notes": data.notes, "source": data.source,
        "kind": data.kind, "verdict": data.verdict_text,
        "first": _first_screen(data, figures),
        "findings": [_findings_block(v, linked) for v in data.shown],
        "interactions": _interactions(data, figures),
        "suspects": [_suspect(s, figures, data) for s in data.suspects if f"suspect:{s.factor}" in figures],
        "diagnostics": [{"id": f"fig-{fid}", "file": figures[fid], "title": title,
                         "caption": f"{caption} Shown for {side}.", "alt": f"{title} of {side}"}
                        for fid, title, caption in _DIAGNOSTICS
                        if fid in figures and not (fid == "loss" and data.kind == "study")],
        "every_variant": figures.get("every-variant"), "every_variant_lines": baseline_words(data.baselines),
        "every_variant_stuck": ("A model stuck at the unigram line ignores its input."
                                if data.baselines.get("unigram_entropy") is not None else
                                "A model stuck at the best constant prediction ignores its input."
                                if data.baselines.get("constant_loss") is not None else ""),
        "table": [_row(v) for v in data.variants.values()], "outcome": data.outcome,
    }


def _firsts(variants: list[VariantInfo]) -> list[RunInfo]:
    return [v.runs[0] for v in variants if v.runs]


def _first_screen(data: ReportData, figures: dict[str, str]) -> dict | None:
    head = data.headline
    if head is None or "verdict" not in figures:
        return None
    counts = {}
    for r in head.rows:
        status = r.effect.status or ("established" if r.effect.established else "inconclusive")
        counts[status] = counts.get(status, 0) + 1
    tally = ", ".join(f"{counts[s]} {s}" for s in ("established", "negligible", "inconclusive") if counts.get(s))
    seeds = sorted({r.effect.effect.n for r in head.rows})
    seeds_words = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    levels = sorted({r.effect.effect.confidence for r in head.rows})
    wider = [f"{100 * c:.3g}%" for c in levels if abs(c - 0.95) > 1e-9]
    level_words = "95%" + (f"; {', '.join(wider)} where the verdict added seeds and read it again, as marked at "
                           "its right" if wider else "")
    if head.mode == "gap":
        lines = (f"dashed lines: {head.faulty.name} {num(head.faulty.loss.mean)} and {head.reference.name} "
                 f"{num(head.reference.loss.mean)} {head.unit}; a switch that reaches the {head.reference.name} line "
                 "closes the whole gap. Right: the share of the gap it closes (on "
                 f"{head.faulty.name}) or opens (on {head.reference.name}), and its seeds") \
            if head.faulty and head.reference else ""
    else:
        lines = f"right: the effect in {head.unit} and its seeds"
    margin = (f"within ±{num(head.margin)} {head.unit}, a tenth of the gap" if head.margin is not None
              else "within the verdict's margin")
    caption = (f"Each row is one switch on a base: the dot is its {data.outcome} (mean over seeds), the thick bar "
               f"the interval of its effect (paired by seed; {level_words}), the thin line the move from its base's "
               f"loss; {lines}. Filled dot: established (the interval excludes zero); grey diamond: negligible "
               f"(the interval lies {margin}); hollow: inconclusive at these seeds. {tally} of {len(head.rows)}, "
               f"at {seeds_words} seeds. Method: {(data.verdict_text or {}).get('method') or 'the verdict'}.")
    shown = [v.name for v in (head.faulty, head.fix, head.reference) if v is not None]
    curves = None
    if "loss" in figures:
        curves = {"file": figures["loss"], "alt": f"Loss curves of {', '.join(shown)} over seeds",
                  "caption": (f"Training loss of {', '.join(shown)}: line the mean over seeds, band their range; "
                              "dotted points: validation passes"
                              + (f"; dashed: {lines}." if (lines := baseline_words(data.baselines)) else "."))}
    return {"verdict": {"file": figures["verdict"], "caption": caption,
                        "alt": f"Each switch's effect on the {data.outcome} with its interval, established, "
                               "negligible or inconclusive, and the share of the gap it closes"},
            "curves": curves}


def _findings_block(v: VariantInfo, linked: set[str]) -> dict:
    """A variant's findings over its seeds: one line each, the first seed it fired on giving the details."""
    items: dict[str, dict] = {}
    for run in v.runs:
        for f in run.findings:
            if f["id"] not in items:
                items[f["id"]] = {**f, "seeds": v.seeds_with(f["id"]), "of": len(v.runs), "run": run.label,
                                  "page": run.page,
                                  "anchor": f"fig-{f['figure']}" if f.get("figure") in linked else None}
    return {"variant": v.name, "runs": len(v.runs), "entries": list(items.values())}


def _interactions(data: ReportData, figures: dict[str, str]) -> dict | None:
    if "interactions" not in figures:
        return None
    return {"file": figures["interactions"],
            "alt": "Final loss of each combination of switches and of each of its parts alone",
            "caption": ("Each grid is one combination the study ran, on its base: the cell 'neither' is the base, "
                        f"the others each subset of the switches (mean {data.outcome}, 95% interval, seeds; "
                        "green is lower). When neither switch alone moves the loss far but both together do, the "
                        "interaction is why no single switch works; its estimate (the combination's effect beyond "
                        "the sum of its parts', paired by seed) is in each title where the verdict measured it.")}


def _suspect(s: Suspect, figures: dict[str, str], data: ReportData) -> dict:
    contexts = "; ".join(f"{c.label} (its own level: {s.labels.get(c.own_level, c.own_level)})" for c in s.contexts)
    parts = [f"Left: the {data.outcome} for each level of {s.factor} on {contexts} (mean over seeds; bars: "
             "95% interval; dots: seeds)."]
    c = s.contrast
    if c is not None:
        low, high = c.context.points[c.low], c.context.points[c.high]
        parts.append(f"The strongest contrast is on {c.context.label}: {s.factor}={s.labels.get(c.low, c.low)} ends "
                     f"at {num(low.loss.mean)} {data.unit} and {s.factor}={s.labels.get(c.high, c.high)} at "
                     f"{num(high.loss.mean)} ({low.loss.n} and {high.loss.n} seeds); next, their training loss")
        shown = [PANEL_CAPTIONS[p] for p in c.panels if p in PANEL_CAPTIONS]
        parts[-1] += ("; then " + "; ".join(shown) + ".") if shown else "."
        for found, on, off in ((c.only_high, c.high, c.low), (c.only_low, c.low, c.high)):
            if found:
                parts.append(f"Found with {s.factor}={s.labels.get(on, on)} and not with {s.labels.get(off, off)}: "
                             + "; ".join(f"{f['title']} ({f['id']}, {f['seeds']} of {f['of']} seeds)" for f in found)
                             + ".")
    cause = verdict_view.cause_of(data.verdict, s.factor)
    return {"factor": s.factor, "file": figures[f"suspect:{s.factor}"], "caption": " ".join(parts),
            "cause": f"Root cause {cause[0]}: {cause[1]}" if cause else None,
            "alt": f"Final loss per level of {s.factor}, and the contrast between two of its levels with its evidence"}


def _row(v: VariantInfo) -> dict:
    loss = v.loss
    return {"variant": v.name, "runs": len(v.entries), "completed": v.count("completed"),
            "diverged": v.count("diverged"), "failed": v.count("failed"),
            "mean": num(loss.mean) if loss else "n/a",
            "ci": f"{num(loss.lo)} to {num(loss.hi)}" if loss and loss.lo is not None else "n/a",
            "seeds": [{"label": f"seed {r.seed}" if r.seed is not None else "run", "page": r.page,
                       "status": r.status, "outcome": num(r.outcome)} for r in v.runs]}


def _proof_fact(run: RunInfo) -> str:
    """The run's proof in a line for its first screen: what its findings' proofs found, or how to get one."""
    if not run.findings:
        return "no findings to prove"
    statuses = [(f.get("proof") or {}).get("status") for f in run.findings]
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses) if s}
    if not counts:
        return f"not proven yet: diagnose check {run.path} --prove"
    untested = statuses.count(None)
    return (", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(statuses)} findings"
            + (f" ({untested} not tested)" if untested else "") + " (each below)")


# What each panel of a run's figure shows, in its caption's words (ids: figures_run.RUN_PANELS).
# A run page's caption and alt text name its panels in the words each figure declares.
_RUN_CAPTIONS = {f.id: f.run_caption or f.panel.lower() for f in TABLE if f.id != "loss"}
_RUN_ALT = {f.id: f.alt or f.panel.lower() for f in TABLE}


def _run_caption(shown: list[str], refs: dict) -> str:
    """The run figure's caption, naming only the panels it has, in their order."""
    lines = baseline_words(refs)
    parts = ["loss (training line, validation points" + (f"; dashed: {lines})" if lines else ")")]
    parts += [_RUN_CAPTIONS[fid] for fid in shown if fid in _RUN_CAPTIONS]
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}."


def run_view(run: RunInfo, figure: str, data: ReportData, shown: list[str] | None = None) -> dict:
    """A run page's context (see templates/run.html.j2); ``shown``: the panels its figure has
    (:func:`~diagnose.reports.figures_run.run_panels`), which its caption and alt text name."""
    shown = ["loss", *_RUN_CAPTIONS] if shown is None else shown
    s = run.summary
    final = s.get("final") or {}
    facts = [("run", run.id), ("status", s.get("status")), ("proof", _proof_fact(run)), ("steps", s.get("steps")),
             ("final training loss", num(final.get("train_loss"))),
             ("final validation loss", num(final.get("val_loss")))]
    if final.get("val_accuracy") is not None:  # a model that compiled no accuracy has none to show
        facts.append(("final validation accuracy", num(final.get("val_accuracy"))))
    facts.append(("wall time (s)", num(s.get("wall_time_s"))))
    if s.get("error"):
        facts.append(("error", s["error"]))
    variant = data.variants.get(run.variant)
    siblings = [{"label": r.label, "page": r.page} for r in (variant.runs if variant else []) if r is not run]
    config = [(f"{section}.{key}", value) for section in ("model", "data", "train")
              for key, value in sorted((run.config.get(section) or {}).items())]
    also = [name for name in data.variants_of(run) if name != run.variant]
    if also:
        facts.append(("also the run of", ", ".join(also)))
    return {"title": run.label, "facts": facts, "notes": run.problems, "figure": figure,
            "caption": _run_caption(shown, data.baselines),
            "alt": f"{', '.join(dict.fromkeys(_RUN_ALT[f] for f in shown)).capitalize()} of {run.label}",
            "findings": [{**f, "anchor": None, "seeds": None} for f in run.findings], "siblings": siblings,
            "config": config, "source": data.source}

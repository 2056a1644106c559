"""What a report shows, computed by diagnose: reports/ only draws and writes it.

    from diagnose.report_data import load
    data = load(["ablations/default"])      # or run directories
    data.headline.rows, data.suspects, data.runs ...

From a study directory: every whole run with its findings and outcome, each
variant's mean and interval over seeds, the verdict and its sentences (the CLI's),
the effects of each switch for the headline figure, the interactions and one
section per suspect factor. From run directories: the runs and their findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diagnose import studydir
from diagnose.findings.verdict_stats import loss_unit
from diagnose.findings.verdict_types import Verdict, read_verdict
from diagnose.memn2n.factors import DEFAULT_LEVELS, FACTORS, LEVEL_LABELS
from diagnose.report_data import verdict_view as vv
from diagnose.report_data.contrasts import Interaction, Suspect, interactions, suspects
from diagnose.report_data.records import RunInfo, VariantInfo, attach_proof, run_label, single_runs, study_runs
from diagnose.report_data.verdict_view import Effect, Interval

__all__ = ["load", "ReportData", "Headline", "Row", "RunInfo", "VariantInfo", "Interval", "Effect", "run_label"]


@dataclass
class Row:
    """One line of the headline figure: a switch, its effect from its base's loss, and what that settles."""

    label: str  # the switches, "loss_reduction=sum + output=softmax"
    variant: VariantInfo
    base: VariantInfo
    effect: Effect
    is_fix: bool  # the verdict's smallest fix (or best switch)


@dataclass
class Headline:
    """The first screen: what causes it, how sure, what to change."""

    mode: str  # "gap" or "effects"
    rows: list[Row]
    faulty: VariantInfo | None = None  # the base that fails (gap mode)
    reference: VariantInfo | None = None
    fix: VariantInfo | None = None
    gap: Interval | None = None
    margin: float | None = None  # an effect whose interval lies within +-margin (in ``unit``) is negligible (gap mode)
    unit: str = "nats"  # what the losses are in: nats (a cross-entropy), else the loss's own name ("mse")


@dataclass
class ReportData:
    kind: str  # "study" or "runs"
    title: str
    subtitle: str
    source: str
    notes: list[str]
    variants: dict[str, VariantInfo]
    verdict: Verdict | None = None
    verdict_text: dict | None = None  # the verdict's sentences: headline, causes, fix_label, fix, notes, method
    headline: Headline | None = None
    interactions: list[Interaction] = field(default_factory=list)
    suspects: list[Suspect] = field(default_factory=list)
    shown: list[VariantInfo] = field(default_factory=list)  # variants whose diagnostics and findings lead the page
    baselines: dict = field(default_factory=dict)  # the loss axis: reference losses (ln V, ...) and its "unit"
    outcome: str = "final validation loss"  # what a run's outcome (and a variant's mean) is, as the verdict says

    @property
    def unit(self) -> str:
        """What the losses are in: nats (a cross-entropy), else the loss's own name ("mse")."""
        return self.baselines.get("unit", "nats")

    @property
    def runs(self) -> list[RunInfo]:
        """Every run once (variants of one config share theirs), under the first variant that lists it."""
        return list({r.id: r for v in reversed(self.variants.values()) for r in reversed(v.runs)}.values())[::-1]

    def variants_of(self, run: RunInfo) -> list[str]:
        """The variants a run belongs to."""
        return [v.name for v in self.variants.values() if any(r.id == run.id for r in v.runs)]


def load(paths: list[str | Path]) -> ReportData:
    """Reads one ABLATION_DIR, or one or more RUN_DIRs, into what the report shows.

    Raises:
        ValueError: a path is neither a study nor a run record.
        DiagnoseError: a run record is damaged, or the manifest cannot be read.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and studydir.is_study_dir(paths[0]):
        return _study(paths[0])
    variants, notes = single_runs(paths)
    return ReportData("runs", "runs: " + ", ".join(variants), "single runs", ", ".join(p.name for p in paths),
                      notes, variants, shown=list(variants.values()), baselines=_baselines(variants))


def _study(path: Path) -> ReportData:
    manifest = studydir.read_manifest(path)
    variants, notes = study_runs(path)
    verdict = read_verdict(path)
    if manifest.get("proof") and (verdict is None or verdict.proof is None):
        from diagnose.userstudy.prove import study_verdict

        verdict = study_verdict(path)  # a proof study resumed by run-ablation: its proof from the records
    if verdict and verdict.proof:  # a proof study: the proof is of its unfixed model's findings
        from diagnose.userstudy.prove import BASE

        for run in (variants[BASE].runs if BASE in variants else []):
            attach_proof(run.findings, verdict.proof)
    refs = _baselines(variants)
    head = _headline(verdict, variants)
    if head is not None:
        head.unit = verdict.unit or refs["unit"]
    spec_factors = (manifest.get("spec") or {}).get("factors") or {}
    levels = {f: list(lv) if isinstance(lv, (list, dict)) and lv else list(DEFAULT_LEVELS.get(f, FACTORS.get(f, {})))
              for f, lv in spec_factors.items()}
    ranking = [f.factor for f in verdict.factors if f.factor] if verdict else []
    faulty = head.faulty.name if head and head.faulty else None
    t = manifest.get("totals", {})
    corpus = manifest.get("corpus", {})
    study = manifest.get("study", "")
    shown = [v for v in (head.faulty, head.fix, head.reference) if v is not None and v.runs] if head else []
    if not shown:  # no verdict to pick them: the first two variants with a run
        shown = [v for v in variants.values() if v.runs][:2]
    combos = interactions(variants)
    for item in combos:
        item.interaction = vv.interaction_of(verdict, item.variant.name)
    return ReportData(
        "study", f"Study '{study}': why does {'the ' + faulty + ' model' if faulty else 'this model'} not converge?",
        (f"study '{study}' on {corpus.get('name', 'a corpus')}: {t.get('runs')} runs, {t.get('completed')} "
         f"completed, {t.get('diverged')} diverged, {t.get('failed')} failed"),
        path.name, notes, variants, verdict, vv.parts(verdict), head, combos,
        suspects(variants, levels, LEVEL_LABELS, ranking, _declared(manifest)), shown, refs,
        vv.outcome_label(verdict))


def _declared(manifest: dict) -> list[tuple]:
    """The spec's own combinations as ``(base, ((factor, level), ...))``."""
    combos = (manifest.get("spec") or {}).get("combos") or {}
    return [(c["base"], tuple((f, str(lv)) for f, lv in c.items() if f != "base"))
            for c in combos.values() if isinstance(c, dict) and "base" in c]


def _headline(verdict: Verdict | None, variants: dict[str, VariantInfo]) -> Headline | None:
    mode = vv.mode(verdict)
    if mode is None:
        return None
    fix = vv.smallest_fix(verdict)
    rows = []
    for e in vv.effects(verdict):
        if e.side == "other":  # a level neither base has: its section shows it, the verdict blames only switches
            continue
        v = variants.get(e.variant)
        base = variants.get(v.base) if v else None
        if v is None or base is None or base.loss is None:
            continue
        rows.append(Row(" + ".join(f"{f}={lv}" for f, lv in v.switches) or v.name, v, base, e, e.variant == fix))
    head = Headline(mode, rows, fix=variants.get(fix) if fix else None)
    if mode == "gap":
        head.faulty, head.reference = variants.get(verdict.faulty), variants.get(verdict.reference)
        head.gap = vv.gap(verdict)
        head.margin = verdict.margin
    else:
        bases = verdict.bases
        head.faulty = variants.get(bases[0]) if len(bases) == 1 else None
    return head


def _baselines(variants: dict[str, VariantInfo]) -> dict:
    """The loss axis: the reference losses from the first run that has them, and ``unit``, what the losses
    are in (:func:`~diagnose.findings.verdict_stats.loss_unit`). The built-in MemN2N's are the corpus's (ln V,
    unigram entropy, Bayes floor); a Keras model's (``kind`` "keras") those of a model that learned nothing
    (ln of its classes, the best constant prediction under its loss)."""
    runs = [r for v in variants.values() for r in v.runs]
    model = runs[0].config.get("model") if runs else None
    keras = (model or {}).get("kind") == "keras"
    refs = {"unit": loss_unit(model) if runs else "nats", "kind": "keras" if keras else "memn2n"}
    keys = ("ln_vocab", "constant_loss") if keras else ("ln_vocab", "unigram_entropy", "bayes_floor")
    for r in runs:
        found = r.summary.get("baselines") or {}
        if found:
            refs.update({k: found[k] for k in keys if found.get(k) is not None})
            break
    return refs

"""The HTML report: one self-contained directory (index.html and its PNGs) from run records.

Templates are Jinja2 with autoescaping, so every string from user data (run names,
config values, corpus tokens) is escaped. No scripts, fonts or stylesheets are
fetched: the page works offline.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import jinja2

from diagnose import __version__, runrecord, studydir
from diagnose.errors import DiagnoseError
from diagnose.findings.proof import proof_line
from diagnose.userstudy.prove import read_proof, study_verdict
from reports import plots

__all__ = ["build_report"]

_FIGURES = [
    # id, file, title, caption, how
    ("fig-gradients", "grad_norms.png", "Gradient norms per variable",
     "L2 norm of each variable's gradient before clipping (log scale). Look for norms that grow by orders of "
     "magnitude (exploding), collapse towards zero (vanishing), or sit far below the others (a variable that "
     "barely learns).", ("grad_norm/", "gradient L2 norm", True)),
    ("fig-updates", "update_ratios.png", "Update-to-weight ratios",
     "||Δw|| / ||w|| per step (log scale); around 1e-3 is a healthy step. A mean-reduced loss with a rate tuned "
     "for a summed one shows as ratios one to two orders of magnitude lower.", ("update_ratio/", "||Δw|| / ||w||",
                                                                               True)),
    ("fig-attention-entropy", "attention_entropy.png", "Attention entropy per hop",
     "Entropy of each hop's attention divided by ln(number of real slots): 1 is uniform (the hop reads an "
     "average of the window), near 0 is one slot. A model that uses its memory brings it down.",
     ("attn_entropy/", "normalised entropy", False)),
    ("fig-branches", "branch_rms.png", "Branch balance",
     "RMS of what is added together: word embedding vs temporal encoding for each memory embedding, and the H "
     "term vs the attention read-out per hop (log scale). A temporal encoding far above the words drowns them; "
     "an H term on the scores swamps the read-out.", ("rms/", "RMS", True)),
    ("fig-output", "output_health.png", "Output health",
     "Share of output units exactly zero, share of targets at the 1e-7 clip floor, mean top and target "
     "probability. Dead ReLU outputs and targets at the floor mean the output is not a distribution the loss "
     "can train.", (("out_", "target_", "max_prob"), "share / probability", False)),
]


def build_report(paths: list[str | Path], out_dir: str | Path) -> Path:
    """Writes out_dir/index.html and its figures; returns the index path.

    Args:
        paths: one ABLATION_DIR, or one or more RUN_DIRs.
        out_dir: the report directory (created).
    """
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    ablation = len(paths) == 1 and studydir.is_study_dir(paths[0])
    notes = []
    if not ablation:  # checked before anything is written
        for p in paths:
            if not runrecord.is_run_dir(p):
                raise ValueError(studydir.not_a_record(p))
            problems = runrecord.record_problems(p)
            if problems and problems != [runrecord.NEVER_FINISHED]:
                raise DiagnoseError(f"the run record in {p} is incomplete: {'; '.join(problems)}; train it again "
                                    "(diagnose train --force) or leave it out")
            notes += [f"{p.name}: {problem}" for problem in problems]
    proofs: dict = {}  # run name -> its proof, where there is one
    if ablation:
        reps, table, verdict, title, notes = _ablation_parts(paths[0])
        if verdict and verdict.get("proof_raw"):
            proofs[next(iter(reps), None)] = verdict["proof_raw"]
    else:
        reps = {p.name: p for p in paths}
        table = [_run_row(p.name, [p]) for p in paths]
        verdict, title = None, "runs: " + ", ".join(p.name for p in paths)
        proofs = {p.name: proof for p in paths if (proof := read_proof(p))}
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    if ablation:
        for metric, fid, name, caption in (
                ("loss", "fig-loss", "Training loss, every variant",
                 "Mean training loss over seeds (line) and their range (band), one panel per variant, shared "
                 "axes; dashed lines: ln V (uniform guess), unigram entropy (word frequencies only) and the "
                 "Bayes floor (the best any model can do). A model stuck at the unigram line ignores its input."),
                ("valid_loss", "fig-valid", "Validation loss, every variant",
                 "The same for validation loss, measured at each validation pass.")):
            if plots.loss_curves(paths[0], out / f"{metric}_curves.png", metric=metric):
                figures.append({"id": fid, "file": f"{metric}_curves.png", "title": name, "caption": caption})
    else:
        if plots.family_figure(reps, ("loss", "valid_loss"), out / "loss_curves.png", ylabel="loss (nats)"):
            figures.append({"id": "fig-loss", "file": "loss_curves.png", "title": "Loss",
                            "caption": "Training and validation loss per run."})
    for fid, file, name, caption, (prefix, ylabel, log) in _FIGURES:
        if plots.family_figure(reps, prefix, out / file, ylabel=ylabel, log=log):
            figures.append({"id": fid, "file": file, "title": name, "caption": caption})
    if plots.attention_heatmaps(reps, out / "attention_maps.png"):
        figures.insert(len(figures) - 2, {
            "id": "fig-attention-map", "file": "attention_maps.png", "title": "Where attention lands, early vs late",
            "caption": "Share of each interval's examples whose attention peaked on each memory slot, per hop "
                       "(rightmost: the current word). Content-driven attention spreads with the input; one "
                       "bright column whatever the input is attention collapsed onto a position."})
    findings = _findings(reps, proofs)
    html = _env().get_template("report.html.j2").render(
        title=title, subtitle=_subtitle(paths[0], ablation), notes=notes, verdict=verdict, findings=findings,
        figures=figures, table=table, version=__version__, source=", ".join(p.name for p in paths))
    index = out / "index.html"
    runrecord.atomic_write(index, html)
    return index


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x: f"{x:.4g}" if isinstance(x, float) else x
    return env


def _subtitle(path: Path, ablation: bool) -> str:
    if not ablation:
        return "single runs"
    manifest = studydir.read_manifest(path)
    corpus = manifest.get("corpus", {})
    t = manifest.get("totals", {})
    return (f"study '{manifest.get('study')}' on {corpus.get('name', 'a corpus')}: {t.get('runs')} runs, "
            f"{t.get('completed')} completed, {t.get('diverged')} diverged, {t.get('failed')} failed")


def _ablation_parts(path: Path):
    manifest = studydir.read_manifest(path)
    by_variant: dict[str, list[dict]] = {}
    notes, whole = [], set()
    for e in manifest["runs"]:
        by_variant.setdefault(e["variant"], []).append(e)
        run = studydir.run_path(path, e["id"])
        problems = runrecord.record_problems(run) if run.is_dir() else ["not run yet"]
        if problems:
            notes.append(f"{e['variant']}, seed {e['seed']} (run {e['id']}): {'; '.join(problems)}; left out")
        else:
            whole.add(e["id"])
    reps = {}
    for name in ("as-posted", "paper"):
        entries = sorted((e for e in by_variant.get(name, []) if e["id"] in whole), key=lambda e: e["seed"])
        if entries:
            reps[name] = studydir.run_path(path, entries[0]["id"])
    if not reps:  # a study without those bases: its first two variants
        for name, entries in list(by_variant.items())[:2]:
            entries = [e for e in entries if e["id"] in whole]
            if entries:
                reps[name] = studydir.run_path(path, entries[0]["id"])
    table = [_run_row(v, [studydir.run_path(path, e["id"]) for e in es if e["id"] in whole],
                      [e for e in es if e["id"] in whole]) for v, es in by_variant.items()]
    verdict = studydir.read_verdict(path)
    if manifest.get("proof") and (verdict is None or "proof" not in verdict):
        verdict = study_verdict(path)  # a proof study resumed by run-ablation: its proof from the records
    verdict = _verdict_view(verdict) if verdict is not None else None
    faulty = "the as-posted model" if "as-posted" in by_variant else "this model"
    return reps, table, verdict, f"Study '{manifest.get('study', '')}': why does {faulty} not converge?", notes


def _verdict_view(v: dict) -> dict:
    """The verdict's sentences as the CLI prints them (written once, in verdict_text), and its proof."""
    from diagnose.findings.verdict_text import verdict_parts

    view = verdict_parts(v)
    proof = v.get("proof")
    view.update(proof_raw=proof, proof=None, proof_definition="")
    if proof:
        view["proof"] = [{"id": e["id"], "kind": e["kind"], "status": e["status"], "line": proof_line(e)}
                         for e in proof["findings"]]
        view["proof_definition"] = proof["definition"]
    return view


def _run_row(variant: str, run_dirs: list[Path], entries: list[dict] | None = None) -> dict:
    from scipy import stats

    statuses = [e["status"] for e in entries] if entries else [
        runrecord.read_summary(p).get("status") for p in run_dirs]
    losses = []
    for p, status in zip(run_dirs, statuses):
        if status == "completed" and (p / runrecord.SUMMARY).is_file():
            loss = (runrecord.read_summary(p).get("final") or {}).get("valid_loss")
            if loss is not None and math.isfinite(loss):
                losses.append(loss)
    mean = statistics.fmean(losses) if losses else None
    ci = "n/a"
    if len(losses) > 1:
        half = stats.t.ppf(0.975, len(losses) - 1) * statistics.stdev(losses) / math.sqrt(len(losses))
        ci = f"{mean - half:.3f} to {mean + half:.3f}"
    return {"variant": variant, "runs": len(run_dirs), "completed": statuses.count("completed"),
            "diverged": statuses.count("diverged"), "failed": statuses.count("failed"),
            "mean": _num(mean), "ci": ci}


def _findings(reps: dict[str, Path], proofs: dict) -> list[dict]:
    from diagnose.findings import check_run

    blocks = []
    for name, path in reps.items():
        items = []
        proven = {e["id"]: e for e in (proofs.get(name) or {}).get("findings", [])}
        for f in check_run(path):
            d = f.to_dict()
            d["figure"] = f"fig-{f.figure}" if f.figure else None
            d["proof"] = ({"status": proven[f.id]["status"], "line": proof_line(proven[f.id])} if f.id in proven
                          else None)
            items.append(d)
        blocks.append({"run": name, "findings": items})
    return blocks


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"

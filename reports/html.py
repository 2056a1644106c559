"""The HTML report: one self-contained directory (index.html, a page per run, their PNGs).

What it shows is computed by :mod:`diagnose.report_data` (findings, intervals, the
verdict and its sentences); this module only draws and writes it. The directory
is built beside its place and swapped in whole, so a report that fails half way
leaves the previous one as it was. Templates are Jinja2 with autoescaping, so
every string from user data (run names, config values) is escaped; no scripts,
fonts or stylesheets are fetched: the page works offline.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

import jinja2

from diagnose import __version__, runrecord
from diagnose.files import atomic_write, make_temp_dir, replace_dir
from diagnose.report_data import ReportData, RunInfo, load
from reports import figures_headline, figures_run, figures_study, plots
from reports.views import SIDE_BY_SIDE, index_view, run_view

__all__ = ["build_report"]


def build_report(paths: list[str | Path], out_dir: str | Path) -> Path:
    """Writes out_dir/index.html, a page per run and their figures; returns the index path.

    Args:
        paths: one ABLATION_DIR, or one or more RUN_DIRs.
        out_dir: the report directory (replaced whole when it exists).

    Raises:
        ValueError: a path is neither a study nor a run record.
        DiagnoseError: a record or the manifest is damaged (nothing is written).
    """
    data = load(paths)  # every check before anything is written
    out = Path(out_dir)
    work = make_temp_dir(out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        _write(data, work, previous=out if out.is_dir() else None)
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / "index.html"


def _write(data: ReportData, out: Path, previous: Path | None) -> None:
    figures = _study_figures(data, out) if data.kind == "study" else {}
    figures.update(_diagnostics(data, out))
    env = _env()
    pages = _run_figures(data.runs, data.baselines, out, previous)
    for run in data.runs:
        html = env.get_template("run.html.j2").render(**run_view(run, pages[run.id], data), version=__version__)
        atomic_write(out / run.page, html)
    html = env.get_template("report.html.j2").render(**index_view(data, figures), version=__version__)
    atomic_write(out / "index.html", html)


def _study_figures(data: ReportData, out: Path) -> dict[str, str]:
    """The study's own figures: the first screen, interactions, suspects, every variant's curves."""
    drawn = {}
    head = data.headline
    if head is not None:
        if figures_headline.verdict_figure(head, data.baselines, out / "verdict.png", outcome=data.outcome):
            drawn["verdict"] = "verdict.png"
        if figures_headline.headline_curves(head, data.baselines, out / "headline_curves.png"):
            drawn["loss"] = "headline_curves.png"
    if figures_study.interactions_figure(data.interactions, out / "interactions.png", outcome=data.outcome):
        drawn["interactions"] = "interactions.png"
    for i, s in enumerate(data.suspects, start=1):
        name = f"suspect-{i}-{_slug(s.factor)}.png"
        if figures_study.suspect_figure(s, data.baselines, out / name, outcome=data.outcome):
            drawn[f"suspect:{s.factor}"] = name
    variants = {v.name: [r.path for r in v.runs] for v in data.variants.values()}
    if any(variants.values()):
        plots.small_multiples(variants, out / "every_variant.png", data.baselines)
        drawn["every-variant"] = "every_variant.png"
    return drawn


def _diagnostics(data: ReportData, out: Path) -> dict[str, str]:
    """The families of the variants the page leads with, side by side: what their findings point at."""
    drawn = {}
    if data.kind == "runs":
        loss = {v.name: [r.path for r in v.runs] for v in data.shown}
        if loss:
            from reports.plots import compare

            compare([p for runs in loss.values() for p in runs], out / "loss_curves.png")
            drawn["loss"] = "loss_curves.png"
    shown = data.shown[:SIDE_BY_SIDE]
    for fid in ("gradients", "updates", "attention-entropy", "branches", "output"):
        if figures_run.family_side_by_side(shown, fid, out / f"{fid}.png"):
            drawn[fid] = f"{fid}.png"
    if figures_run.attention_side_by_side(shown, out / "attention_maps.png"):
        drawn["attention-map"] = "attention_maps.png"
    return drawn


def _run_figures(runs: list[RunInfo], refs: dict, out: Path, previous: Path | None) -> dict[str, str]:
    """Each run's figure (run id -> file name): from the previous report where its record has not
    changed since, else drawn, by several processes where there are many (a study has a hundred)."""
    names, todo = {}, []
    for run in runs:
        names[run.id] = name = f"run-{run.id}-{_stamp(run.path)}.png"
        old = previous / name if previous is not None else None
        if old is not None and old.is_file():
            try:
                os.link(old, out / name)  # the old report goes when this one is swapped in; the link keeps the file
            except OSError:
                shutil.copyfile(old, out / name)
        else:
            todo.append((run, refs, out / name))
    workers = min(_cores(), len(todo) // _RUNS_PER_WORKER)
    if workers > 1 and _can_fork():
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork, not spawn: spawn re-runs the caller's script, which a script without a main guard
        # cannot survive; the children only draw (matplotlib, pandas), so a fork is safe to take.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_draw_run, todo, chunksize=4))
    else:
        for task in todo:
            _draw_run(task)
    return names


# Below this many figures per process, a pool costs more than it saves.
_RUNS_PER_WORKER = 8


def _can_fork() -> bool:
    """Fork exists here and no other Python thread could be caught holding a lock the children need."""
    import multiprocessing
    import threading

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _draw_run(task: tuple) -> None:
    run, refs, png = task
    figures_run.run_figure(run, refs, png)


def _stamp(run_dir: Path) -> str:
    """8 hex digits that change whenever the files a run's figure is drawn from, or the code drawing it, change."""
    parts = [_drawing_code()]
    for file in (runrecord.METRICS, runrecord.ATTENTION, runrecord.SUMMARY):
        path = run_dir / file
        if path.is_file():
            st = path.stat()
            parts.append(f"{file}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


@functools.lru_cache(maxsize=1)
def _drawing_code() -> str:
    """A digest of the modules that draw a run's figure: a figure from older code is drawn again."""
    from reports import panels

    text = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (figures_run, panels, plots))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name) or "factor"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = plots.num
    env.filters["signed"] = lambda x: plots.num(x, signed=True)
    return env

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
from collections.abc import Callable
from pathlib import Path

import jinja2

from diagnose import __version__, runrecord
from diagnose.files import atomic_write, held_temp_dir, replace_dir
from diagnose.findings import figures as declared
from diagnose.outputs import check_report_dir, mark_report
from diagnose.parallel import fork_map
from diagnose.report_data import ReportData, RunInfo, load
from . import figures_headline, figures_run, figures_study, plots
from .views import SIDE_BY_SIDE, index_view, run_view

__all__ = ["build_report"]


def build_report(paths: list[str | Path], out_dir: str | Path, force: bool = False, what: str = "--out") -> Path:
    """Writes out_dir/index.html, a page per run and their figures; returns the index path.

    Args:
        paths: one ABLATION_DIR, or one or more RUN_DIRs.
        out_dir: the report directory (replaced whole when it exists and a report wrote it).
        force: replace a non-empty directory a report did not write (never a record).
        what: how an error names ``out_dir`` (see :func:`~diagnose.outputs.check_report_dir`).

    Raises:
        ValueError: a path is neither a study nor a run record.
        DiagnoseError: a record or the manifest is damaged, or ``out_dir`` is a record, a
            directory a report did not write or one that cannot be written (nothing is written).
    """
    data = load(paths)  # every check before anything is written
    out = Path(out_dir)
    check_report_dir(out, list(paths), force, what)
    # Built aside (a report killed half way leaves one behind, which the next report removes) and swapped in whole.
    with held_temp_dir(out.parent, prefix=f".{out.name[:40]}.") as work:
        _write(data, work, previous=out if out.is_dir() else None)
        mark_report(work)
        replace_dir(work, out)
    return out / "index.html"


def _write(data: ReportData, out: Path, previous: Path | None) -> None:
    figures = _draw(_study_figures(data, out) if data.kind == "study" else [])
    figures.update(_draw(_diagnostics(data, out)))
    env = _env()
    pages = _run_figures(data.runs, data.baselines, out, previous)
    for run in data.runs:
        html = env.get_template("run.html.j2").render(**run_view(run, pages[run.id], data, figures_run.run_panels(run)),
                                                      version=__version__)
        atomic_write(out / run.page, html)
    html = env.get_template("report.html.j2").render(**index_view(data, figures), version=__version__)
    atomic_write(out / "index.html", html)


# A figure to draw: (the id the page knows it by, the function, its arguments; the last is the file it writes).
Task = tuple[str, Callable, tuple]


def _study_figures(data: ReportData, out: Path) -> list[Task]:
    """The study's own figures: the first screen, interactions, suspects, every variant's curves."""
    tasks: list[Task] = []
    variants = {v.name: [r.path for r in v.runs] for v in data.variants.values()}
    if any(variants.values()):
        tasks.append(("every-variant", figures_study.every_variant,
                      (variants, out / "every_variant.svg", data.baselines)))
    head = data.headline
    if head is not None:
        tasks.append(("verdict", functools.partial(figures_headline.verdict_figure, outcome=data.outcome),
                      (head, data.baselines, out / "verdict.png")))
        height = max(4.0, figures_headline.verdict_height(head)) if head.rows else 5.6
        tasks.append(("loss", functools.partial(figures_headline.headline_curves, height=height),
                      (head, data.baselines, out / "headline_curves.png")))
    tasks.append(("interactions", functools.partial(figures_study.interactions_figure, outcome=data.outcome,
                                                    unit=data.unit),
                  (data.interactions, out / "interactions.png")))
    for i, s in enumerate(data.suspects, start=1):
        tasks.append((f"suspect:{s.factor}", functools.partial(figures_study.suspect_figure, outcome=data.outcome),
                      (s, data.baselines, out / f"suspect-{i}-{_slug(s.factor)}.png")))
    return tasks


def _diagnostics(data: ReportData, out: Path) -> list[Task]:
    """The families of the variants the page leads with, side by side: what their findings point at."""
    tasks: list[Task] = []
    if data.kind == "runs":
        loss = [p for v in data.shown for p in (r.path for r in v.runs)]
        if loss:
            tasks.append(("loss", plots.compare, (loss, out / "loss_curves.png")))
    shown = data.shown[:SIDE_BY_SIDE]
    for fid in declared.FAMILIES:
        tasks.append((fid, figures_run.family_side_by_side, (shown, fid, out / f"{fid}.png")))
    tasks.append(("attention-map", figures_run.attention_side_by_side, (shown, out / "attention_maps.png")))
    return tasks


def _draw(tasks: list[Task]) -> dict[str, str]:
    """Draws every figure, by several processes where there are cores to spare; id -> file of those drawn."""
    done = fork_map(_call, tasks)
    return {fid: Path(file).name for (fid, _, _), file in zip(tasks, done) if file}


# Below this many run figures a process, a pool costs more than it saves.
_RUNS_PER_WORKER = 24


def _call(task: Task):
    _, draw, args = task
    return draw(*args)


def _run_figures(runs: list[RunInfo], refs: dict, out: Path, previous: Path | None) -> dict[str, str]:
    """Each run's figure (run id -> file name): from the previous report where its record has not
    changed since, else drawn (an SVG of a few milliseconds: a study has a hundred and more)."""
    names, todo = {}, []
    for run in runs:
        names[run.id] = name = f"run-{run.id}-{_stamp(run.path)}.svg"
        old = previous / name if previous is not None else None
        if old is not None and old.is_file():
            try:
                os.link(old, out / name)  # the old report goes when this one is swapped in; the link keeps the file
            except OSError:
                shutil.copyfile(old, out / name)
        else:
            todo.append(run)
    fork_map(lambda run: figures_run.run_figure(run, refs, out / names[run.id]), todo, _RUNS_PER_WORKER)
    return names


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
    """A digest of the modules that draw a run's figure (and the table declaring its panels): a figure from
    older code is drawn again."""
    from . import panels, svg

    text = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (declared, figures_run, panels, plots, svg))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name) or "factor"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = plots.num
    env.filters["signed"] = lambda x: plots.num(x, signed=True)
    return env

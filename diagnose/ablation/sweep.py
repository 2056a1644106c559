"""The sweep driver: expands a spec into runs, resumes, dispatches, and alone writes the study directory.

The directory's layout and names are :mod:`diagnose.studydir`'s. Run ids hash the
resolved config and seed, so a resumed sweep recognises its runs. A run counts as
done when its record is whole (:func:`diagnose.runrecord.record_problems`) and says
completed or diverged; anything else (missing, running, failed, damaged, a
half-moved directory) is run again. One command writes a study at a time (its
:class:`~diagnose.studydir.StudyLock`), and a spec other than the study's own is
refused unless ``force`` replaces the study.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import time
from pathlib import Path, PurePosixPath
from typing import Callable

from diagnose import runrecord, studydir
from diagnose.ablation.seeding import SeedPlan
from diagnose.ablation.variants import RunTask, spec_digest
from diagnose.errors import DiagnoseError, RecordError
from diagnose.files import check_writable, refuse_links, replace_dir

__all__ = ["run_sweep", "DONE_STATUSES", "summarize", "check_study_target", "adaptive_state"]

DONE_STATUSES = ("completed", "diverged")
# The manifest is rewritten after every run while a study is small, and after every
# 1% of its runs beyond that: a 30,000-run study's manifest is 9 MB and takes 0.7 s
# to write (measured), which after every run would be hours of I/O growing with the
# square of the study; the runs' records, not the manifest, are what a resume reads.
_MANIFEST_WRITES = 100


def check_study_target(out: str | Path) -> None:
    """Refuses an --out that is a run record, holds a planted link or cannot be written, in one line, before
    anything runs (the study's lock included: a refused command leaves nothing in the directory)."""
    out = Path(out)
    if runrecord.is_run_dir(out):
        raise DiagnoseError(f"--out {out} holds a run record ('diagnose train' wrote it); give run-ablation a "
                            "directory of its own")
    if out.is_dir():
        studydir.refuse_study_links(out)  # checked again under the lock, for one planted since
    check_writable(out)


def _done(out: Path, run_id: str) -> dict | None:
    """The summary of a run whose record is whole and ended, else None (to be run)."""
    run = studydir.run_path(out, run_id)
    if not run.is_dir() or runrecord.record_problems(run):
        return None
    summary = runrecord.read_summary(run)
    return summary if summary.get("status") in DONE_STATUSES else None


def _write_run(out: Path, result: dict) -> dict:
    """Writes a worker's returned files as runs/<id> by directory rename; returns the result as recorded.

    A worker that says completed but returns an incomplete record (no metrics, say)
    is recorded as failed, so no record marked completed ever lacks a file.
    """
    final = studydir.run_path(out, result["run_id"])
    partial = final.with_name(final.name + studydir.PARTIAL)
    refuse_links(final.parent, (partial.name, final.name))  # one planted since the sweep began
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()  # new: what is written below it is the sweep's
    for rel, data in result["files"].items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise RecordError(f"a worker returned a file {rel!r} outside its run record")
        path = partial.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if not result["files"]:  # failed before a record existed: write a minimal one
        runrecord.write_summary(partial, {"status": "failed", "error": result.get("error")})
    elif result["status"] in DONE_STATUSES and (problems := runrecord.record_problems(partial)):
        error = f"the run's record came back incomplete: {'; '.join(problems)}"
        summary = runrecord.read_summary(partial) if (partial / runrecord.SUMMARY).is_file() else {}
        runrecord.write_summary(partial, {**summary, "status": "failed", "error": error})
        result = {**result, "status": "failed", "error": error}
    replace_dir(partial, final)
    return result


def _entry(task: RunTask, status: str, wall: float | None = None, error: str | None = None) -> dict:
    return {"id": task.run_id, "variant": task.variant.name, "base": task.variant.base,
            "factor": task.variant.factor, "level": task.variant.level,
            "switches": [list(sw) for sw in task.variant.switches], "level_of": list(task.variant.level_of),
            "seed": task.seed, "status": status,
            "wall_time_s": wall, "error": error}


def _adopt(out: Path, spec, force: bool) -> bool:
    """Checks the study in ``out`` is this spec's. True when ``force`` replaces another study.

    A damaged manifest with ``force`` is rebuilt from the runs there: its spec is unknown,
    so none of its runs is known to be another study's, and all are kept (a run's id is
    its config: the seeds a follow-up added are found again, not retrained).

    Raises:
        DiagnoseError: ``out`` holds another study (or a damaged manifest) and no ``force``.
    """
    if not studydir.is_study_dir(out):
        return False
    try:
        old = studydir.read_manifest(out)
    except RecordError as exc:
        if not force:
            raise DiagnoseError(f"{exc}; pass --force to rebuild it from the runs there, or give another --out") \
                from None
        (out / studydir.VERDICT).unlink(missing_ok=True)  # read from the manifest: written again
        return False
    # A manifest from before digests were kept: its spec, hashed now.
    if (old.get("spec_digest") or (spec_digest(old["spec"]) if isinstance(old.get("spec"), dict) else None)) \
            == spec.digest:
        return False
    if not force:
        raise DiagnoseError(f"{out} holds another study ('{old.get('study')}', from a different spec); pass --force "
                            "to replace it (the runs both specs share are kept), or give another --out")
    # Stale for the new study: gone before the new manifest names it. A report stays (the command that
    # writes one replaces it at the end; one told not to write it leaves it, saying so).
    (out / studydir.VERDICT).unlink(missing_ok=True)
    return True


def run_sweep(spec, out_dir: str | Path, executor, *, progress: Callable[[dict], None] | None = None,
              force: bool = False, plan: SeedPlan | None = None, follow_ups: tuple = ()) -> dict:
    """Runs (or resumes) a study and returns the manifest as written.

    Args:
        spec: a validated spec of either kind (:mod:`diagnose.studies`): a built-in study's
            :class:`~diagnose.memn2n.spec.Spec` or a user study's :class:`~diagnose.userstudy.spec.KerasSpec`;
            its ``prepare(plan)`` gives the tasks.
        out_dir: ABLATION_DIR; created, or resumed when it holds this spec's study.
        executor: a LocalExecutor, InlineExecutor or RayExecutor.
        progress: called after each finished run, once per variant it stands for, with ``{"done",
            "total", "before", "entry"}``: ``done`` counts by one up to ``total`` (the variants of
            this sweep, all seeds), from ``before`` (those recorded when it began: resumed, or
            run by an earlier round).
        force: replace a study of another spec in ``out_dir`` (runs the two share are kept).
        plan: more seeds for some variants (the verdict's adaptive seeds).
        follow_ups: combinations the verdict asked for, ``((base, ((factor, level), ...)), ...)``,
            run beside the spec's own variants. The manifest keeps both (``adaptive``),
            so a resumed study starts from them; the spec (and its digest) stays as given.

    Raises:
        DiagnoseError: ``out_dir`` is a run record, cannot be written, is being written
            by another command, or holds another spec's study (without ``force``).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    plan = plan or SeedPlan()
    follow_ups = tuple(c for c in follow_ups if c not in spec.combos)
    spec = dataclasses.replace(spec, combos=spec.combos + follow_ups)
    tasks, about = spec.prepare(plan)  # bad data or builder: an error before anything runs
    check_study_target(out)
    with studydir.StudyLock(out):
        studydir.refuse_study_links(out)  # nothing written through a link planted in the study
        replaced = _adopt(out, spec, force)
        runs = out / studydir.RUNS
        runs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / studydir.SCRATCH, ignore_errors=True)
        for stale in runs.glob(f"*{studydir.PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)
        entries = {}  # (variant, run id) -> its entry: variants with one config (and seed) share the run
        for task in tasks:
            summary = _done(out, task.run_id)
            entries[_key(task)] = (_entry(task, summary["status"], summary.get("wall_time_s"), summary.get("error"))
                                   if summary else _entry(task, "pending"))
        resumed = sum(e["status"] in DONE_STATUSES for e in entries.values())
        manifest = {"schema": 1, "study": spec.name, "spec": spec.raw, "spec_digest": spec.digest, **about,
                    "runs": [], "totals": {},
                    "adaptive": {"seeds": plan.to_dict(),
                                 "follow_ups": [[base, [list(sw) for sw in switches]]
                                                for base, switches in follow_ups]},
                    "timings": {"resumed_runs": resumed}}
        _write_manifest(out, manifest, entries)
        by_id: dict[str, list[RunTask]] = {}
        for task in tasks:
            by_id.setdefault(task.run_id, []).append(task)
        if replaced:  # the old study's runs that the new one does not have
            for path in runs.iterdir():
                if path.name not in by_id and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
        pending = list({t.run_id: t for t in tasks if entries[_key(t)]["status"] == "pending"}.values())
        scratch = out / studydir.SCRATCH
        scratch.mkdir()  # removed above: a new directory, not one a link names
        before = len(tasks) - sum(len(by_id[t.run_id]) for t in pending)  # resumed, or from earlier rounds
        done, unwritten = before, 0
        every = max(1, math.ceil(len(tasks) / _MANIFEST_WRITES))
        t_first = None
        payload = [{"run_id": t.run_id, "trainer": t.trainer, "config": t.config.to_dict(), "scratch": str(scratch),
                    "group": t.group} for t in pending]
        for result in executor.run(payload):
            t_first = t_first or time.perf_counter()
            result = _write_run(out, result)
            for task in by_id[result["run_id"]]:
                entries[_key(task)] = _entry(task, result["status"], result["wall_time_s"], result["error"])
            unwritten += 1
            if unwritten >= every:
                _write_manifest(out, manifest, entries)
                unwritten = 0
            for task in by_id[result["run_id"]]:  # one event per variant (variants may share a run): counted by one
                done += 1
                if progress is not None:
                    progress({"done": done, "total": len(tasks), "before": before, "entry": entries[_key(task)]})
        shutil.rmtree(scratch, ignore_errors=True)
        wall = time.perf_counter() - t_start
        run_times = list({e["id"]: e["wall_time_s"] for e in entries.values() if e["wall_time_s"] is not None}.values())
        manifest["timings"].update({"wall_time_s": wall, "runs_time_s": sum(run_times),
                                    "mean_run_time_s": statistics.fmean(run_times) if run_times else None,
                                    "startup_s": (t_first - t_start) if t_first else None})
        _write_manifest(out, manifest, entries)
    return manifest


def _key(task: RunTask) -> tuple[str, str]:
    return task.variant.name, task.run_id


def adaptive_state(out_dir: str | Path, spec) -> tuple[SeedPlan, tuple]:
    """The seeds and follow-ups a study in ``out_dir`` already added, if it is this spec's study."""
    out = Path(out_dir)
    if not studydir.is_study_dir(out):
        return SeedPlan(), ()
    try:
        manifest = studydir.read_manifest(out)
    except RecordError:
        return SeedPlan(), ()
    if manifest.get("spec_digest") != spec.digest:
        return SeedPlan(), ()
    adaptive = manifest.get("adaptive") or {}
    follow_ups = tuple((base, tuple(tuple(sw) for sw in switches)) for base, switches in adaptive.get("follow_ups", []))
    return SeedPlan.from_dict(adaptive.get("seeds")), follow_ups


def _write_manifest(out: Path, manifest: dict, entries: dict) -> None:
    manifest["runs"] = list(entries.values())
    counts = {s: 0 for s in ("completed", "diverged", "failed", "pending")}
    for e in entries.values():
        counts[e["status"] if e["status"] in counts else "failed"] += 1
    manifest["totals"] = {"runs": len(entries), **counts}
    studydir.write_manifest(out, manifest)


def summarize(out_dir: str | Path) -> list[dict]:
    """One row per variant: runs by status and the outcome the verdict reads, over seeds.

    The outcome is :func:`~diagnose.findings.verdict_stats.run_outcome`'s (the mean
    validation loss over the last quarter of a run, diverged runs included), so the
    table and the verdict show the same numbers.
    """
    from diagnose.findings.verdict_stats import run_outcome

    out = Path(out_dir)
    manifest = studydir.read_manifest(out)
    rows: dict[str, dict] = {}
    for e in manifest["runs"]:
        row = rows.setdefault(e["variant"], {"variant": e["variant"], "completed": 0, "diverged": 0, "failed": 0,
                                             "pending": 0, "losses": []})
        row[e["status"] if e["status"] in row else "failed"] += 1
        if e["status"] in DONE_STATUSES:
            value, _ = run_outcome(studydir.run_path(out, e["id"]))
            if value is not None:
                row["losses"].append(value)
    for row in rows.values():
        losses = row.pop("losses")
        row["val_loss_mean"] = statistics.fmean(losses) if losses else math.nan
        row["val_loss_sd"] = statistics.stdev(losses) if len(losses) > 1 else math.nan
    return list(rows.values())

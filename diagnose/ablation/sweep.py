"""The sweep driver: expands a spec into runs, resumes, dispatches, and alone writes ABLATION_DIR.

Layout of ABLATION_DIR::

    manifest.json          the spec, every run (id, variant, seed, status, timings), totals
    runs/<run_id>/         one run record per run (see diagnose.runrecord)
    .scratch/              workers' scratch space (local executor), removed on resume

Run ids hash the resolved config and seed, so a resumed sweep recognises its runs.
A run counts as done when ``runs/<id>/summary.json`` says completed or diverged;
anything else (missing, running, failed, a half-moved directory) is run again. A
run's directory appears by a rename from ``runs/<id>.partial``, so a sweep killed at
any instant leaves either the whole record or none.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

from diagnose import runrecord
from diagnose.ablation.spec import RunTask, Spec

__all__ = ["run_sweep", "MANIFEST", "DONE_STATUSES", "summarize"]

MANIFEST = "manifest.json"
DONE_STATUSES = ("completed", "diverged")


def _run_status(run_dir: Path) -> str | None:
    try:
        return runrecord.read_summary(run_dir).get("status")
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


def _write_run(out: Path, result: dict) -> None:
    """Writes a worker's returned files as runs/<id>, atomically by directory rename."""
    runs = out / "runs"
    final, partial = runs / result["run_id"], runs / f"{result['run_id']}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for rel, data in result["files"].items():
        path = partial / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if not result["files"]:  # failed before a record existed: write a minimal one
        partial.mkdir(parents=True, exist_ok=True)
        runrecord.write_summary(partial, {"status": "failed", "error": result.get("error")})
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)


def _entry(task: RunTask, status: str, wall: float | None = None, error: str | None = None) -> dict:
    return {"id": task.run_id, "variant": task.variant.name, "base": task.variant.base,
            "factor": task.variant.factor, "level": task.variant.level,
            "switches": [list(sw) for sw in task.variant.switches], "level_of": list(task.variant.level_of),
            "seed": task.seed, "status": status,
            "wall_time_s": wall, "error": error}


def run_sweep(spec: Spec, out_dir: str | Path, executor, *, progress: Callable[[dict], None] | None = None) -> dict:
    """Runs (or resumes) a study and returns the manifest as written.

    Args:
        spec: a validated spec.
        out_dir: ABLATION_DIR; created, or resumed when it holds a manifest.
        executor: a LocalExecutor or RayExecutor.
        progress: called after each finished run with ``{"done", "total", "entry"}``.
    """
    from diagnose.data.load import load_corpus

    t_start = time.perf_counter()
    out = Path(out_dir)
    memory = max(m.memory_size for _, m in spec.variants())
    corpus = load_corpus(spec.data, memory_size=memory)  # bad corpus: an error before anything runs
    tasks = spec.tasks(corpus.vocab_size)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / ".scratch", ignore_errors=True)
    for stale in (out / "runs").glob("*.partial"):
        shutil.rmtree(stale, ignore_errors=True)

    entries = {}
    for task in tasks:
        status = _run_status(out / "runs" / task.run_id)
        if status in DONE_STATUSES:
            summary = runrecord.read_summary(out / "runs" / task.run_id)
            entries[task.run_id] = _entry(task, status, summary.get("wall_time_s"), summary.get("error"))
        else:
            entries[task.run_id] = _entry(task, "pending")
    resumed = sum(e["status"] in DONE_STATUSES for e in entries.values())
    manifest = {"schema": 1, "study": spec.name, "spec": spec.raw, "corpus": corpus.stats | {"name": corpus.name},
                "runs": list(entries.values()), "totals": {}, "timings": {"resumed_runs": resumed}}
    _write_manifest(out, manifest, entries)
    pending = [t for t in tasks if entries[t.run_id]["status"] == "pending"]
    scratch = out / ".scratch"
    scratch.mkdir(exist_ok=True)
    by_id = {t.run_id: t for t in tasks}
    done = len(tasks) - len(pending)
    t_first = None
    payload = [{"run_id": t.run_id, "config": t.config.to_dict(), "scratch": str(scratch)} for t in pending]
    for result in executor.run(payload):
        t_first = t_first or time.perf_counter()
        _write_run(out, result)
        task = by_id[result["run_id"]]
        entries[task.run_id] = _entry(task, result["status"], result["wall_time_s"], result["error"])
        done += 1
        _write_manifest(out, manifest, entries)
        if progress is not None:
            progress({"done": done, "total": len(tasks), "entry": entries[task.run_id]})
    shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - t_start
    run_times = [e["wall_time_s"] for e in entries.values() if e["wall_time_s"] is not None]
    manifest["timings"].update({"wall_time_s": wall, "runs_time_s": sum(run_times),
                                "mean_run_time_s": statistics.fmean(run_times) if run_times else None,
                                "startup_s": (t_first - t_start) if t_first else None})
    _write_manifest(out, manifest, entries)
    return manifest


def _write_manifest(out: Path, manifest: dict, entries: dict) -> None:
    manifest["runs"] = list(entries.values())
    counts = {s: 0 for s in ("completed", "diverged", "failed", "pending")}
    for e in entries.values():
        counts[e["status"] if e["status"] in counts else "failed"] += 1
    manifest["totals"] = {"runs": len(entries), **counts}
    runrecord.write_json(out / MANIFEST, manifest)


def summarize(out_dir: str | Path) -> list[dict]:
    """One row per variant: runs by status and the final validation loss over seeds."""
    out = Path(out_dir)
    manifest = runrecord.read_json(out / MANIFEST)
    rows: dict[str, dict] = {}
    for e in manifest["runs"]:
        row = rows.setdefault(e["variant"], {"variant": e["variant"], "completed": 0, "diverged": 0, "failed": 0,
                                             "pending": 0, "losses": []})
        row[e["status"] if e["status"] in row else "failed"] += 1
        if e["status"] == "completed":
            final = runrecord.read_summary(out / "runs" / e["id"])["final"].get("valid_loss")
            if final is not None:
                row["losses"].append(final)
    for row in rows.values():
        losses = row.pop("losses")
        row["valid_loss_mean"] = statistics.fmean(losses) if losses else math.nan
        row["valid_loss_sd"] = statistics.stdev(losses) if len(losses) > 1 else math.nan
    return list(rows.values())

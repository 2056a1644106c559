"""Executors: where the runs of a sweep train. Workers return results; only the driver writes.

A worker trains one run into a private scratch directory, reads the run record back
as bytes and returns it; the driver writes it into the ablation directory. This is
the same locally (a process pool) and on Ray (a task per run, possibly on another
machine whose disk the driver never sees).

A task names its ``kind``, the training path its worker dispatches to
(:data:`TRAINERS`): ``memn2n`` (the built-in model, :func:`diagnose.train.train`)
or ``keras`` (a study of the user's own Keras model,
:func:`diagnose.userstudy.worker.train_task`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator

from diagnose.errors import DiagnoseError

__all__ = ["run_one", "LocalExecutor", "InlineExecutor", "RayExecutor", "make_executor", "threads_per_job",
           "TRAINERS"]

_CORPORA: dict = {}  # one corpus per data config per worker process

# Task kind -> "module:function" that trains one task's config into a run directory and
# returns (status, error). Imported in the worker, so a kind costs nothing until used.
TRAINERS = {"memn2n": "diagnose.ablation.executors:train_memn2n",
            "keras": "diagnose.userstudy.worker:train_task"}


def threads_per_job(jobs: int) -> int:
    """TF intra-op threads for each of ``jobs`` concurrent runs: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _set_threads_before_import(threads: int) -> None:
    """Worker start-up: import TF once and give it this job's share of the cores.

    A worker's stderr goes to /dev/null: TF's C++ start-up notices would otherwise
    interleave with the driver's progress bar, and every outcome of a run, errors
    included, comes back to the driver as its result.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    _exit_with_parent()
    from diagnose._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    _set_threads(tf, threads)


def _exit_with_parent() -> None:
    """Ends this worker when the driver dies (say, killed with SIGKILL): an orphan would
    otherwise wait forever on its task queue, or finish a run nobody will record."""
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _set_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # the runtime already started in this process


def run_one(task: dict) -> dict:
    """Trains one run in a scratch directory and returns its record as bytes.

    Args:
        task: ``{"run_id", "kind", "config", "scratch": dir or None}``: ``config`` is what the
            kind's trainer takes (``RunConfig.to_dict()`` for ``memn2n``); no kind is ``memn2n``.

    Returns:
        ``{"run_id", "status", "error", "wall_time_s", "files": {relpath: bytes}}``;
        never raises (a crash is status ``failed`` with a one-line error).
    """
    import importlib

    from diagnose import runrecord

    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"{task['run_id']}-", dir=task.get("scratch")))
    status, error = "failed", None
    try:
        module, _, name = TRAINERS[task.get("kind", "memn2n")].partition(":")
        trainer = getattr(importlib.import_module(module), name)
        try:
            status, error = trainer(task["config"], scratch / "run")
        except Exception as exc:  # recorded in the run's summary by the trainer; keep the one line
            status, error = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        files = {}
        run_dir = scratch / "run"
        if run_dir.is_dir():
            for path in run_dir.rglob("*"):
                if path.is_file():
                    files[str(path.relative_to(run_dir))] = path.read_bytes()
        if runrecord.SUMMARY not in files:  # failed before train() wrote anything
            files = {}
        return {"run_id": task["run_id"], "status": status, "error": error,
                "wall_time_s": time.perf_counter() - t0, "files": files}
    except Exception as exc:  # noqa: BLE001 - a worker must always answer
        return {"run_id": task["run_id"], "status": "failed",
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "wall_time_s": time.perf_counter() - t0,
                "files": {}, "traceback": traceback.format_exc(limit=5)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_memn2n(config: dict, run_dir: Path) -> tuple[str, str | None]:
    """Trains one built-in MemN2N run (``RunConfig.to_dict()``) into ``run_dir``; returns (status, error)."""
    from diagnose.config import RunConfig
    from diagnose.data.load import load_corpus
    from diagnose.train import train

    config = RunConfig.from_dict(config)
    key = repr(config.data) + str(config.model.memory_size)
    if key not in _CORPORA:
        _CORPORA[key] = load_corpus(config.data, memory_size=config.model.memory_size)
    result = train(config, run_dir, corpus=_CORPORA[key])
    return result.summary["status"], result.summary.get("error")


class InlineExecutor:
    """Runs tasks one after another in this process.

    For runs whose builder exists only here (a function defined in a notebook or a
    script's ``__main__``, which a spawned worker cannot import), and for tests.
    """

    jobs = 1

    def run(self, tasks: Iterable[dict]) -> Iterator[dict]:
        for task in tasks:
            yield run_one(task)


class LocalExecutor:
    """Runs tasks in ``jobs`` spawned processes on this machine, each with its share of the cores."""

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise DiagnoseError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def run(self, tasks: Iterable[dict]) -> Iterator[dict]:
        tasks = list(tasks)
        if not tasks:
            return
        # spawn, not fork: TensorFlow is not fork-safe once its runtime has started.
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)), mp_context=get_context("spawn"),
                                 initializer=_set_threads_before_import,
                                 initargs=(threads_per_job(self.jobs),)) as pool:
            pending = {pool.submit(run_one, t) for t in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()


class RayExecutor:
    """Runs each task as a Ray task on the cluster at ``address`` (a local Ray when None)."""

    def __init__(self, address: str | None = None, jobs: int | None = None):
        try:
            import ray
        except ImportError:
            raise DiagnoseError("the ray executor needs Ray: pip install 'diagnose[ray]' "
                                "(or use --executor local)") from None
        self.ray = ray
        self.address, self.jobs = address, jobs

    def run(self, tasks: Iterable[dict]) -> Iterator[dict]:
        ray = self.ray
        tasks = list(tasks)
        if not tasks:
            return
        started = False
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.jobs or os.cpu_count()}
            ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kwargs)
            started = True
        try:
            threads = threads_per_job(self.jobs or 1)
            remote = ray.remote(num_cpus=1)(_ray_run_one)
            pending = [remote.remote({**t, "scratch": None}, threads) for t in tasks]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            if started:
                ray.shutdown()


def _ray_run_one(task: dict, threads: int) -> dict:
    _set_threads_before_import(threads)
    return run_one(task)


def make_executor(name: str, jobs: int = 1, ray_address: str | None = None):
    """The executor called ``name``: "local", "inline" (this process) or "ray"."""
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise DiagnoseError(f"--jobs must be a positive integer, got {jobs!r}")
    if name == "local":
        return LocalExecutor(jobs)
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        return RayExecutor(ray_address, jobs)
    raise DiagnoseError(f"unknown executor {name!r}; choose local, inline or ray")

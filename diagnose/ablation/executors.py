"""Executors: where the runs of a sweep train. Workers return results; only the driver writes.

A worker trains one run into a private scratch directory, reads the run record back
as bytes and returns it; the driver writes it into the ablation directory. This is
the same locally (a process pool) and on Ray (a task per job, possibly on another
machine whose disk the driver never sees).

A task carries its study's trainer (:class:`~diagnose.ablation.trainer.Trainer`), which
the worker calls: the built-in model's (:class:`diagnose.memn2n.jobs.MemN2NTrainer`) or a
study of the user's own Keras model's (:class:`diagnose.userstudy.spec.KerasTrainer`).
It travels to a spawned process or a Ray node pickled, by reference to its class.

Tasks that name the same ``group`` (runs that can share compiled steps, see
:mod:`diagnose.memn2n.jobs`) go to a worker together as one job
(:func:`batch_jobs`). A :class:`LocalExecutor` used as a context manager keeps its
workers, TensorFlow loaded and steps traced, from one sweep of a study to the next
(the rounds of added seeds and follow-ups).
"""

from __future__ import annotations

import math
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
from diagnose.parallel import exit_with_parent

__all__ = ["run_one", "run_job", "batch_jobs", "LocalExecutor", "InlineExecutor", "RayExecutor", "make_executor",
           "threads_per_job"]

# A job holds at most this share of a round's runs per worker (rounded up): big
# enough that a group of seeds shares one trace, small enough that the workers
# finish together (a round of 99 runs on 2 workers: jobs of up to 25 runs).
_JOBS_PER_WORKER = 2

def threads_per_job(jobs: int) -> int:
    """TF intra-op threads for each of ``jobs`` concurrent runs: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _set_threads_before_import(threads: int, parent: int | None = None) -> None:
    """Worker start-up: import TF once and give it this job's share of the cores.

    The share must be set before TensorFlow's runtime starts, which refuses it after
    (a worker that set it late ran on every core, each run 1.4x slower with the other
    worker on the same cores). A small model's step runs fastest on one thread anyway.

    A worker's stderr goes to /dev/null: TF's C++ start-up notices would otherwise
    interleave with the driver's progress bar, and every outcome of a run, errors
    included, comes back to the driver as its result. A worker ends with the driver
    (``parent``, its pid as the driver passed it; see :func:`~diagnose.parallel.exit_with_parent`).
    """
    exit_with_parent(parent)  # first: the driver may be gone already (killed while this worker started)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly(threads)


def run_one(task: dict) -> dict:
    """Trains one run in a scratch directory and returns its record as bytes.

    Args:
        task: ``{"run_id", "trainer", "config", "scratch": dir or None}``: ``config`` is what the
            trainer's ``run`` takes (the run's ``config.to_dict()``); optionally ``"group"`` (see
            :func:`batch_jobs`) and ``"reuse": False`` (trace this run's steps afresh).

    Returns:
        ``{"run_id", "status", "error", "wall_time_s", "files": {relpath: bytes}}``;
        never raises (a crash is status ``failed`` with a one-line error).
    """
    from diagnose import runrecord

    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"{task['run_id']}-", dir=task.get("scratch")))
    status, error = "failed", None
    try:
        try:
            summary = task["trainer"].run(task["config"], scratch / "run", reuse=task.get("reuse", True))
            status, error = summary["status"], summary.get("error")
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


def run_job(tasks: list[dict]) -> list[dict]:
    """Runs a job's tasks one after another in this process (see :func:`run_one`)."""
    return [run_one(task) for task in tasks]


def batch_jobs(tasks: list[dict], workers: int) -> list[list[dict]]:
    """Tasks batched into jobs by their ``group`` (a task without one is a job alone), longest first.

    A group larger than a worker's share of the round (:data:`_JOBS_PER_WORKER`) is
    cut into equal jobs, so one big group does not leave the other workers idle;
    longest first, so the short jobs fill in at the end.
    """
    groups: dict[str, list[dict]] = {}
    for task in tasks:
        groups.setdefault(task.get("group") or task["run_id"], []).append(task)
    # One worker runs everything anyway: cutting a group would only trace it again.
    cap = len(tasks) if workers <= 1 else max(1, math.ceil(len(tasks) / (_JOBS_PER_WORKER * workers)))
    jobs = []
    for members in groups.values():
        size = math.ceil(len(members) / math.ceil(len(members) / cap))
        jobs += [members[i:i + size] for i in range(0, len(members), size)]
    return sorted(jobs, key=len, reverse=True)  # stable: ties keep the study's order


class InlineExecutor:
    """Runs tasks one after another in this process.

    For runs whose builder exists only here (a function defined in a notebook or a
    script's ``__main__``, which a spawned worker cannot import), and for tests.
    """

    jobs = 1

    def __enter__(self) -> "InlineExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, tasks: Iterable[dict]) -> Iterator[dict]:
        for task in tasks:
            yield run_one(task)


class LocalExecutor:
    """Runs tasks in ``jobs`` spawned processes on this machine, each with its share of the cores.

    As a context manager it keeps its processes until the block ends; otherwise each
    :meth:`run` starts and stops its own.
    """

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise DiagnoseError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool = None
        self._workers = 0
        self._entered = False

    def __enter__(self) -> "LocalExecutor":
        self._entered = True
        return self

    def __exit__(self, *exc) -> None:
        self._entered = False
        self.close()

    def close(self) -> None:
        """Stops the worker processes (a later :meth:`run` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, tasks: Iterable[dict]) -> Iterator[dict]:
        tasks = list(tasks)
        if not tasks:
            return
        # Never more workers than runs (each is a TensorFlow in memory); a later round with
        # more runs than the pool has workers starts a larger pool.
        workers = min(self.jobs, len(tasks))
        if self._pool is not None and self._workers < workers:
            self.close()
        if self._pool is None:
            # spawn, not fork: TensorFlow is not fork-safe once its runtime has started.
            self._workers = workers
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                             initializer=_set_threads_before_import,
                                             initargs=(threads_per_job(self.jobs), os.getpid()))
        try:
            pending = {self._pool.submit(run_job, job) for job in batch_jobs(tasks, self.jobs)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield from fut.result()
        finally:
            if not self._entered:
                self.close()


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

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass  # each run() starts and stops its own Ray (or uses the cluster's)

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
            # the workers' Keras on this process's backend (a cluster's workers do not share its environment)
            remote = ray.remote(num_cpus=1, runtime_env={"env_vars": {"KERAS_BACKEND": _keras_backend()}})(
                _ray_run_job)
            workers = self.jobs or int(ray.cluster_resources().get("CPU", 1))
            pending = [remote.remote([{**t, "scratch": None} for t in job], threads)
                       for job in batch_jobs(tasks, workers)]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield from ray.get(ref)
        finally:
            if started:
                ray.shutdown()


def _keras_backend() -> str:
    """The Keras backend this process runs on (KERAS_BACKEND, else Keras' config file, else TensorFlow)."""
    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    return keras.backend.backend()


def _ray_run_job(tasks: list[dict], threads: int) -> list[dict]:
    _set_threads_before_import(threads)
    return run_job(tasks)


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

"""A map over forked processes, for the report's many independent pieces (runs to check, figures to draw).

Only an index crosses to a child: the function and the items stay where the fork
left them, so neither has to pickle (a lambda, a closure, a run's record in
memory all work); only results come back. Where fork is missing, or another
thread could be caught holding a lock the children need, or one core is all
there is, it is a plain loop with the same results.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["fork_map", "cores", "exit_with_parent"]

_JOB: tuple[Callable, Sequence] | None = None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def exit_with_parent(parent: int | None = None, every: float = 0.5) -> None:
    """Ends this process when its parent is gone, however the parent ended (SIGKILL included).

    A thread polls the parent's pid: an orphan would otherwise wait forever on its
    pool's queue, or finish work nobody will read. Call it first thing in a child.

    Args:
        parent: the parent's pid, as the parent passed it (a child that reads it
            itself reads init's where the parent died before that line ran).
        every: seconds between looks.
    """
    parent = os.getppid() if parent is None else parent

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def fork_map(fn: Callable, items: Sequence, min_per_worker: int = 1) -> list:
    """``[fn(x) for x in items]``, by up to :func:`cores` forked processes.

    Args:
        min_per_worker: items a process must have for it to be worth starting
            (a pool costs a few hundred milliseconds).

    Raises:
        Whatever ``fn`` raises, from the first item that raised.
    """
    global _JOB
    workers = min(cores(), len(items) // max(1, min_per_worker))
    if workers < 2 or not _can_fork():
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork, not spawn: spawn re-runs the caller's script, which a script without a main guard cannot survive.
    _JOB = (fn, items)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            return list(pool.map(_one, range(len(items))))
    finally:
        _JOB = None


def _one(i: int):
    fn, items = _JOB
    return fn(items[i])


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1

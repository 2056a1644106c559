"""fork_map: the same results as a loop, in order, whatever the number of processes."""

import os
import time

import pytest

from diagnose import parallel


@pytest.mark.parametrize("cores", [1, 2])
def test_results_come_back_in_order_from_a_closure(monkeypatch, cores):
    monkeypatch.setattr(parallel, "cores", lambda: cores)
    offset = 10  # a closure: it never has to pickle

    def work(x):
        time.sleep(0.05)  # long enough that both workers take items
        return x + offset, os.getpid()

    got = parallel.fork_map(work, list(range(6)))
    assert [x for x, _ in got] == list(range(10, 16))
    assert (len({pid for _, pid in got}) > 1) == (cores > 1 and parallel._can_fork())


def test_an_error_in_a_child_is_raised_here(monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 2)

    def fail(x):
        if x == 3:
            raise ValueError("item 3")
        return x

    with pytest.raises(ValueError, match="item 3"):
        parallel.fork_map(fail, list(range(6)))


def test_too_few_items_a_worker_stay_in_this_process(monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    assert {pid for pid in parallel.fork_map(lambda _: os.getpid(), [0, 1, 2], min_per_worker=2)} == {os.getpid()}

"""Every process a command starts ends with it, SIGKILL included (issue 31): the sweep's workers and the
report's forked figure processes watch their parent. No test trains: the sweep is killed while its
workers start, the figure processes while they wait."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_reliability import TINY, _toml

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``: pid -> start time (to tell a reused pid apart)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and fields[1] == str(pid):
            found[int(entry)] = fields[19]
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """Those still running (a zombie waiting for a reaper has ended)."""
    return [pid for pid, start in processes.items()
            if (fields := _stat(pid)) is not None and fields[19] == start and fields[0] != "Z"]


def _kill_once_children_start(command: list[str], cwd: Path, count: int, env=None) -> dict[int, str]:
    """Starts ``command``, SIGKILLs it once it has ``count`` children, and returns the children it had."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            children.update(_children(proc.pid))
            if len(children) >= count:
                break
            time.sleep(0.05)
        assert len(children) >= count, f"{command[2:4]} started {len(children)} children, expected {count}"
        children.update(_children(proc.pid))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return children


def _gone_within(children: dict[int, str], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(children)
    for pid in left:  # leave nothing behind the test itself
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.slow
def test_sigkill_of_run_ablation_leaves_no_worker_behind(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml({**TINY, "study": {**TINY["study"], "seeds": 4}}))
    command = [sys.executable, "-m", "diagnose.cli", "run-ablation", str(spec), "--out", str(tmp_path / "abl"),
               "--jobs", "2", "--quiet", "--no-report", "--no-follow-up"]
    children = _kill_once_children_start(command, tmp_path, count=3)  # two workers and the resource tracker
    assert _gone_within(children, 10) == []


def test_sigkill_of_a_report_leaves_no_figure_process_behind(tmp_path):
    script = ("import time\nfrom diagnose import parallel\nparallel.cores = lambda: 2\n"
              "parallel.fork_map(lambda x: time.sleep(600), [1, 2])\n")
    command = [sys.executable, "-c", script]
    children = _kill_once_children_start(command, tmp_path, count=2)
    assert _gone_within(children, 10) == []


def test_sigkill_of_report_on_a_run_leaves_nothing_behind(tmp_path):
    """The command itself: its figure processes, killed while they draw (slowed down by a patched drawer)."""
    from test_reliability import _whole_run

    run = _whole_run(tmp_path / "run")
    script = ("import sys, time\nfrom diagnose import parallel\nfrom diagnose.reports import figures_run\n"
              "parallel.cores = lambda: 2\n"
              "figures_run.family_side_by_side = lambda *a: time.sleep(600)\n"
              "from diagnose.cli import main\nmain(sys.argv[1:])\n")
    command = [sys.executable, "-c", script, "report", str(run), "--out", str(tmp_path / "report")]
    children = _kill_once_children_start(command, tmp_path, count=2)
    assert _gone_within(children, 10) == []
    assert not (tmp_path / "report").exists()
    assert json.loads((run / "config.json").read_text())


def test_a_killed_report_leaves_its_temporary_directory_to_the_next_report(tmp_path, capsys):
    """The directory a report builds aside outlives a SIGKILL; the next report removes it (nobody holds it)."""
    from test_reliability import _cli, _whole_run

    run = _whole_run(tmp_path / "run")
    script = ("import sys, time\nfrom diagnose import parallel\nfrom diagnose.reports import figures_run\n"
              "parallel.cores = lambda: 2\n"
              "figures_run.family_side_by_side = lambda *a: time.sleep(600)\n"
              "from diagnose.cli import main\nmain(sys.argv[1:])\n")
    command = [sys.executable, "-c", script, "report", str(run), "--out", str(tmp_path / "report")]
    assert _gone_within(_kill_once_children_start(command, tmp_path, count=2), 10) == []
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.")]
    assert len(left) == 1, left  # what the killed report was building
    code, _, err = _cli(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "run"]
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_directory_being_built_is_not_removed_by_another_report(tmp_path):
    from diagnose.files import held_temp_dir

    with held_temp_dir(tmp_path, ".report.") as first:
        (first / "figure.png").write_bytes(b"drawn")
        with held_temp_dir(tmp_path, ".report.") as second:
            assert first.is_dir() and second.is_dir() and first != second
            assert (first / "figure.png").read_bytes() == b"drawn"
        assert not second.exists()
    assert list(tmp_path.iterdir()) == []

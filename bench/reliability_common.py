"""What the reliability bench's scenarios share: the command line in a new process, the ledger of faults
and losses, a snapshot of every file to hash before and after, a read-only place, the processes under one.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  (the checkout first on the import path, for the commands too)
from diagnose import runrecord, studydir  # noqa: E402


# A tiny study (8 runs of 60 steps) and a tiny run: faults, not figures, are measured.
SPEC = """
[study]
name = "faults"
bases = ["as-posted", "paper"]
seeds = 2

[budget]
steps = 60

[corpus]
synthetic = "topic-copy-small"

[sizes]
memory_size = 6
embed_dim = 8
hops = 2
batch_size = 16

[train]
log_every = 10
eval_every = 30
probe_every = 30
eval_max_windows = 512
eval_at_start = false
tensorboard = false
jit_compile = false

[factors]
output = []
"""
TRAIN = ["--synthetic", "topic-copy-small", "--steps", "400", "--log-every", "20", "--eval-every", "200",
         "--set", "memory_size=8", "--set", "embed_dim=16", "--set", "hops=2", "--set", "batch_size=32", "--no-jit",
         "--quiet"]


def cli(*args, wait=True, timeout=900, cwd=None):
    """`diagnose ARGS` in a new process: (exit status, stdout, stderr), or the process when not waiting."""
    cmd = [sys.executable, "-m", "diagnose.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def cli_read_only(read_only: Path, *args, timeout=300):
    """`diagnose ARGS` with directory ``read_only`` read-only: by its mode, or (root writes through modes)
    as a read-only bind mount in a mount namespace of the command's own. None where neither can be done."""
    command = [sys.executable, "-m", "diagnose.cli", *map(str, args)]
    if os.geteuid() != 0:
        mode = read_only.stat().st_mode
        read_only.chmod(0o555)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        finally:
            read_only.chmod(mode)
        return proc.returncode, proc.stdout, proc.stderr
    if shutil.which("unshare") is None:
        return None
    place = shlex.quote(str(read_only))
    script = (f"mount --bind {place} {place} && mount -o remount,bind,ro {place} || exit 97\n"
              f"exec {shlex.join(command)}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 97 or "unshare failed" in proc.stderr:
        return None
    return proc.returncode, proc.stdout, proc.stderr


def wait_for(condition, proc=None, timeout=300.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(2.0)  # its workers notice the driver is gone within a second


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones included, links not followed): path -> its bytes' hash, 'dir'
    or where a link points."""
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = f"link to {os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """(entries changed or gone: data lost, entries new: written)."""
    lost = [f"{p} {'changed' if p in after else 'gone'}" for p, h in before.items() if after.get(p) != h]
    return lost, sorted(set(after) - set(before))


def one_line_error(code: int, err: str, *needles: str) -> str | None:
    """What is wrong with a refusal: not exit 2, not one line starting 'error: ', a traceback, a word missing."""
    lines = err.strip().splitlines()
    if code != 2:
        return f"exit {code}"
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in err:
        return f"{len(lines)} lines"
    missing = [n for n in needles if n not in lines[0]]
    return f"does not say {missing}" if missing else None


class Ledger:
    """Faults survived, and data lost, as the scenarios find them."""

    def __init__(self, root: Path | None = None):
        self.faults, self.lost, self.root = [], [], root

    def fault(self, name: str, survived: bool, detail: str = "") -> None:
        self.faults.append({"fault": name, "survived": bool(survived), "detail": detail})
        print(f"{'survived' if survived else 'FAILED  '}  {name}{': ' + detail if detail else ''}", flush=True)

    def compare(self, before: dict[str, bytes], after: dict[str, bytes], what: str) -> None:
        for rid, data in before.items():
            if after.get(rid) != data:
                self.lost.append(f"{what}: run {rid} {'changed' if rid in after else 'gone'}")

    def refused(self, name: str, args, *needles: str, cwd=None, read_only: Path | None = None) -> None:
        """Runs ``diagnose ARGS`` and checks it is refused as promised: exit 2, one line (with ``needles``),
        nothing under the bench's root written or changed; ``read_only``: with that directory read-only."""
        before = snapshot(self.root)
        if read_only is None:
            code, _, err = cli(*args, cwd=cwd)
        elif (done := cli_read_only(read_only, *args)) is None:
            self.fault(name, False, "not exercised: cannot make a directory read-only here")
            return
        else:
            code, _, err = done
        self.outcome(name, before, one_line_error(code, err, *needles), err)

    def outcome(self, name: str, before: dict[str, str], wrong: str | None, err: str, done: str = "") -> None:
        """Records a refusal: survived when nothing is ``wrong`` with it and nothing under the root changed
        since ``before``; ``done`` says how, else the refusal's line."""
        lost, written = changes(before, snapshot(self.root))
        self.lost += [f"{name}: {x}" for x in lost]
        problems = [p for p in (wrong, lost and f"lost {lost[:3]}", written and f"wrote {written[:3]}") if p]
        said = err.strip().splitlines()[-1] if err.strip() else "(nothing)"
        self.fault(name, not problems, (done or f"exit 2, nothing written: {said[:150]}") if not problems
                   else f"{'; '.join(problems)}: {err.strip()[-300:]}")


# -- the processes under one -------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` now (children, theirs...): pid -> start time (to tell a reused pid apart)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            parents[int(entry)] = (int(fields[1]), fields[19])
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in parents.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    """Those still running (a zombie waiting for a reaper has ended)."""
    return [pid for pid, start in processes.items()
            if (fields := _stat(pid)) is not None and fields[19] == start and fields[0] != "Z"]


def gone_within(processes: dict[int, str], seconds: float) -> tuple[list[int], float]:
    """(those alive after ``seconds``, killed then so the bench leaves nothing behind; seconds the rest took)."""
    t0 = time.monotonic()
    while alive(processes) and time.monotonic() - t0 < seconds:
        time.sleep(0.1)
    left = alive(processes)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left, time.monotonic() - t0


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- studies ------------------------------------------------------------------------------------------

def finished_runs(study: Path) -> dict[str, bytes]:
    """run id -> metrics.csv bytes of every whole, ended run in the study."""
    runs = study / studydir.RUNS
    out = {}
    for path in sorted(runs.iterdir()) if runs.is_dir() else []:
        if path.is_dir() and not path.name.endswith(studydir.PARTIAL) and not runrecord.record_problems(path):
            if runrecord.read_summary(path).get("status") in ("completed", "diverged"):
                out[path.name] = (path / runrecord.METRICS).read_bytes()
    return out


def study_whole(study: Path) -> list[str]:
    """What is wrong with a finished study: runs not whole, not finished, leftovers."""
    wrong = []
    manifest = studydir.read_manifest(study)
    for entry in manifest["runs"]:
        path = studydir.run_path(study, entry["id"])
        problems = runrecord.record_problems(path) if path.is_dir() else ["missing"]
        if problems or entry["status"] not in ("completed", "diverged"):
            wrong.append(f"{entry['id']}: {entry['status']} {problems}")
    leftovers = [p.name for p in (study / studydir.RUNS).iterdir() if p.name not in {e["id"] for e in manifest["runs"]}]
    if leftovers or (study / studydir.SCRATCH).exists():
        wrong.append(f"leftovers: {leftovers}")
    return wrong

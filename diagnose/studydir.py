"""The study directory (ABLATION_DIR): the on-disk contract of an ablation study.

This module is the one place its layout and names are defined; the sweep, the
verdict, ``check``, ``report`` and the benchmarks read and write it through here.
Each run inside is a run record (:mod:`diagnose.runrecord`). A study directory holds:

``manifest.json``
    The spec (every default filled in) and its digest, the corpus's statistics,
    every run (``id``, ``variant``, ``base``, ``factor``, ``level``, ``switches``,
    ``level_of``, ``seed``, ``status``, ``wall_time_s``, ``error``), totals by status
    and timings; after ``run-ablation``'s last round, ``sweeps`` (each sweep's runs and
    ``wall_s``) and ``follow_up_s`` (the rounds after the first sweep). A sweep rewrites it
    as runs finish (every run while the study is small, every 1% of its runs beyond 100,
    so a huge study's I/O stays linear) and once at the end. Run statuses on disk win over a manifest cut off by a kill.

``verdict.json``
    The verdict (:mod:`diagnose.findings.verdict`), written by ``run-ablation``: a function
    of the records (no wall-clock time in it), so the same records give the same bytes.

``runs/<run_id>/``
    One run record per run. A run id is the first 16 hex digits of a hash of the
    run's resolved config and seed, so the same spec finds its runs again.

``runs/<run_id>.partial/``
    A record being moved in. A record appears whole by a rename, so a sweep killed
    at any instant leaves each run complete or absent; leftovers are removed when
    the study resumes.

``.scratch/``
    Workers' scratch space (local executor); removed when the study resumes.

``.lock``
    The advisory lock (``fcntl.flock``) of the one command writing the study; it
    records the holder's pid, host and command line. The file stays when the lock
    is released (removing it would let two writers lock two different files).
    Readers (check, report) need no lock: every file appears by rename.

``report/``
    The HTML report (``diagnose report``).

A symbolic link at any of these places is refused before anything is written
(:func:`refuse_study_links`; the lock is opened with ``O_NOFOLLOW``): a write through
it would land outside the study.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
from pathlib import Path

from diagnose.errors import DiagnoseError, RecordError
from diagnose.files import atomic_write, clean_json, read_json, refuse_links, write_json

__all__ = ["MANIFEST", "VERDICT", "RUNS", "PARTIAL", "SCRATCH", "LOCK", "REPORT", "is_study_dir", "plain_name",
           "run_path", "read_manifest", "write_manifest", "read_verdict", "write_verdict", "run_entry",
           "refuse_study_links", "StudyLock"]

MANIFEST, VERDICT, RUNS, SCRATCH, LOCK, REPORT = "manifest.json", "verdict.json", "runs", ".scratch", ".lock", "report"
PARTIAL = ".partial"  # suffix of a run record being moved in

# A name that is one path component and nothing else: no separators, no '..'.
_PLAIN = re.compile(r"[A-Za-z0-9._-]+")


def plain_name(name) -> bool:
    """True for a non-empty name of letters, digits, '.', '_' and '-' that is not '.' or '..'."""
    return isinstance(name, str) and bool(_PLAIN.fullmatch(name)) and name not in (".", "..")


def is_study_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a study (its manifest.json)."""
    return (Path(path) / MANIFEST).is_file()


def run_path(study_dir: str | os.PathLike, run_id) -> Path:
    """``study_dir/runs/<run_id>``.

    Raises:
        RecordError: ``run_id`` is not a plain run id (say ``../../x`` or an absolute
            path from a damaged or hostile manifest); nothing outside the study is read.
    """
    if not plain_name(run_id) or run_id.startswith(".") or run_id.endswith(PARTIAL):
        raise RecordError(f"{Path(study_dir) / MANIFEST} lists a run id {run_id!r} that is not a plain run id; "
                          "the manifest is damaged: run the study again into a new --out")
    return Path(study_dir) / RUNS / run_id


def read_manifest(study_dir: str | os.PathLike) -> dict:
    """The manifest. Raises RecordError naming the file when it is missing or damaged."""
    manifest = read_json(Path(study_dir) / MANIFEST)
    if not isinstance(manifest.get("runs"), list):
        raise RecordError(f"{Path(study_dir) / MANIFEST} is damaged: it has no list of runs")
    return manifest


def write_manifest(study_dir: str | os.PathLike, manifest: dict) -> None:
    """Writes the manifest atomically: the head indented, then one line per run (a
    third of the indented size, and a run is one line to grep or diff)."""
    head = json.dumps(clean_json({k: v for k, v in manifest.items() if k != "runs"}), indent=2)
    runs = ",\n".join(json.dumps(clean_json(r)) for r in manifest.get("runs", []))
    atomic_write(Path(study_dir) / MANIFEST, f'{head[:-2]},\n  "runs": [\n{runs}\n]}}\n' if head != "{}"
                 else f'{{"runs": [\n{runs}\n]}}\n')


def read_verdict(study_dir: str | os.PathLike) -> dict | None:
    """The verdict written by run-ablation, or None when there is none yet."""
    path = Path(study_dir) / VERDICT
    return read_json(path) if path.is_file() else None


def write_verdict(study_dir: str | os.PathLike, verdict: dict) -> None:
    write_json(Path(study_dir) / VERDICT, verdict)


def run_entry(run_dir: str | os.PathLike) -> dict | None:
    """The manifest's entry for a run inside a study (``STUDY/runs/<id>``), or None.

    What names a run for a person (its variant and seed) lives in the study's
    manifest, not in the run record; a run outside a study, or one its study's
    manifest does not list or cannot be read, has no entry.
    """
    run_dir = Path(run_dir)
    study = run_dir.parent.parent
    if run_dir.parent.name != RUNS or not is_study_dir(study):
        return None
    try:
        runs = read_manifest(study)["runs"]
    except RecordError:
        return None
    return next((e for e in runs if isinstance(e, dict) and e.get("id") == run_dir.name), None)


# Locks this process holds: path -> [fd, depth]. flock conflicts between two open
# files even in one process, so a nested acquire (run_study -> run_sweep) counts up.
_HELD: dict[str, list] = {}


class StudyLock:
    """The study's advisory lock, held by the one command that writes it.

    ``with StudyLock(out): ...`` takes it without waiting; a study locked by another
    process raises DiagnoseError naming the holder (pid, host, command) and what to
    do. The lock dies with its process (even on SIGKILL), so there is nothing stale
    to clean. Re-entrant within a process. A directory the lock itself created is
    removed again when the command fails before writing anything else into it.
    """

    def __init__(self, study_dir: str | os.PathLike):
        self.study_dir = Path(study_dir)
        self.key = os.path.realpath(self.study_dir)

    def __enter__(self) -> "StudyLock":
        import fcntl

        if self.key in _HELD:
            _HELD[self.key][1] += 1
            return self
        self.created = not self.study_dir.exists()
        self.study_dir.mkdir(parents=True, exist_ok=True)
        try:  # never through a link: truncating it would empty a file elsewhere
            fd = os.open(self.study_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            refuse_links(self.study_dir, (LOCK,))  # one line naming the link
            raise DiagnoseError(f"cannot open the study's lock {self.study_dir / LOCK} ({exc.strerror or exc}); "
                                "give another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DiagnoseError(f"{self.study_dir} is being written by another command ({self.holder()}); "
                                "wait for it to finish, or give this one another --out") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": _command()}).encode("utf-8") + b"\n")
        _HELD[self.key] = [fd, 1]
        return self

    def __exit__(self, exc_type, *exc) -> None:
        import fcntl

        held = _HELD[self.key]
        held[1] -= 1
        if held[1]:
            return
        del _HELD[self.key]
        try:
            os.ftruncate(held[0], 0)  # no holder to name once released
        finally:
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])
        if exc_type is not None and getattr(self, "created", False) and os.listdir(self.study_dir) == [LOCK]:
            (self.study_dir / LOCK).unlink(missing_ok=True)  # bad input leaves nothing on disk
            self.study_dir.rmdir()

    def holder(self) -> str:
        """'pid N on HOST: COMMAND' from the lock file, as well as it can be read."""
        try:
            info = json.loads((self.study_dir / LOCK).read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}: {info['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not yet written its name"


# The places in a study that a command writes (the lock is opened without following a link).
_WRITTEN = (LOCK, SCRATCH, RUNS, MANIFEST, VERDICT, REPORT)
_DIRECTORIES = (SCRATCH, RUNS, REPORT)


def refuse_study_links(study_dir: str | os.PathLike) -> None:
    """Refuses, in one line, a study holding a symbolic link where a command writes (its own files and
    directories, and the entries of ``runs/``: records, and records being moved in), or a file where a
    directory of its own goes, or a directory where a file goes (it would fail half way, after writing)."""
    study_dir = Path(study_dir)
    refuse_links(study_dir, _WRITTEN)
    for name in _WRITTEN:
        place, directory = study_dir / name, name in _DIRECTORIES
        if place.exists() and place.is_dir() != directory:
            raise DiagnoseError(f"{place} is {'a file' if directory else 'a directory'}, where diagnose keeps the "
                                f"study's {name} {'directory' if directory else 'file'}: move it away, or give "
                                "another --out")
    if (study_dir / RUNS).is_dir():
        refuse_links(study_dir / RUNS, sorted(os.listdir(study_dir / RUNS)))


def _command() -> str:
    """This process's command line as the user typed it ('diagnose run-ablation ...')."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py", "diagnose"):
        program = "diagnose"
    return shlex.join([program, *sys.argv[1:]])

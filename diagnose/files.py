"""Writing files so that a reader never sees half of one and a crash never destroys the last good one.

Every file of a run record or a study is written to a temporary name beside its
target and renamed over it; a directory that must appear whole (a run record, a
checkpoint) is built under a temporary name and renamed into place. Files and
directories get the modes the user's umask gives, as ``open`` and ``mkdir`` would,
not the private 0600/0700 of :mod:`tempfile`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diagnose.errors import DiagnoseError, RecordError

__all__ = ["atomic_write", "atomic_write_all", "json_text", "write_json", "clean_json",
           "read_json", "make_temp_dir", "held_temp_dir", "replace_dir", "check_writable",
           "umask"]


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:  # Linux 4.7+: no window in which another thread sees a changed umask
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file (synced to disk) and a rename."""
    atomic_write_all([(path, text)])


def atomic_write_all(files: list[tuple[str | os.PathLike, str]]) -> None:
    """Writes several files as :func:`atomic_write` does, synced to disk side by side, then renamed in order.

    Each file is written aside and synced to disk before any is renamed, and they are
    renamed in the order given: a reader that sees one sees the ones before it whole,
    and a crash leaves each the old file or the new. Synced side by side (a thread
    each), the files wait for the disk about once rather than once each: a sync waits
    for every other process's pending writes as well, ~1 ms on a quiet disk and up to
    tens while other programs write.
    """
    temps, handles = [], []
    try:
        for path, text in files:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(tmp)
            os.fchmod(fd, 0o666 & ~umask())  # mkstemp's 0600 would hide the record from the user's group
            handles.append(fh := os.fdopen(fd, "w", encoding="utf-8", newline=""))
            fh.write(text)
            fh.flush()
        _sync(handles)
        for fh in handles:
            fh.close()
        for (path, _), tmp in zip(files, list(temps)):
            os.replace(tmp, path)
            temps.remove(tmp)
    except BaseException:
        for fh in handles:
            fh.close()
        for tmp in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


def _sync(handles) -> None:
    """``os.fsync`` of each open file, side by side (the last on this thread)."""
    errors: list[BaseException] = []

    def sync(fh):
        try:
            os.fsync(fh.fileno())
        except BaseException as exc:  # noqa: BLE001 - raised on the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(fh,)) for fh in handles[:-1]]
    for thread in threads:
        thread.start()
    if handles:
        sync(handles[-1])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def clean_json(value: Any) -> Any:
    """JSON has no NaN or Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return clean_json(value.item())
    return value


def json_text(data: dict) -> str:
    """``data`` as the indented JSON every record file holds."""
    return json.dumps(clean_json(data), indent=2, sort_keys=False) + "\n"


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    atomic_write(path, json_text(data))


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``.

    Raises:
        RecordError: the file is missing, unreadable or not a JSON object, naming it.
        FileNotFoundError is not raised: a missing file is a RecordError too.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise RecordError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is damaged: not valid JSON ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise RecordError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} is damaged: a JSON {type(data).__name__} where an object belongs")
    return data


def make_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """A new empty directory in ``parent`` (created), with the umask's mode rather than 0700."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=suffix))
    os.chmod(path, 0o777 & ~umask())
    return path


@contextlib.contextmanager
def held_temp_dir(parent: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A new directory ``parent/PREFIXxxxxxxxx.tmp`` to build an output aside, held while the ``with`` lasts.

    The directory is locked (``flock``) by this process and the ones it forks; the
    lock dies with its holders, SIGKILL included. So the ``PREFIX*.tmp`` directories
    no living process holds are those of a command that died before renaming its
    output into place: nobody reads them, and they are removed here first. The
    directory, or what a swap left at its name, is removed when the ``with`` ends.
    """
    parent = Path(parent)
    _remove_abandoned(parent, prefix)
    fresh = make_temp_dir(parent, prefix, suffix=".new")  # not yet held: a name no sweep removes
    fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY)
    work = fresh.with_suffix(".tmp")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(fresh, work)
        yield work
    finally:
        shutil.rmtree(fresh if fresh.exists() else work, ignore_errors=True)
        os.close(fd)


def _remove_abandoned(parent: Path, prefix: str) -> None:
    """Removes the directories :func:`held_temp_dir` made in ``parent`` with ``prefix`` that nobody holds."""
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}\.tmp")  # tempfile's 8 random characters
    try:
        names = [n for n in os.listdir(parent) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        try:
            fd = os.open(parent / name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # gone, a link, not a directory: not one of ours
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(parent / name, ignore_errors=True)
        except OSError:  # held: a command is building it now
            pass
        finally:
            os.close(fd)


# renameat2(2) with RENAME_EXCHANGE swaps two paths in one step (Linux 3.15+, glibc 2.28+).
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Puts directory ``new`` at ``target``, replacing what is there, and removes the old one.

    Where the system can, the two are swapped in one atomic step, so ``target``
    always names a whole directory, the old or the new. Elsewhere the old one is
    renamed aside first: a crash between the two renames leaves ``target`` absent
    and the old directory beside it as ``.NAME.old-*``.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    if _renameat2 is not None and _renameat2(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(target),
                                             _RENAME_EXCHANGE) == 0:
        shutil.rmtree(new, ignore_errors=True)  # after the swap, `new` names the old directory
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old / "x")
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def check_writable(path: str | os.PathLike, what: str = "--out", fix: str = "choose a directory you can write") -> None:
    """Checks that directory ``path`` can be created (if missing) and written, leaving nothing behind.

    Called before anything slow (TensorFlow's import, a corpus) so that an output
    that cannot be written is one line at once, not a traceback minutes later.

    Raises:
        DiagnoseError: ``path`` is a file, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DiagnoseError(f"{what} {path} is a file; give a directory")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DiagnoseError(f"cannot write to {what} {path} ({exc.strerror or exc}); {fix}") from None
    finally:
        for created in missing:  # leave nothing behind: the writer creates it when it writes
            if not os.path.lexists(created):  # never made: the mkdir failed at or above it
                continue
            try:
                created.rmdir()
            except OSError:
                break


def refuse_links(directory: str | os.PathLike, names) -> None:
    """Refuses, in one line, a symbolic link at any of ``names`` in ``directory``: places diagnose writes.

    A link there (planted, or left by another tool) would send a write, or a lock's
    truncation, to a file outside the directory.

    Raises:
        DiagnoseError: naming the first link, where it points, and the fix.
    """
    for name in names:
        place = Path(directory) / name
        if place.is_symlink():
            raise DiagnoseError(f"{place} is a symbolic link (to {os.readlink(place)}); diagnose writes there and "
                                "makes that place itself: remove the link, or give another directory")

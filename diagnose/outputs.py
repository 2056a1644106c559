"""What ``report`` and ``compare`` may replace: only what they wrote themselves, unless told ``--force``.

A report directory carries a small marker file (:data:`REPORT_MARK`), and the PNG of
``compare`` a text chunk (:data:`COMPARE_MARK`), so a second report or comparison
into its own output replaces it while anything else there is refused in one line:
a run record, a study, a directory of the user's files, a file that is not a
comparison. A run or a study is never replaced, --force or not (a report is never
the reason to delete a record); nor a directory holding what the report reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.errors import DiagnoseError
from diagnose.files import check_writable

__all__ = ["REPORT_MARK", "COMPARE_MARK", "check_report_dir", "mark_report", "check_compare_png"]

REPORT = studydir.REPORT  # the report's place in a run or a study
REPORT_MARK = ".diagnose-report"  # in every report directory: "diagnose report wrote this"
COMPARE_MARK = "diagnose compare"  # the PNG's Software text chunk
# Files a report writes: a directory holding only these (and index.html) is a report from
# before the marker existed, which a new report may replace.
_REPORT_FILES = (".html", ".png", ".svg")


def _is_report(path: Path) -> bool:
    names = os.listdir(path)
    return REPORT_MARK in names or ("index.html" in names and all(
        n.endswith(_REPORT_FILES) and (path / n).is_file() for n in names))


def _record_kind(path: Path, strict: bool = False) -> str | None:
    """'a study' or 'a run record' for a directory holding one (its manifest.json, its config.json), else None.

    ``strict``: only with a second file of the kind (runs/, a summary or metrics), for the
    directories above an output, where a config.json of another tool is no record.
    """
    if studydir.is_study_dir(path) and (not strict or (path / studydir.RUNS).is_dir()):
        return "a study"
    if runrecord.is_run_dir(path) and (not strict or any((path / name).is_file() for name in
                                                         (runrecord.SUMMARY, runrecord.METRICS))):
        return "a run record"
    return None


def check_report_dir(out: str | os.PathLike, inputs: list, force: bool = False, what: str = "--out") -> None:
    """Refuses a report directory that would replace what the report did not write, or cannot be written.

    Args:
        out: the report directory.
        inputs: the run or study directories reported on.
        force: replace a non-empty directory the report did not write (never a
            record, nor a directory holding the inputs).
        what: how the message names ``out``: "--out", or how it was chosen when the
            user gave none (the fix then says to give --out).

    Raises:
        DiagnoseError: one line naming ``out``, what is there and the fix.
    """
    out = Path(out)
    if out.is_symlink():
        raise DiagnoseError(f"{what} {out} is a symbolic link; diagnose writes a report only into a directory it "
                            "makes: give the directory itself, or another one")
    if out.exists() and not out.is_dir():
        raise DiagnoseError(f"{what} {out} is a file; give a directory")
    own = "give the report a directory of its own (the default is PATH/report)"
    kind = _record_kind(out) if out.is_dir() else None
    if kind is not None:
        raise DiagnoseError(f"{what} {out} is {kind}; a report there would replace it: {own}")
    home = next((p for p in out.resolve().parents if _record_kind(p, strict=True)), None)
    if home is not None and out.resolve() != home / REPORT:
        raise DiagnoseError(f"{what} {out} is inside {_record_kind(home)}, {home}; a report there would mix with its "
                            f"files: {own}")
    if out.is_dir():
        held = next((p for p in inputs if out.resolve() in Path(p).resolve().parents), None) or (
            _holds_record(out) if force else None)
        if held is not None:
            raise DiagnoseError(f"{what} {out} holds {held}; replacing it would delete that: {own}")
        if os.listdir(out) and not _is_report(out) and not force:
            shown = ", ".join(sorted(os.listdir(out))[:3])
            raise DiagnoseError(f"{what} {out} is a directory that diagnose report did not write (it holds {shown}"
                                f"{', ...' if len(os.listdir(out)) > 3 else ''}); pass --force to replace it, or "
                                "give another directory")
    # A read-only place: the report could not be moved in (nor an old one, swapped out, removed).
    fix = "choose a directory you can write" if what == "--out" else "give --out a directory you can write"
    if out.is_dir():
        check_writable(out, what, fix)
    check_writable(out.parent, f"{what} {out}'s parent", fix)


def _holds_record(path: Path) -> Path | None:
    """The first run record or study under ``path`` (links not followed), or None."""
    for root, dirs, files in os.walk(path):
        if runrecord.CONFIG in files or studydir.MANIFEST in files:
            return Path(root)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return None


def mark_report(work: str | os.PathLike) -> None:
    """Marks a report directory as one ``diagnose report`` wrote (a later report may replace it)."""
    (Path(work) / REPORT_MARK).write_text("written by diagnose report; a later report may replace this directory\n",
                                          encoding="utf-8")


def check_compare_png(out: str | os.PathLike, force: bool = False) -> None:
    """Refuses a PNG path whose file ``compare`` did not write, or inside a record, unless ``force``.

    Raises:
        DiagnoseError: one line naming ``out`` and the fix.
    """
    out = Path(out)
    above = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise DiagnoseError(f"--out {out} is under {above}, which is a file; give a PNG path in a directory")
    if out.is_symlink() or out.exists() and not out.is_file():
        raise DiagnoseError(f"--out {out} is {'a symbolic link' if out.is_symlink() else 'not a file'}; give the "
                            "path of a PNG file to write")
    kind = _record_kind(out.parent) if out.parent.is_dir() else None
    if kind is not None and not force:
        raise DiagnoseError(f"--out {out} is inside {kind}, {out.parent}; write the comparison outside it, or pass "
                            "--force")
    if out.exists() and not force and not _is_comparison(out):
        raise DiagnoseError(f"--out {out} exists and is not a figure diagnose compare wrote; pass --force to "
                            "replace it, or give another file")
    check_writable(out.parent, "--out's directory")


def _is_comparison(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)  # matplotlib writes its text chunks before the image data
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and COMPARE_MARK.encode() in head

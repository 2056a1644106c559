"""report and compare replace only what they wrote (issue 31): a run, a study or a directory of the
user's files is refused in one line with the fix, and nothing there changes. No test trains: records
are hand-built."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from diagnose import studydir
from diagnose.outputs import COMPARE_MARK, REPORT_MARK
from test_reliability import _cli, _one_line_error, _whole_run


def _snapshot(path):
    """Every file under ``path`` with its bytes (hidden ones included)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _hand_study(path):
    _whole_run(path / "runs" / "0123456789abcdef")
    studydir.write_manifest(path, {"study": "hand-built", "runs": [
        {"id": "0123456789abcdef", "variant": "paper", "base": "paper", "factor": None, "level": None, "seed": 0,
         "status": "completed"}], "corpus": {}, "totals": {}})
    (path / studydir.LOCK).write_text("")
    return path


@pytest.mark.parametrize("target, needle", [("study", "is a study"), ("other_run", "is a run record"),
                                            ("mine", "did not write"), ("study_runs", "inside a study")])
def test_report_refuses_an_out_it_did_not_write(tmp_path, capsys, target, needle):
    run = _whole_run(tmp_path / "run")
    out = {"study": tmp_path / "study", "other_run": tmp_path / "other", "mine": tmp_path / "mine",
           "study_runs": tmp_path / "study" / "runs"}[target]
    _hand_study(tmp_path / "study")
    _whole_run(tmp_path / "other")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    before = _snapshot(tmp_path)
    code, _, err = _cli(capsys, "report", str(run), "--out", str(out))
    _one_line_error(code, err, str(out), needle)
    assert "--force" in err or "directory of its own" in err
    assert _snapshot(tmp_path) == before


def test_a_second_report_replaces_its_own_output_and_force_replaces_a_directory_of_files(tmp_path, capsys):
    run = _whole_run(tmp_path / "run")
    out = tmp_path / "report"
    for _ in range(2):
        code, _, err = _cli(capsys, "report", str(run), "--out", str(out))
        assert code == 0, err
    assert (out / REPORT_MARK).is_file() and (out / "index.html").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = _cli(capsys, "report", str(run), "--out", str(tmp_path / "mine"), "--force")
    assert code == 0, err
    assert not (tmp_path / "mine" / "notes.txt").exists() and (tmp_path / "mine" / "index.html").is_file()


def test_a_report_from_before_the_marker_is_replaced(tmp_path, capsys):
    run = _whole_run(tmp_path / "run")
    old = tmp_path / "report"
    old.mkdir()
    for name in ("index.html", "run-x.html", "loss_curves.png", "run-x-1234.svg"):
        (old / name).write_text("old")
    code, _, err = _cli(capsys, "report", str(run), "--out", str(old))
    assert code == 0, err
    assert (old / REPORT_MARK).is_file() and not (old / "run-x.html").exists()


@pytest.mark.parametrize("out, needle", [("study", "is a study"), ("above", "holds")])
def test_force_never_replaces_a_record_or_what_the_report_reads(tmp_path, capsys, out, needle):
    above = tmp_path / "above"
    run = _whole_run(above / "run")
    _hand_study(tmp_path / "study")
    before = _snapshot(tmp_path)
    code, _, err = _cli(capsys, "report", str(run), "--out", str(tmp_path / out), "--force")
    _one_line_error(code, err, needle)
    assert _snapshot(tmp_path) == before


def test_compare_replaces_only_its_own_figure(tmp_path, capsys):
    run = _whole_run(tmp_path / "run")
    mine = tmp_path / "notes.png"
    mine.write_bytes(b"\x89PNG\r\n\x1a\nnot a comparison")
    code, _, err = _cli(capsys, "compare", str(run), "--out", str(mine))
    _one_line_error(code, err, "not a figure diagnose compare wrote", "--force")
    assert mine.read_bytes() == b"\x89PNG\r\n\x1a\nnot a comparison"
    figure = tmp_path / "c.png"
    for _ in range(2):  # its own figure: replaced
        code, _, err = _cli(capsys, "compare", str(run), "--out", str(figure))
        assert code == 0, err
    assert COMPARE_MARK.encode() in figure.read_bytes()[:1024]
    code, _, err = _cli(capsys, "compare", str(run), "--out", str(mine), "--force")
    assert code == 0 and mine.read_bytes() != b"\x89PNG\r\n\x1a\nnot a comparison"


def test_compare_refuses_an_out_inside_a_record(tmp_path, capsys):
    run = _whole_run(tmp_path / "run")
    before = _snapshot(run)
    for out in (run / "c.png", run / "config.json"):
        code, _, err = _cli(capsys, "compare", str(run), "--out", str(out))
        _one_line_error(code, err, "inside a run record")
    assert _snapshot(run) == before


# -- read-only places: one line naming the directory and the fix --------------------------------------

def _cli_read_only(read_only, *args) -> subprocess.CompletedProcess:
    """Runs the command line with directory ``read_only`` read-only: by its mode, or (root writes through
    modes) as a read-only bind mount in a mount namespace of the command's own."""
    command = [sys.executable, "-m", "diagnose.cli", *args]
    if os.geteuid() != 0:
        mode = read_only.stat().st_mode
        read_only.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            read_only.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a directory read-only for root")
    place = shlex.quote(str(read_only))
    script = (f"mount --bind {place} {place} && mount -o remount,bind,ro {place} || exit 97\n"
              f"exec {shlex.join(command)}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if proc.returncode == 97 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount read-only here: {proc.stderr.strip()[:200]}")
    return proc


def _one_line_exit_2(proc, *needles):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Error:" not in lines[0], proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_report_on_a_read_only_study_names_the_directory_and_the_fix(tmp_path):
    study = _hand_study(tmp_path / "study")
    before = _snapshot(study)
    proc = _cli_read_only(study, "report", str(study))
    _one_line_exit_2(proc, str(study / "report"), "Read-only file system" if os.geteuid() == 0 else "denied",
                     "give --out a directory you can write")
    assert _snapshot(study) == before


@pytest.mark.parametrize("existing", [False, True])
def test_report_into_a_read_only_directory_names_it_and_the_fix(tmp_path, capsys, existing):
    run = _whole_run(tmp_path / "run")
    place = tmp_path / "place"
    place.mkdir()
    out = place / "report"
    if existing:  # a report of its own there, made read-only
        code, _, err = _cli(capsys, "report", str(run), "--out", str(out))
        assert code == 0, err
    before = _snapshot(place)
    proc = _cli_read_only(out if existing else place, "report", str(run), "--out", str(out))
    _one_line_exit_2(proc, str(out if existing else place), "choose a directory you can write")
    assert _snapshot(place) == before

"""The study directory's contract: names, run paths that never leave the study, the manifest, the lock."""

import json
import os
import subprocess
import sys

import pytest

from diagnose import studydir
from diagnose.errors import DiagnoseError, RecordError


@pytest.mark.parametrize("run_id", ["../../runs/x", "../x", "/etc", "", ".", "..", "a/b", "x\\..\\y", ".hidden",
                                    "abc.partial", None, 7])
def test_run_path_refuses_anything_but_a_plain_run_id(tmp_path, run_id):
    with pytest.raises(RecordError) as err:
        studydir.run_path(tmp_path, run_id)
    assert "manifest.json" in str(err.value) and "\n" not in str(err.value)


def test_run_path_of_a_plain_id_stays_in_the_study(tmp_path):
    path = studydir.run_path(tmp_path, "0123456789abcdef")
    assert path == tmp_path / "runs" / "0123456789abcdef"
    assert path.resolve().is_relative_to(tmp_path.resolve())


def test_manifest_round_trip_one_line_per_run(tmp_path):
    runs = [{"id": f"{i:016x}", "variant": "paper", "seed": i, "status": "completed", "wall_time_s": float("nan")}
            for i in range(3)]
    studydir.write_manifest(tmp_path, {"schema": 1, "study": "s", "spec": {"study": {"seeds": 3}}, "runs": runs})
    text = (tmp_path / "manifest.json").read_text()
    assert sum('"variant": "paper"' in line for line in text.splitlines()) == 3  # one line each
    back = studydir.read_manifest(tmp_path)
    assert back["study"] == "s" and [r["seed"] for r in back["runs"]] == [0, 1, 2]
    assert back["runs"][0]["wall_time_s"] is None  # NaN written as null, as every record file
    json.loads(text)


@pytest.mark.parametrize("content, needle", [("{", "not valid JSON"), ("[1, 2]", "a JSON list"),
                                             ('{"study": "x"}', "no list of runs")])
def test_a_damaged_manifest_is_one_line_naming_the_file(tmp_path, content, needle):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(RecordError) as err:
        studydir.read_manifest(tmp_path)
    assert needle in str(err.value) and "manifest.json" in str(err.value) and "\n" not in str(err.value)


def test_the_lock_is_reentrant_in_one_process_and_free_after_release(tmp_path):
    with studydir.StudyLock(tmp_path):
        with studydir.StudyLock(tmp_path):  # run_study -> run_sweep take it twice
            holder = json.loads((tmp_path / ".lock").read_text())
            assert holder["pid"] == os.getpid()
        assert (tmp_path / ".lock").read_text()  # still held by the outer one
    assert (tmp_path / ".lock").read_text() == ""  # released: no holder named
    with studydir.StudyLock(tmp_path):
        pass


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    code = ("import sys\nfrom diagnose.studydir import StudyLock\nfrom diagnose.errors import DiagnoseError\n"
            "try:\n    StudyLock(sys.argv[1]).__enter__()\nexcept DiagnoseError as e:\n    print(e)\n    sys.exit(2)\n")
    with studydir.StudyLock(tmp_path):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    message = proc.stdout.strip()
    assert f"pid {os.getpid()}" in message and "another --out" in message and len(message.splitlines()) == 1
    # Once released, the other process gets it.
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_a_failed_command_leaves_no_directory_its_lock_created(tmp_path):
    with pytest.raises(DiagnoseError):
        with studydir.StudyLock(tmp_path / "new"):
            raise DiagnoseError("bad corpus")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(DiagnoseError):
        with studydir.StudyLock(tmp_path / "kept"):
            raise DiagnoseError("bad corpus")
    assert (tmp_path / "kept").is_dir()  # it was there before: only its lock file is added


@pytest.mark.parametrize("name, plain", [("default", True), ("my-study_2.v1", True), ("", False), (".", False),
                                         ("..", False), ("../../x", False), ("a/b", False), ("/etc", False),
                                         ("a b", False), (None, False)])
def test_plain_names(name, plain):
    assert studydir.plain_name(name) is plain

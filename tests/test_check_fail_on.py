"""``diagnose check --fail-on KIND``: exit 1 when a run has a finding of that kind or worse, for CI."""

from __future__ import annotations

import pytest

from diagnose.cli import main
from diagnose.findings.base import Finding
from study_fakes import record_files


def _finding(kind: str) -> Finding:
    return Finding(id=f"a-{kind}", kind=kind, severity="medium", title="t", evidence=(), explanation="e", fix="f")


def _run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in record_files({"train": {"steps": 20}}).items():
        (run / name).write_bytes(data)
    return run


def _check(capsys, *argv):
    with pytest.raises(SystemExit) as done:
        main(["check", *argv])
    return done.value.code, capsys.readouterr()


@pytest.mark.parametrize("kinds, fail_on, code", [
    ([], None, 0), (["symptom"], None, 0), (["unexplained"], None, 0),  # by default: 0 whatever it finds
    ([], "symptom", 0), (["symptom"], "root-cause", 0), (["symptom"], "symptom", 1),
    (["root-cause"], "root-cause", 1), (["root-cause", "symptom"], "symptom", 1),
    (["unexplained"], "root-cause", 1),  # a failure no cause explains is worse than a root cause
])
def test_fail_on_exits_1_on_a_finding_of_that_kind_or_worse(tmp_path, capsys, monkeypatch, kinds, fail_on, code):
    run = _run(tmp_path)
    monkeypatch.setattr("diagnose.findings.check_run", lambda path: [_finding(k) for k in kinds])
    got, captured = _check(capsys, str(run), *(["--fail-on", fail_on] if fail_on else []))
    assert got == code, captured.err
    assert all(f"a-{k}" in captured.out for k in kinds)  # the findings are printed either way


def test_fail_on_a_study_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("diagnose.studydir.is_study_dir", lambda path: True)
    code, captured = _check(capsys, str(tmp_path), "--fail-on", "symptom")
    assert code == 2 and "--fail-on takes a run directory" in captured.err
    assert len(captured.err.strip().splitlines()) == 1

"""Nothing follows a link it did not make (issue 31): a link planted where a sweep, a run or a report
writes is refused in one line, and what it points at is left as it was. No test trains: sweeps use an
executor that answers at once."""

import tempfile

import pytest

from diagnose import runrecord, studydir
from diagnose.memn2n.spec import build_spec
from diagnose.ablation.sweep import run_sweep
from diagnose.errors import DiagnoseError
from study_fakes import InstantExecutor
from test_reliability import TINY, _cli, _one_line_error, _toml


class ScratchWriter(InstantExecutor):
    """Answers at once, after writing into the scratch directory as a worker does."""

    def run(self, tasks):
        for task in tasks:
            work = tempfile.mkdtemp(prefix=f"{task['run_id']}-", dir=task["scratch"])
            with open(f"{work}/written", "w") as fh:
                fh.write("a worker's file")
            yield from super().run([task])


def _outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    return outside


def _unchanged(outside):
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert (outside / "precious").read_text() == "keep me"


def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(tmp_path, capsys, monkeypatch):
    outside = _outside(tmp_path)
    study = tmp_path / "abl"
    study.mkdir()
    (study / studydir.LOCK).symlink_to(outside / "precious")
    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: InstantExecutor())
    (tmp_path / "spec.toml").write_text(_toml(TINY))
    code, _, err = _cli(capsys, "run-ablation", str(tmp_path / "spec.toml"), "--out", str(study), "--no-report")
    _one_line_error(code, err, str(study / studydir.LOCK), "symbolic link")
    _unchanged(outside)
    assert sorted(p.name for p in study.iterdir()) == [studydir.LOCK]


@pytest.mark.parametrize("place", [studydir.SCRATCH, studydir.RUNS, "partial"])
def test_a_link_where_a_sweep_writes_is_refused(tmp_path, place):
    outside = _outside(tmp_path)
    spec = build_spec(TINY)
    study = tmp_path / "abl"
    study.mkdir()
    if place == "partial":  # where the first run's record is moved in
        run_id = spec.prepare()[0][0].run_id
        (study / studydir.RUNS).mkdir()
        link = study / studydir.RUNS / f"{run_id}{studydir.PARTIAL}"
    else:
        link = study / place
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(DiagnoseError) as err:
        run_sweep(spec, study, ScratchWriter())
    assert str(link) in str(err.value) and "symbolic link" in str(err.value) and "\n" not in str(err.value)
    _unchanged(outside)
    assert sorted(p.name for p in study.iterdir()) == [studydir.RUNS if place == "partial" else place]  # no .lock


def test_a_report_link_in_a_study_is_refused(tmp_path, capsys):
    outside = _outside(tmp_path)
    study = tmp_path / "abl"
    run_sweep(build_spec(TINY), study, InstantExecutor())
    (study / studydir.REPORT).symlink_to(outside, target_is_directory=True)
    code, _, err = _cli(capsys, "report", str(study))
    _one_line_error(code, err, "symbolic link")
    _unchanged(outside)
    assert (study / studydir.REPORT).is_symlink()


@pytest.mark.parametrize("name", [runrecord.ATTENTION, runrecord.TENSORBOARD, runrecord.METRICS])
def test_train_refuses_a_run_directory_with_a_link_where_the_record_goes(tmp_path, name):
    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config
    from diagnose.memn2n.train import train

    outside = _outside(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(outside if name == runrecord.TENSORBOARD else outside / "precious")
    config = make_run_config("paper", {"memory_size": 4, "embed_dim": 4, "hops": 1, "batch_size": 8},
                             data=DataConfig(synthetic="topic-copy-small"),
                             train=TrainConfig(steps=2, jit_compile=False, tensorboard=False))
    with pytest.raises(DiagnoseError) as err:
        train(config, run)
    assert str(run / name) in str(err.value) and "symbolic link" in str(err.value)
    _unchanged(outside)
    assert sorted(p.name for p in run.iterdir()) == [name]


@pytest.mark.parametrize("name", [runrecord.ATTENTION, runrecord.TENSORBOARD, runrecord.METRICS])
def test_a_run_directory_with_a_link_where_the_record_goes_is_refused(tmp_path, name):
    outside = _outside(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(outside if name == runrecord.TENSORBOARD else outside / "precious")
    with pytest.raises(DiagnoseError) as err:
        runrecord.begin_record(run, model={}, data={}, train={})
    assert str(run / name) in str(err.value) and "symbolic link" in str(err.value)
    _unchanged(outside)
    assert sorted(p.name for p in run.iterdir()) == [name]


@pytest.mark.parametrize("name, directory", [(studydir.LOCK, True), (studydir.RUNS, False),
                                             (studydir.SCRATCH, False), (studydir.MANIFEST, True)])
def test_a_file_where_a_study_keeps_a_directory_or_back_is_refused(tmp_path, capsys, monkeypatch, name, directory):
    study = tmp_path / "abl"
    study.mkdir()
    if directory:
        (study / name).mkdir()
    else:
        (study / name).write_text("the user's")
    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: InstantExecutor())
    (tmp_path / "spec.toml").write_text(_toml(TINY))
    code, _, err = _cli(capsys, "run-ablation", str(tmp_path / "spec.toml"), "--out", str(study), "--no-report")
    _one_line_error(code, err, str(study / name), "a directory" if directory else "a file", "give another --out")
    assert sorted(p.name for p in study.iterdir()) == [name]

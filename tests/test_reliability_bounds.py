"""Numbers and names past what the machine can do: one line, exit 2, nothing written (issue 31).

No test here trains: each value is refused before a run directory exists (and the
command line's before TensorFlow loads); sweeps use an executor that answers at once.
"""

import dataclasses
import json

import pytest

from diagnose import limits, studydir
from diagnose.memn2n.spec import build_spec
from diagnose.memn2n.config import RunConfig, resolve
from diagnose.errors import ConfigError
from diagnose.models.config import preset
from study_fakes import InstantExecutor
from test_reliability import TINY, _cli, _one_line_error, _toml


@pytest.mark.parametrize("args, needle", [
    (["--steps", str(10**23)], "more than 100,000,000"),
    (["--epochs", "1e12"], "give fewer epochs"),
    (["--set", "hops=100000"], "hops=100000 is more than 100"),
    (["--seed", str(2**32)], "2**32 - 1"),
    (["--seed", str(2**64)], "2**32 - 1"),
    (["--set", "memory_size=1000000000"], "memory"),
    (["--set", "embed_dim=10000000000"], "memory"),
    (["--synthetic", ""], "'--synthetic': is empty"),
    (["--corpus", ""], "'--corpus': is empty"),
])
def test_train_refuses_numbers_the_machine_cannot_take_and_writes_nothing(tmp_path, capsys, monkeypatch, args,
                                                                          needle):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "train", *args, "--out", "run", "--quiet")
    _one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_out_is_refused_instead_of_writing_into_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["train", "--steps", "2"], ["run-ablation"], ["compare", str(tmp_path)]):
        code, _, err = _cli(capsys, *command, "--out", "")
        _one_line_error(code, err, "'--out': is empty")
    assert list(tmp_path.iterdir()) == []


def test_a_batch_larger_than_the_corpus_is_recorded_as_the_batch_trained():
    config = RunConfig(model=dataclasses.replace(preset("paper"), batch_size=10**8))
    resolved, notes = resolve(config, vocab_size=35, n_windows=19_999)
    assert resolved.model.batch_size == 19_999 and resolved.model.vocab_size == 35
    assert len(notes) == 1 and "config.json records batch_size=19999" in notes[0]
    assert resolve(resolved, 35, 19_999)[1] == []  # within the corpus: nothing to say


def test_the_memory_estimate_refuses_only_what_cannot_fit():
    paper = dataclasses.replace(preset("paper"), vocab_size=10_000)
    assert limits.memory_bytes(paper, 128, 1024) < 2e9  # the paper's model: well under a laptop's memory
    limits.check_run(RunConfig(model=paper), n_windows=900_000)
    huge = RunConfig(model=dataclasses.replace(paper, memory_size=10**9))
    with pytest.raises(ConfigError, match="memory_size=1000000000.*give smaller sizes"):
        limits.check_run(huge, n_windows=900_000)


@pytest.mark.parametrize("study, needle", [
    ({"seeds": [2**32]}, "2**32 - 1"),
    ({"seeds": [2**32 - 3], "max_seeds": 12}, "with the seeds added after it"),
    ({"name": "n" * 300}, "300 characters"),
])
def test_a_spec_out_of_range_is_refused(study, needle):
    with pytest.raises(ConfigError, match=needle.replace("*", r"\*")):
        build_spec({**TINY, "study": {**TINY["study"], **study}})


def test_a_factor_or_level_name_too_long_for_a_file_name_is_refused():
    with pytest.raises(ConfigError, match="250 characters"):
        build_spec({**TINY, "factors": {"f" * 250: {"high": {"learning_rate": 1.0}}}})
    with pytest.raises(ConfigError, match="250 characters"):
        build_spec({**TINY, "factors": {"lr": {"h" * 250: {"learning_rate": 1.0}}}})


def test_a_user_study_with_names_too_long_is_refused():
    from diagnose.userstudy.spec import build_keras_spec

    base = {"study": {"builder": "m:build", "data": "m:data", "seeds": 1}}
    for raw in ({**base, "study": {**base["study"], "name": "n" * 300}},
                {**base, "factors": {"f" * 250: [1, 2]}},
                {**base, "bases": {"b" * 250: {}}},
                {**base, "study": {**base["study"], "seeds": [2**32]}}):
        with pytest.raises(ConfigError):
            build_keras_spec(raw)


@pytest.mark.parametrize("study", [{"name": "n" * 300}, {"seeds": [2**32]}])
def test_run_ablation_refuses_a_bad_spec_before_writing_anything(tmp_path, capsys, monkeypatch, study):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(_toml({**TINY, "study": {**TINY["study"], **study}}))
    code, _, err = _cli(capsys, "run-ablation", "spec.toml")
    _one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_check_writable_leaves_no_parent_behind_when_a_name_is_too_long(tmp_path):
    from diagnose.errors import DiagnoseError
    from diagnose.files import check_writable

    with pytest.raises(DiagnoseError, match="File name too long"):
        check_writable(tmp_path / "ablations" / ("n" * 300))
    assert list(tmp_path.iterdir()) == []


def test_jobs_beyond_the_cores_are_capped_with_a_note(tmp_path, capsys, monkeypatch):
    asked = []

    def make_executor(name, jobs=1, ray_address=None):
        asked.append(jobs)
        return InstantExecutor()

    monkeypatch.setattr("diagnose.ablation.executors.make_executor", make_executor)
    monkeypatch.setattr("diagnose.parallel.cores", lambda: 2)
    (tmp_path / "spec.toml").write_text(_toml(TINY))
    code, _, err = _cli(capsys, "run-ablation", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "abl"),
                        "--jobs", "1000000", "--no-report", "--no-follow-up")
    assert code == 0 and asked == [2]
    assert "--jobs 1000000 is more than the 2 cores here; running at most 2 at a time" in err


def test_the_local_executor_starts_no_more_workers_than_runs(monkeypatch):
    from diagnose.ablation import executors

    started = []

    class Pool:
        def __init__(self, max_workers, **kwargs):
            started.append(max_workers)

        def submit(self, fn, job):
            from concurrent.futures import Future

            done = Future()
            done.set_result([{"run_id": t["run_id"]} for t in job])
            return done

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(executors, "ProcessPoolExecutor", Pool)
    with executors.LocalExecutor(jobs=8) as runner:
        assert len(list(runner.run([{"run_id": "a"}]))) == 1
        assert len(list(runner.run([{"run_id": str(i)} for i in range(3)]))) == 3  # more runs: a larger pool
        assert len(list(runner.run([{"run_id": "b"}]))) == 1  # fewer: the pool it has
    assert started == [1, 3]


def test_compare_refuses_a_cut_off_record_and_an_out_under_a_file(tmp_path, capsys):
    from test_reliability import _whole_run

    run = _whole_run(tmp_path / "run")
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(capsys, "compare", str(run), "--out", str(tmp_path / "file" / "c.png"))
    _one_line_error(code, err, "which is a file")
    metrics = run / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[:-9])
    code, _, err = _cli(capsys, "compare", str(run), "--out", str(tmp_path / "c.png"))
    _one_line_error(code, err, "metrics.csv is cut off")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run"]
    assert json.loads((run / "config.json").read_text())  # untouched
    assert not studydir.is_study_dir(tmp_path)


def test_a_count_of_seeds_far_past_the_bound_is_refused_before_it_is_made(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(_toml(TINY))
    code, _, err = _cli(capsys, "run-ablation", "spec.toml", "--seeds", str(10**11))
    _one_line_error(code, err, f"{10**11} seeds is more than 1000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]

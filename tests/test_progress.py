"""A sweep's progress where no terminal shows a bar (CI logs, `| tee`): one line per finished run."""

import json

import pytest

from diagnose import studydir
from diagnose.cli import main
from diagnose.progress import SweepProgress, run_line
from study_fakes import InstantExecutor

TINY = {"study": {"name": "tiny", "bases": ["paper"], "seeds": 2}, "budget": {"steps": 20},
        "corpus": {"synthetic": "topic-copy-small"},
        "sizes": {"memory_size": 6, "embed_dim": 8, "hops": 2, "batch_size": 16},
        "train": {"log_every": 10, "tensorboard": False, "jit_compile": False},
        "factors": {"output": []}}


def _toml(raw: dict) -> str:
    return "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
                     for s, keys in raw.items()) + "\n"


def _run(capsys, monkeypatch, tmp_path, *extra):
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(TINY))
    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: InstantExecutor())
    with pytest.raises(SystemExit) as done:
        main(["run-ablation", str(spec), "--out", str(tmp_path / "abl"), "--no-report", *extra])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    return out, err


def test_each_finished_run_is_a_line_named_by_variant_and_seed(tmp_path, capsys, monkeypatch):
    # pytest's captured stdout is no terminal. One sweep: the fake losses (from run ids) would
    # otherwise decide whether rounds of added seeds follow, each counting its own runs.
    out, err = _run(capsys, monkeypatch, tmp_path, "--no-follow-up")
    runs = studydir.read_manifest(tmp_path / "abl")["runs"]
    lines = [line for line in out.splitlines() if line.startswith("run ")]
    assert lines == [f"run {i}/{len(runs)}: {e['variant']}, seed {e['seed']}: completed (0.0 s)"
                     for i, e in enumerate(runs, start=1)]
    assert "paper | output=relu, seed 1" in lines[-1] and "runs" not in err  # and no bar on stderr


def test_quiet_prints_no_progress(tmp_path, capsys, monkeypatch):
    out, _ = _run(capsys, monkeypatch, tmp_path, "--quiet")
    assert not [line for line in out.splitlines() if line.startswith("run ")]


def test_a_failed_run_says_why_in_its_line():
    entry = {"variant": "paper", "seed": 3, "status": "failed", "wall_time_s": 1.25,
             "error": "ValueError: bad shape\nTraceback ..."}
    assert run_line({"done": 2, "total": 9, "entry": entry}) == \
        "run 2/9: paper, seed 3: failed (1.2 s): ValueError: bad shape"


def test_on_a_terminal_it_is_a_bar_not_lines(capsys):
    progress = SweepProgress(lines=False)
    entry = {"variant": "paper", "seed": 0, "status": "completed", "wall_time_s": 0.1}
    for done in (1, 2):
        progress({"done": done, "total": 2, "entry": entry})
    progress.close()
    out, err = capsys.readouterr()
    assert out == "" and "runs" in err


def test_a_resumed_study_says_how_many_runs_it_found_and_counts_on_from_them(tmp_path, capsys, monkeypatch):
    import shutil

    _run(capsys, monkeypatch, tmp_path, "--no-follow-up")
    runs = studydir.read_manifest(tmp_path / "abl")["runs"]
    for entry in runs[:2]:  # two runs lost: the study resumes with the others recorded
        shutil.rmtree(studydir.run_path(tmp_path / "abl", entry["id"]))
    out, _ = _run(capsys, monkeypatch, tmp_path, "--no-follow-up")
    lines = [line for line in out.splitlines() if line.startswith(("run ", "resuming"))]
    n = len(runs)
    assert lines[0] == f"resuming: {n - 2} of {n} runs already recorded"
    assert [line.split(":")[0] for line in lines[1:]] == [f"run {n - 1}/{n}", f"run {n}/{n}"]


def _entry(seed=0):
    return {"variant": "paper", "seed": seed, "status": "completed", "wall_time_s": 0.1}


def test_a_round_that_adds_runs_says_so_before_its_first_line(capsys):
    progress = SweepProgress(lines=True)
    for done in (1, 2, 3):
        progress({"done": done, "total": 3, "before": 0, "entry": _entry()})
    for done in (4, 5):  # the verdict asked for two more seeds
        progress({"done": done, "total": 5, "before": 3, "entry": _entry()})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "run 1/3", "run 2/3", "run 3/3", "2 more runs asked for by the verdict (seeds or combinations)",
        "run 4/5", "run 5/5"]


def test_on_resume_the_bar_starts_at_the_runs_done_and_its_time_left_counts_only_runs_trained_here(monkeypatch):
    clock = iter([0.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    monkeypatch.setattr("diagnose.progress.time.monotonic", lambda: next(clock))
    progress = SweepProgress(lines=False)  # began at 0 s
    progress({"done": 31, "total": 40, "before": 30, "entry": _entry()})  # one run trained here in 10 s
    line = progress.bar.format_progress_line()
    progress.close()
    # 9 runs left at 10 s each: 90 s, not the 1 s that 31 runs in 10 s would give
    assert "31/40" in line and "about 01:30 left" in line


def test_variants_sharing_a_run_count_one_each_so_the_numbers_never_skip(tmp_path):
    from diagnose.ablation.sweep import run_sweep
    from diagnose.userstudy.spec import build_keras_spec
    from study_fakes import InstantExecutor, record_files

    events = []
    # two bases with the same settings: one run per seed stands for both variants
    spec = build_keras_spec({"study": {"builder": "userstudy_models:build", "data": "userstudy_models:data",
                                       "seeds": 2}, "bases": {"a": {}, "b": {}}})
    executor = InstantExecutor(lambda task: {"run_id": task["run_id"], "status": "completed", "error": None,
                                             "wall_time_s": 0.01, "files": record_files(task["config"], steps=20)})
    run_sweep(spec, tmp_path / "s", executor, progress=events.append)
    assert len(set(executor.seen)) == 2
    assert [(e["done"], e["total"], e["before"]) for e in events] == [(i, 4, 0) for i in range(1, 5)]


@pytest.mark.parametrize("verbose", [1, 0])
def test_diagnose_study_shows_its_runs_as_the_cli_does_unless_verbose_is_0(tmp_path, capsys, monkeypatch, verbose):
    import diagnose

    def fake_study(spec, out, runner, progress=None, force=False):
        for done in (1, 2):
            progress({"done": done, "total": 2, "before": 0, "entry": _entry(done)})
        return {}, {}

    monkeypatch.setattr("diagnose.ablation.study.run_study", fake_study)
    seen = []
    diagnose.study("userstudy_models:build", "userstudy_models:data", seeds=2, out=tmp_path / "s",
                   executor="inline", progress=seen.append, verbose=verbose)
    lines = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert lines == (["run 1/2", "run 2/2"] if verbose else []) and len(seen) == 2  # the caller's callback too


def test_force_with_no_report_leaves_the_report_there(tmp_path, capsys, monkeypatch):
    # A report the command was told not to write is not deleted (nor replaced): the user said --no-report.
    _run(capsys, monkeypatch, tmp_path, "--no-follow-up")
    report = tmp_path / "abl" / studydir.REPORT
    report.mkdir()
    (report / "index.html").write_text("<p>the report of the study before</p>")
    TINY["study"]["seeds"] = 3  # another spec: --force replaces the study
    try:
        _, err = _run(capsys, monkeypatch, tmp_path, "--no-follow-up", "--force")
    finally:
        TINY["study"]["seeds"] = 2
    assert studydir.read_manifest(tmp_path / "abl")["spec"]["study"]["seeds"] == 3  # replaced
    assert (report / "index.html").read_text() == "<p>the report of the study before</p>"
    assert f"{report} is left as it was (--no-report)" in err

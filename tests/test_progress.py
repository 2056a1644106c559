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

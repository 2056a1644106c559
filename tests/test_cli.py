"""The command line: one-line errors with exit status 2, help on every command, a real run."""

import json
import subprocess
import sys

import pytest

from diagnose import runrecord


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diagnose.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["--set", "nosuchkey=1"], "valid settings: vocab_size"),
    (["--set", "output=sigmoid"], "choose one of softmax, relu"),
    (["--set", "hops=two"], "hops='two'"),
    (["--set", "hops"], "KEY=VALUE"),
    (["--preset", "nope"], "paper, as-posted"),
    (["--synthetic", "nope"], "topic-copy"),
    (["--steps", "0"], "--steps"),
])
def test_bad_settings_give_one_line_and_exit_2(tmp_path, args, needle):
    out = tmp_path / "run"
    proc = _run("train", *args, "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing written for bad input


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"abc\x00def\n", "binary"),
    (b"caf\xe9 au lait\n" * 5, "UTF-8"),
    (b"word\n" * 50, "one-word vocabulary"),
])
def test_bad_corpus_files_give_one_line_naming_the_file(tmp_path, content, needle):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    proc = _run("train", "--corpus", str(corpus), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "corpus.txt" in lines[0] and needle in lines[0]


def test_missing_corpus_and_too_short_corpus(tmp_path):
    proc = _run("train", "--corpus", str(tmp_path / "absent.txt"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "absent.txt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    short = tmp_path / "short.txt"
    short.write_text("a b c\nd e f\n")
    proc = _run("train", "--corpus", str(short), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "short.txt" in proc.stderr and "memory_size" in proc.stderr


def test_existing_record_is_not_overwritten_without_force(tmp_path):
    run = tmp_path / "run"
    runrecord.write_config(run, model={"x": 1}, data={}, train={})
    before = (run / "config.json").read_text()
    proc = _run("train", "--out", str(run))
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (run / "config.json").read_text() == before


@pytest.mark.parametrize("command", ["report", "check"])
def test_a_directory_that_is_no_record_gives_one_line_and_writes_nothing(tmp_path, command):
    (tmp_path / "notes.txt").write_text("not a run\n")
    proc = _run(command, str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "neither a run directory" in lines[0] and "diagnose train" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no report/ left behind


@pytest.mark.slow  # a sweep (or a run) trained twice, 11-17 s on two cores
def test_train_checkpoint_then_resume_extends_the_budget(tmp_path):
    out = tmp_path / "run"
    args = ("train", "--synthetic", "topic-copy-small", "--log-every", "10", "--eval-every", "20",
            "--set", "memory_size=8", "--set", "embed_dim=8", "--set", "hops=2", "--set", "batch_size=16",
            "--quiet", "--eval-test", "--out", str(out))
    assert _run(*args, "--steps", "20", "--checkpoint").returncode == 0
    proc = _run(*args, "--steps", "40", "--resume")
    assert proc.returncode == 0, proc.stderr
    metrics = runrecord.read_metrics(out)
    assert list(metrics["step"]) == [0, 10, 20, 30, 40]
    assert metrics["test_perplexity"].notna().sum() == 2
    # --resume where there is no checkpoint: one line, exit 2, nothing written.
    proc = _run(*args[:-1], str(tmp_path / "none"), "--steps", "40", "--resume")
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("command", [[], ["train"], ["run-ablation"], ["check"], ["report"], ["compare"]])
def test_every_command_has_help(command):
    proc = _run(*command, "--help")
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout and len(proc.stdout.splitlines()) > 3


@pytest.mark.slow
def test_train_writes_a_run_record(tmp_path):
    out = tmp_path / "run"
    proc = _run("train", "--synthetic", "topic-copy-small", "--steps", "30", "--log-every", "10",
                "--set", "memory_size=8", "--set", "embed_dim=8", "--set", "hops=2", "--set", "batch_size=16",
                "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 30
    assert config["model"]["hops"] == 2 and config["data"]["synthetic"] == "topic-copy-small"
    assert list(runrecord.read_metrics(out)["step"]) == [0, 10, 20, 30]

"""Bad input, one line each: every spec key and option as strict as --set, damaged records named, nothing written.

No test here trains: records are hand-built, sweeps use an executor that answers at once.
"""

import json
import math
import subprocess
import sys

import pytest

from diagnose import runrecord, studydir
from diagnose.memn2n.spec import build_spec
from diagnose.cli import main
from diagnose.memn2n.config import DataConfig, TrainConfig
from diagnose.errors import ConfigError, DiagnoseError
from diagnose.models.config import apply_overrides, preset
from study_fakes import InstantExecutor, record_files

TINY = {"study": {"name": "tiny", "bases": ["paper"], "seeds": 2}, "budget": {"steps": 20},
        "corpus": {"synthetic": "topic-copy-small"},
        "sizes": {"memory_size": 6, "embed_dim": 8, "hops": 2, "batch_size": 16},
        "train": {"log_every": 10, "eval_at_start": False, "tensorboard": False, "jit_compile": False},
        "factors": {"output": []}}


def _cli(capsys, *args) -> tuple[int, str, str]:
    """Runs the command line in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def _one_line_error(code, err, *needles):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _toml(raw: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else "inf"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)
    return "\n".join(f"[{section}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in keys.items())
                     for section, keys in raw.items()) + "\n"


# -- spec keys --------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, needle", [
    ("study", "name", "../../x", "plain name"),
    ("study", "name", "/etc/x", "plain name"),
    ("study", "name", "", "plain name"),
    ("study", "name", ".", "plain name"),
    ("study", "name", "..", "plain name"),
    ("study", "name", "a/b", "plain name"),
    ("study", "name", 3, "plain name"),
    ("study", "seeds", 100000, "more than 1000"),
    ("study", "seeds", [1, -1], "seeds"),
    ("train", "eval_batch_size", -5, "[train] eval_batch_size must be a positive integer"),
    ("train", "log_every", 0, "[train] log_every must be a positive integer"),
    ("train", "log_every", "abc", "[train] log_every"),
    ("train", "log_every", 2.5, "[train] log_every"),
    ("train", "eval_every", 0, "[train] eval_every"),
    ("train", "probe_every", -1, "[train] probe_every"),
    ("train", "eval_max_windows", 0, "[train] eval_max_windows"),
    ("train", "threads", 0, "[train] threads"),
    ("train", "tensorboard", "yes", "[train] tensorboard must be true or false"),
    ("train", "eval_at_start", 1, "[train] eval_at_start must be true or false"),
    ("train", "instruments", "some", "choose full or off"),
    ("budget", "epochs", math.inf, "[budget]"),
    ("budget", "epochs", math.nan, "[budget]"),
    ("model", "learning_rate", math.inf, "learning_rate must be a finite number"),
    ("model", "init_std", math.inf, "init_std must be a finite number"),
    ("model", "query_value", math.nan, "query_value must be a finite number"),
    ("model", "lr_anneal", math.nan, "lr_anneal must be a finite number"),
    ("model", "clip_norm", math.inf, "clip_norm must be a finite number"),
    ("corpus", "max_vocab", 100, "synthetic corpus has a fixed vocabulary"),
    ("corpus", "tokens", -1, "[corpus] tokens"),
])
def test_every_spec_key_is_validated(section, key, value, needle):
    raw = {s: dict(v) for s, v in TINY.items()}
    raw.setdefault(section, {})[key] = value
    if section == "budget":
        raw["budget"] = {key: value}
    with pytest.raises(ConfigError) as err:
        build_spec(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_one_base_spec_without_factors_is_accepted():
    # The default study's combinations are of the as-posted base; a spec without it
    # must not be blamed for contrasts it never wrote.
    spec = build_spec({"study": {"bases": ["paper"]}})
    assert spec.combos == () and [v.base for v, _ in spec.variants()] == ["paper"] * len(spec.variants())


@pytest.mark.parametrize("key, value", [("learning_rate", "inf"), ("init_std", "inf"), ("query_value", "nan"),
                                        ("lr_anneal", "nan"), ("learning_rate", "-inf")])
def test_set_rejects_non_finite_numbers(key, value):
    with pytest.raises(ValueError, match=f"{key} must be"):
        apply_overrides(preset("paper"), {key: value})


@pytest.mark.parametrize("fields, needle", [({"seed": -1}, "seed"), ({"eval_every": -5}, "eval_every"),
                                            ({"steps": 0}, "steps"), ({"epochs": math.inf, "steps": None}, "epochs"),
                                            ({"log_every": True}, "log_every")])
def test_train_config_validate(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**fields).validate()


def test_data_config_refuses_max_vocab_on_the_synthetic_corpus():
    with pytest.raises(ConfigError, match="fixed vocabulary"):
        DataConfig(max_vocab=100).validate()
    DataConfig(corpus="some/ptb", max_vocab=100).validate()  # a text corpus takes it


# -- the command line: exit 2, one line, nothing on disk ----------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--seed", "-1"], "--seed"),
    (["--eval-every", "-5"], "--eval-every"),
    (["--log-every", "0"], "--log-every"),
    (["--max-vocab", "100"], "fixed vocabulary"),
    (["--epochs", "inf"], "epochs"),
    (["--set", "learning_rate=inf"], "learning_rate"),
])
def test_bad_train_options_exit_2_and_write_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", *args, "--out", str(out))
    _one_line_error(code, err, needle)
    assert not out.exists()


def test_out_that_cannot_be_written_is_named_before_tensorflow_loads(tmp_path):
    code = ("import sys\nfrom diagnose.cli import main\ntry:\n    main(['train', '--steps', '5', '--out', '/proc/x'])\n"
            "except SystemExit as e:\n    print(e.code, 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert "/proc/x" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_train_out_that_is_a_study_or_a_file_is_refused(tmp_path, capsys):
    studydir.write_manifest(tmp_path / "study", {"runs": []})
    code, _, err = _cli(capsys, "train", "--steps", "5", "--out", str(tmp_path / "study"))
    _one_line_error(code, err, "ablation directory")
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(capsys, "train", "--steps", "5", "--out", str(tmp_path / "file"))
    _one_line_error(code, err, "file")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("damage", ["arrays", "state"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, capsys, damage):
    run = tmp_path / "run"
    runrecord.write_config(run, model={}, data={}, train={})
    runrecord.write_summary(run, {"status": "completed"})
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "arrays.npz").write_bytes(b"not a zip" if damage == "arrays" else b"")
    (run / "checkpoint" / "state.json").write_text("{" if damage == "state" else "{}")
    if damage == "state":
        import numpy as np

        np.savez(run / "checkpoint" / "arrays.npz", x=np.zeros(2))
    before = sorted(p.name for p in run.rglob("*"))
    code, _, err = _cli(capsys, "train", "--steps", "5", "--resume", "--out", str(run))
    _one_line_error(code, err, "checkpoint", "damaged", "without --resume")
    assert sorted(p.name for p in run.rglob("*")) == before


@pytest.mark.parametrize("args, needle", [(["--jobs", "0"], "--jobs"), (["--jobs", "-1"], "--jobs"),
                                          (["--seeds", "0"], "--seeds"), (["--seeds", "5000"], "more than 1000")])
def test_bad_run_ablation_options_exit_2(tmp_path, capsys, args, needle):
    code, _, err = _cli(capsys, "run-ablation", *args, "--out", str(tmp_path / "abl"))
    _one_line_error(code, err, needle)
    assert not (tmp_path / "abl").exists()


def test_run_ablation_refuses_a_run_directory_and_an_unwritable_out(tmp_path, capsys):
    run = tmp_path / "run"
    runrecord.write_config(run, model={}, data={}, train={})
    code, _, err = _cli(capsys, "run-ablation", "--out", str(run))
    _one_line_error(code, err, "run record")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    code, _, err = _cli(capsys, "run-ablation", "--out", "/proc/x")
    _one_line_error(code, err, "/proc/x")


def test_a_study_name_that_leaves_ablations_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("../../escaped", "/etc/escaped", ""):
        spec = tmp_path / "spec.toml"
        spec.write_text(_toml({**TINY, "study": {**TINY["study"], "name": name}}))
        code, _, err = _cli(capsys, "run-ablation", str(spec))
        _one_line_error(code, err, "plain name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_invalid_train_keys_in_a_spec_exit_2_instead_of_failing_every_run(tmp_path, capsys):
    for key, value in (("log_every", 0), ("log_every", "abc"), ("eval_batch_size", -5)):
        spec = tmp_path / "spec.toml"
        spec.write_text(_toml({**TINY, "train": {**TINY["train"], key: value}}))
        code, _, err = _cli(capsys, "run-ablation", str(spec), "--out", str(tmp_path / "abl"))
        _one_line_error(code, err, key)
    assert not (tmp_path / "abl").exists()


# -- reading damaged records --------------------------------------------------------------------------

def _whole_run(path, steps=20, status="completed"):
    files = record_files({"model": {}, "data": {}, "train": {"steps": steps}}, status=status, steps=steps)
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def _damage(run, how):
    metrics = run / "metrics.csv"
    if how == "truncated":
        metrics.write_bytes(metrics.read_bytes()[:-9])
    elif how == "rows missing":
        metrics.write_text("\n".join(metrics.read_text().splitlines()[:-1]) + "\n")
    elif how == "missing":
        metrics.unlink()
    elif how == "no rows":
        metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    elif how == "all NaN":
        lines = metrics.read_text().splitlines()
        metrics.write_text("\n".join([lines[0]] + [",".join([r.split(",")[0], "0.1", "nan"] + r.split(",")[3:])
                                                   for r in lines[1:]]) + "\n")
    elif how == "summary bad JSON":
        (run / "summary.json").write_text('{"status": "comp')
    elif how == "config missing":
        (run / "config.json").unlink()


DAMAGE = {"truncated": "cut off", "rows missing": "ends at step 10", "missing": "metrics.csv is missing",
          "no rows": "no rows", "all NaN": "no finite training loss", "summary bad JSON": "not valid JSON",
          "config missing": "config.json is missing"}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_record_problems_names_each_kind_of_damage(tmp_path, how):
    run = _whole_run(tmp_path / "run")
    assert runrecord.record_problems(run) == []
    _damage(run, how)
    problems = runrecord.record_problems(run)
    assert len(problems) >= 1 and DAMAGE[how] in problems[0], problems


@pytest.mark.parametrize("how", [h for h in DAMAGE if h != "config missing"])
def test_check_says_a_damaged_record_is_incomplete(tmp_path, capsys, how):
    run = _damage(_whole_run(tmp_path / "run"), how) or tmp_path / "run"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    code, out, err = _cli(capsys, "check", str(run))
    _one_line_error(code, err, DAMAGE[how])
    assert "nothing in this run looks wrong" not in out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before


def test_check_and_report_say_a_run_never_finished(tmp_path, capsys):
    run = _whole_run(tmp_path / "run")
    runrecord.write_summary(run, {"status": "running"})
    code, out, _ = _cli(capsys, "check", str(run))
    assert code == 0 and out.startswith(f"note: {runrecord.NEVER_FINISHED}")
    code, out, _ = _cli(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    assert code == 0 and runrecord.NEVER_FINISHED in (tmp_path / "report" / "index.html").read_text()


@pytest.mark.parametrize("what", ["config.json", "summary.json"])
def test_report_on_bad_json_names_the_file(tmp_path, capsys, what):
    run = _whole_run(tmp_path / "run")
    (run / what).write_text("{not json")
    code, _, err = _cli(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    _one_line_error(code, err, what)
    assert not (tmp_path / "report").exists()


def _study(tmp_path, run_ids=("0123456789abcdef",)):
    runs = []
    for i, rid in enumerate(run_ids):
        if studydir.plain_name(rid):
            _whole_run(tmp_path / "runs" / rid)
        runs.append({"id": rid, "variant": "paper", "base": "paper", "factor": None, "level": None, "seed": i,
                     "status": "completed"})
    studydir.write_manifest(tmp_path, {"study": "hand-built", "runs": runs, "corpus": {}, "totals": {}})
    return tmp_path


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_manifest_run_id_that_leaves_the_study_is_refused(tmp_path, capsys, command):
    secret = _whole_run(tmp_path / "outside")
    study = _study(tmp_path / "study", ("0123456789abcdef", "../../outside"))
    code, _, err = _cli(capsys, command, str(study))
    _one_line_error(code, err, "not a plain run id")
    assert not (secret / "report").exists() and not (study / "report").exists()


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_study_with_bad_json_is_one_line_naming_the_manifest(tmp_path, capsys, command):
    (tmp_path / "manifest.json").write_text('{"runs": [')
    code, _, err = _cli(capsys, command, str(tmp_path))
    _one_line_error(code, err, "manifest.json", "not valid JSON")


@pytest.mark.parametrize("make", ["missing", "empty", "study", "file"])
def test_load_run_on_no_record_is_one_line(tmp_path, make):
    import diagnose

    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "study":
        studydir.write_manifest(path, {"runs": []})
    elif make == "file":
        path.write_text("x")
    with pytest.raises(DiagnoseError) as err:
        diagnose.load_run(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_replace_dir_leaves_the_new_directory_whole_and_nothing_aside(tmp_path, monkeypatch, atomic_swap):
    from diagnose import files

    if not atomic_swap:  # systems without renameat2: the old one is renamed aside first
        monkeypatch.setattr(files, "_renameat2", None)
    for name, text in (("old", "before"), ("new", "after")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text(text)
    files.replace_dir(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old" / "x").read_text() == "after"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_a_study_from_before_spec_digests_resumes_as_the_same_study(tmp_path):
    from diagnose.ablation.sweep import run_sweep

    spec = build_spec(TINY)
    run_sweep(spec, tmp_path, InstantExecutor())
    manifest = studydir.read_manifest(tmp_path)
    del manifest["spec_digest"]
    studydir.write_manifest(tmp_path, manifest)
    again = InstantExecutor()
    run_sweep(spec, tmp_path, again)  # not refused as another study
    assert again.seen == [] and studydir.read_manifest(tmp_path)["spec_digest"] == spec.digest

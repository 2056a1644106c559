"""Nothing lost, nothing silently wrong: divergence without a NaN, --force cut off, resumed rows, studies.

Training here is tiny (a few dozen steps, in this process); sweeps use the executors
in study_fakes so that no worker process starts.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from diagnose import runrecord, studydir
from diagnose.memn2n.checkpoint import write_checkpoint
from diagnose.memn2n.spec import build_spec, load_spec
from diagnose.ablation.sweep import run_sweep
from diagnose.cli import main
from diagnose.divergence import loss_bound
from diagnose.errors import DiagnoseError
from diagnose.memn2n.train import train
from study_fakes import InProcessExecutor, InstantExecutor, record_files

TINY = {"study": {"name": "tiny", "bases": ["paper"], "seeds": 1}, "budget": {"steps": 20},
        "corpus": {"synthetic": "topic-copy-small"},
        "sizes": {"memory_size": 6, "embed_dim": 8, "hops": 2, "batch_size": 16},
        "train": {"log_every": 10, "eval_every": 20, "probe_every": 0, "eval_max_windows": 256,
                  "eval_at_start": False, "tensorboard": False, "jit_compile": False},
        "factors": {"output": []}}


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def _toml(raw: dict) -> str:
    return "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
                     for s, keys in raw.items()) + "\n"


def _tree(path):
    """Every file under path with its bytes: what 'nothing changed' compares."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- a huge step is a divergence, not a finding about tiny steps ----------------------------------------

@pytest.mark.parametrize("lr, variable", [(1e4, "loss"), (1e9, "grad_norm/global")])
def test_a_blown_up_loss_or_gradient_norm_ends_the_run_diverged(tmp_path, small_corpus, run_config, lr, variable):
    from diagnose.findings import check_run

    cfg = run_config("paper", model={"learning_rate": lr}, steps=40, log_every=5, eval_every=40)
    summary = train(cfg, tmp_path, corpus=small_corpus).summary
    assert summary["status"] == "diverged", summary
    assert summary["diverged_at"]["variable"] == variable and summary["steps"] == summary["diverged_at"]["step"]
    assert summary["steps"] < 40  # it stopped there
    assert f"at step {summary['steps']}" in summary["error"]
    ids = {f.id for f in check_run(tmp_path)}
    assert "diverged" in ids and "tiny-steps" not in ids


def test_the_loss_bound_is_far_above_what_training_reaches():
    assert loss_bound(None) == math.inf and loss_bound(1) == math.inf
    assert loss_bound(2) > -math.log(1e-7) * 4  # Keras' clip floor, even for two classes
    assert loss_bound(35) == pytest.approx(100 * math.log(35))


@pytest.fixture
def fresh_keras():
    """Keras numbers layer names per process ('dense_3'); leave the count as the next test expects it."""
    import keras

    yield
    keras.backend.clear_session()


def _keras_classifier(lr):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(160, 8)).astype("float32") * 10, rng.integers(0, 5, 160)


def test_monitor_calls_a_blown_up_keras_run_diverged(tmp_path, fresh_keras):
    import diagnose

    model, x, y = _keras_classifier(1e7)
    diagnose.instrument(model).fit(x, y, batch_size=16, epochs=3, verbose=0,
                                   callbacks=[diagnose.Monitor(tmp_path, log_every=2, tensorboard=False,
                                                               stop_on_divergence=True)])
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "diverged", summary
    assert summary["diverged_at"]["variable"] in ("loss", "grad_norm/global") or "non-finite" in summary["error"]
    assert summary["steps"] < 30  # stopped, not trained to the end


def test_monitor_refuses_an_existing_record_a_study_or_a_file(tmp_path):
    import diagnose

    run = tmp_path / "run"
    runrecord.write_config(run, model={}, data={}, train={})
    with pytest.raises(DiagnoseError, match="overwrite=True"):
        diagnose.Monitor(run)
    studydir.write_manifest(tmp_path / "study", {"runs": []})
    with pytest.raises(DiagnoseError, match="ablation directory"):
        diagnose.Monitor(tmp_path / "study")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiagnoseError, match="is a file"):
        diagnose.Monitor(tmp_path / "file")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_monitor_ends_with_the_last_step_once_and_overwrites_only_when_asked(tmp_path, fresh_keras):
    import diagnose

    model, x, y = _keras_classifier(0.01)
    wrapped = diagnose.instrument(model)
    # 10 batches an epoch, a row every 4: rows at 4 and 8, and 10 at the epoch's end, once.
    wrapped.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[diagnose.Monitor(tmp_path, log_every=4,
                                                                                        tensorboard=False)])
    metrics = runrecord.read_metrics(tmp_path)
    assert list(metrics["step"]) == [4, 8, 10]
    assert metrics["loss"].notna().all()
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0,
                callbacks=[diagnose.Monitor(tmp_path, log_every=4, tensorboard=False, overwrite=True)])
    assert list(runrecord.read_metrics(tmp_path)["step"]) == [4, 5]
    assert runrecord.record_problems(tmp_path) == []


def test_a_monitor_records_one_fit_and_refuses_a_second_without_overwrite(tmp_path, fresh_keras):
    import diagnose
    from diagnose.errors import DiagnoseError

    model, x, y = _keras_classifier(0.01)
    wrapped = diagnose.instrument(model)
    monitor = diagnose.Monitor(tmp_path, log_every=4, tensorboard=False)
    wrapped.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    first = runrecord.read_metrics(tmp_path)
    with pytest.raises(DiagnoseError, match="a Monitor records one fit"):
        wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    assert runrecord.read_metrics(tmp_path).equals(first)  # the first fit's record, whole
    again = diagnose.Monitor(tmp_path / "other", log_every=4, tensorboard=False, overwrite=True)
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[again])
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[again])  # asked: replaced
    assert runrecord.record_problems(tmp_path / "other") == []


# -- --force: the old record whole, or the new one saying it never finished ----------------------------

def test_force_cut_off_leaves_no_new_config_beside_old_metrics(tmp_path, small_corpus, run_config, monkeypatch,
                                                                capsys):
    from diagnose.memn2n import train as train_module

    out = tmp_path / "run"
    for path in (out, tmp_path / "other"):
        train(run_config("paper", steps=10, log_every=5, eval_every=10), path, corpus=small_corpus)
    before = _tree(tmp_path / "other")

    class Killed(BaseException):
        """Stands in for SIGKILL: nothing after it runs."""

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(train_module, "MemN2NSteps", killed)
    new_cfg = run_config("paper", model={"learning_rate": 0.02}, steps=10, log_every=5, eval_every=10)
    with pytest.raises(Killed):
        train(new_cfg, out, corpus=small_corpus)
    assert runrecord.read_config(out)["model"]["learning_rate"] == 0.02
    assert runrecord.read_summary(out)["status"] == "running"
    assert not (out / "metrics.csv").exists()  # the old run's metrics went with the old record
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left aside
    code, out_text, _ = _cli(capsys, "check", str(out))
    assert code == 0 and runrecord.NEVER_FINISHED in out_text
    # Cut off before the swap: the old record, untouched.
    monkeypatch.setattr(runrecord, "replace_dir", killed)
    with pytest.raises(Killed):
        train(new_cfg, tmp_path / "other", corpus=small_corpus)
    assert _tree(tmp_path / "other") == before  # whole, byte for byte


def test_force_refuses_to_replace_a_record_beside_other_files(tmp_path, small_corpus, run_config):
    out = tmp_path / "run"
    runrecord.write_config(out, model={}, data={}, train={})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DiagnoseError, match="notes.txt"):
        train(run_config("paper", steps=5, log_every=5), out, corpus=small_corpus)
    assert (out / "notes.txt").read_text() == "mine"


# -- resuming gives the rows of an uninterrupted run ------------------------------------------------

@pytest.mark.slow
def test_a_resumed_run_has_no_extra_probe_where_its_first_piece_ended(tmp_path, small_corpus, run_config):
    def cfg(steps):  # probes at 15 and 30; the first piece ends at 10, off the probe schedule
        return run_config("paper", seed=2, steps=steps, log_every=5, eval_every=10, eval_max_windows=128,
                          probe_every=15, checkpoint=True)

    import shutil

    train(cfg(30), tmp_path / "straight", corpus=small_corpus)
    train(cfg(10), tmp_path / "pieces", corpus=small_corpus)
    first = runrecord.read_metrics(tmp_path / "pieces")
    shutil.copytree(tmp_path / "pieces", tmp_path / "same")
    train(cfg(10), tmp_path / "same", corpus=small_corpus, resume=True)  # no more budget: its end probe stays
    assert runrecord.read_metrics(tmp_path / "same").equals(first) and first["probe_loss_real"].notna().iloc[-1]
    train(cfg(30), tmp_path / "pieces", corpus=small_corpus, resume=True)
    straight, pieces = runrecord.read_metrics(tmp_path / "straight"), runrecord.read_metrics(tmp_path / "pieces")
    assert list(straight.loc[straight["probe_loss_real"].notna(), "step"]) == [15, 30]
    assert list(pieces.columns) == list(straight.columns)
    np.testing.assert_array_equal(pieces.to_numpy(), straight.to_numpy())


# -- files get the user's umask -----------------------------------------------------------------------

def test_record_files_and_the_report_follow_the_umask(tmp_path):
    from diagnose.reports.html import build_report

    old = os.umask(0o027)
    try:
        run = tmp_path / "run"
        runrecord.begin_record(run, model={}, data={}, train={})
        runrecord.write_metrics(run, [{"step": 1, "loss": 1.0}])
        runrecord.write_summary(run, {"status": "completed", "steps": 1})
        write_checkpoint(run, {"step": 1}, {"x": np.zeros(2)})
        runrecord.begin_record(run, model={"again": 1}, data={}, train={})  # replaced aside, then swapped in
        runrecord.write_metrics(run, [{"step": 1, "loss": 1.0}])
        runrecord.write_summary(run, {"status": "completed", "steps": 1})
        index = build_report([run], tmp_path / "report")
        for path in [run, *run.rglob("*"), index]:
            mode = path.stat().st_mode & 0o777
            assert mode == (0o750 if path.is_dir() else 0o640), (path, oct(mode))
    finally:
        os.umask(old)


# -- studies: damaged runs redone, another spec refused, failures counted -----------------------------

@pytest.mark.slow  # a study run twice and reported, ~7 s under load
def test_a_damaged_run_in_a_finished_study_is_redone_and_reported(tmp_path, capsys, monkeypatch):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(_toml(TINY))
    executor = InProcessExecutor()
    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: executor)
    out = tmp_path / "abl"
    code, _, err = _cli(capsys, "run-ablation", str(spec_file), "--out", str(out), "--quiet", "--no-report",
                        "--no-follow-up")
    assert code == 0, err
    ids = [r["id"] for r in studydir.read_manifest(out)["runs"]]
    assert len(ids) == 2 and executor.seen == ids
    whole = {rid: _tree(out / "runs" / rid) for rid in ids}
    metrics = out / "runs" / ids[0] / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[:-20])  # truncated
    code, text, _ = _cli(capsys, "check", str(out))
    assert code == 0 and "1 damaged" in text and f"diagnose run-ablation --out {out}" in text
    assert _tree(out / "runs" / ids[0])["metrics.csv"] == metrics.read_bytes()  # check wrote nothing
    code, _, _ = _cli(capsys, "report", str(out))
    assert code == 0 and "cut off" in (out / "report" / "index.html").read_text()
    executor.seen.clear()
    code, _, err = _cli(capsys, "run-ablation", str(spec_file), "--out", str(out), "--quiet", "--no-report",
                        "--no-follow-up")
    assert code == 0, err
    assert executor.seen == [ids[0]]  # only the damaged run trained again...
    for rid in ids:  # ...to the same record: same config and seed, same metrics
        assert _tree(out / "runs" / rid)["metrics.csv"] == whole[rid]["metrics.csv"]


def test_another_spec_into_a_study_is_refused_and_force_replaces_it(tmp_path, capsys, monkeypatch):
    executor = InstantExecutor()
    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: executor)
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(_toml({**TINY, "study": {**TINY["study"], "seeds": 2}}))
    b.write_text(_toml({**TINY, "study": {**TINY["study"], "seeds": 3}}))
    out = tmp_path / "abl"
    assert _cli(capsys, "run-ablation", str(a), "--out", str(out), "--quiet", "--no-report", "--no-follow-up")[0] == 0
    first = _tree(out)
    code, _, err = _cli(capsys, "run-ablation", str(b), "--out", str(out), "--quiet", "--no-report", "--no-follow-up")
    assert code == 2 and "--force" in err and "another --out" in err and len(err.strip().splitlines()) == 1
    assert _tree(out) == first  # nothing touched
    executor.seen.clear()
    code, _, err = _cli(capsys, "run-ablation", str(b), "--out", str(out), "--quiet", "--no-report", "--force",
                        "--no-follow-up")
    assert code == 0, err
    manifest = studydir.read_manifest(out)
    assert manifest["spec"]["study"]["seeds"] == 3 and len(manifest["runs"]) == 6
    assert len(executor.seen) == 2  # the third seed's runs; the four both specs share were kept
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r["id"] for r in manifest["runs"])
    # No SPEC: the study in --out goes on with its own spec, whatever the default study is.
    executor.seen.clear()
    code, _, err = _cli(capsys, "run-ablation", "--out", str(out), "--quiet", "--no-report")
    assert code == 0 and executor.seen == [], err


def test_a_sweep_with_failed_runs_exits_1_saying_how_many_and_where(tmp_path, capsys, monkeypatch):
    def answer(task):
        if task["config"]["model"]["output"] == "relu":
            return {"run_id": task["run_id"], "status": "failed", "error": "RuntimeError: boom", "wall_time_s": 0.1,
                    "files": {}}
        if task["config"]["train"]["seed"] == 1:  # says completed, but its record lacks config.json
            files = record_files(task["config"])
            del files["config.json"]
            return {"run_id": task["run_id"], "status": "completed", "error": None, "wall_time_s": 0.1,
                    "files": files}
        return None

    monkeypatch.setattr("diagnose.ablation.executors.make_executor", lambda *a, **k: InstantExecutor(answer))
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(_toml({**TINY, "study": {**TINY["study"], "seeds": 2}}))
    out = tmp_path / "abl"
    code, _, err = _cli(capsys, "run-ablation", str(spec_file), "--out", str(out), "--quiet", "--no-report",
                        "--no-follow-up")
    assert code == 1
    assert "3 of 4 runs failed (first: " in err and "manifest.json" in err
    by_id = {r["id"]: r for r in studydir.read_manifest(out)["runs"]}
    incomplete = [r for r in by_id.values() if "incomplete" in (r["error"] or "")]
    assert len(incomplete) == 1 and incomplete[0]["status"] == "failed"
    summary = runrecord.read_summary(out / "runs" / incomplete[0]["id"])
    assert summary["status"] == "failed"  # never a completed record without its config


def test_check_on_a_study_trains_nothing_writes_nothing_and_names_the_follow_up_command(tmp_path, capsys):
    losses = {"as-posted": 5.0, "paper": 1.0, "as-posted | output=softmax": 3.3, "as-posted | loss_reduction=sum": 3.2}
    runs = []
    for variant, loss in losses.items():
        base, _, switch = variant.partition(" | ")
        for seed in range(3):
            rid = f"{len(runs):016x}"
            files = record_files({"model": {}, "data": {}, "train": {"steps": 20}}, loss=loss + 0.05 * seed)
            (tmp_path / "runs" / rid).mkdir(parents=True)
            for name, data in files.items():
                (tmp_path / "runs" / rid / name).write_bytes(data)
            runs.append({"id": rid, "variant": variant, "base": base, "seed": seed, "status": "completed",
                         "factor": switch.split("=")[0] or None, "level": switch.split("=")[1] if switch else None,
                         "level_of": ["paper"] if switch else [], "switches": [switch.split("=")] if switch else []})
    studydir.write_manifest(tmp_path, {"study": "hand-built", "spec": {}, "runs": runs, "corpus": {}})
    before = _tree(tmp_path)
    code, out, err = _cli(capsys, "check", str(tmp_path))
    assert code == 0, err
    assert "follow-up" in out and f"run them with: diagnose run-ablation --out {tmp_path}" in out
    assert "loss_reduction=sum + output=softmax" in out or "output=softmax + loss_reduction=sum" in out
    code, out, err = _cli(capsys, "check", "--json", str(tmp_path))
    assert code == 0 and json.loads(out)["smallest_fix"]["reaches"] is False and "follow-up" in err
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "runs"]


def test_the_manifest_is_rewritten_a_bounded_number_of_times(tmp_path, monkeypatch):
    writes = []
    real = studydir.write_manifest
    monkeypatch.setattr(studydir, "write_manifest", lambda out, m: (writes.append(len(m["runs"])), real(out, m)))
    spec = build_spec({**TINY, "study": {**TINY["study"], "seeds": 300}, "factors": {}})
    manifest = run_sweep(spec, tmp_path / "abl", InstantExecutor())
    assert manifest["totals"]["completed"] == 300
    # 300 runs: a write every 3 finished runs (1% of the study), plus the first and the last.
    assert len(writes) == 102
    assert studydir.read_manifest(tmp_path / "abl")["totals"]["completed"] == 300


@pytest.mark.slow
def test_a_second_run_ablation_on_a_locked_study_exits_2_naming_the_holder(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(_toml(TINY))
    out = tmp_path / "abl"
    with studydir.StudyLock(out):
        proc = subprocess.run([sys.executable, "-m", "diagnose.cli", "run-ablation", str(spec_file), "--out",
                               str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "another --out" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_spec_of_a_study_resolves_to_the_same_digest(tmp_path):
    spec = build_spec(TINY)
    again = load_spec(None, raw=spec.raw)
    assert again.digest == spec.digest and again.raw == spec.raw
    assert load_spec(None, {"study": {"seeds": 2}}, raw=spec.raw).digest != spec.digest


def test_force_on_a_damaged_manifest_keeps_every_run_and_retrains_none(tmp_path):
    """A study's manifest not JSON: --force rebuilds it from the runs there, the seeds follow-ups added too."""
    from diagnose.ablation.seeding import SeedPlan

    spec = build_spec(TINY)
    variant = spec.variants()[0][0].name
    study = tmp_path / "abl"
    run_sweep(spec, study, InstantExecutor(), plan=SeedPlan(counts={variant: 4}))  # two seeds added by a follow-up
    runs = sorted(p.name for p in (study / studydir.RUNS).iterdir())
    (study / studydir.MANIFEST).write_text('{"runs": [')
    rebuilt = InstantExecutor()
    run_sweep(spec, study, rebuilt, force=True)
    assert rebuilt.seen == [] and sorted(p.name for p in (study / studydir.RUNS).iterdir()) == runs
    again = InstantExecutor()  # the follow-up asks for its seeds again: there already
    run_sweep(spec, study, again, plan=SeedPlan(counts={variant: 4}))
    assert again.seen == [] and sorted(r["id"] for r in studydir.read_manifest(study)["runs"]) == runs

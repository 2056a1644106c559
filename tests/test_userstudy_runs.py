"""Studies and proofs of a user's own tiny Keras model, trained end to end (a few seconds a run).

The model and data are tests/userstudy_models.py's; runs train in this process
(the inline executor) except where a spawned worker is the point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import diagnose
from diagnose import runrecord, studydir
from diagnose.ablation.executors import InlineExecutor, LocalExecutor
from diagnose.ablation.study import run_study
from diagnose.findings.verdict import format_verdict
from diagnose.findings.verdict_types import SeedBlind, read_verdict
from diagnose.cli import main
from diagnose.userstudy.prove import read_proof
from diagnose.userstudy.spec import build_keras_spec

BUILDER, DATA = "userstudy_models:build", "userstudy_models:data"
FIT = {"epochs": 2, "batch_size": 32}
MONITOR = {"log_every": 4}


class Counting(InlineExecutor):
    """The inline executor, counting the runs it trains."""

    def __init__(self):
        self.trained = 0

    def run(self, tasks):
        for result in super().run(tasks):
            self.trained += 1
            yield result


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.slow
def test_study_explains_the_gap_between_two_bases_and_resumes_without_training(tmp_path):
    raw = {"study": {"name": "outputs", "builder": BUILDER, "data": DATA, "seeds": 2, "max_seeds": 2,
                     "reference": "fixed"},  # max_seeds = seeds: no seeds added (the next test adds them)
           "bases": {"posted": {"output": "relu"}, "fixed": {"output": "softmax"}},
           "factors": {"output": ["softmax", "relu"]}, "fit": FIT, "monitor": MONITOR}
    spec = build_keras_spec(raw)
    manifest, verdict = run_study(spec, tmp_path / "s", LocalExecutor(1))  # a spawned worker trains them
    # Each switch makes one base the other, so it shares that base's runs: 4 runs for 8 entries.
    assert len(list((tmp_path / "s" / studydir.RUNS).iterdir())) == 4
    assert manifest["faulty"] == "posted" and manifest["reference"] == "fixed"
    assert {e["status"] for e in manifest["runs"]} == {"completed"} and len(manifest["runs"]) == 8
    assert verdict.faulty == "posted" and verdict.gap.mean > 0  # a ReLU output ends higher
    assert [f.factor for f in verdict.factors] == ["output"]
    assert verdict.factors[0].share_closed == pytest.approx(1.0)
    again = Counting()
    run_study(spec, tmp_path / "s", again)
    assert again.trained == 0
    run = studydir.run_path(tmp_path / "s", manifest["runs"][0]["id"])
    config = runrecord.read_config(run)
    assert config["rebuild"]["builder"] == BUILDER and config["rebuild"]["settings"] == {"output": "relu"}
    assert runrecord.read_summary(run)["final"]["val_loss"] > 0


@pytest.mark.slow
def test_a_user_study_adds_seeds_to_an_inconclusive_comparison_and_stops_at_its_cap(tmp_path):
    # Adam at 0.003 instead of 0.01 ends ~0.2 nats higher after one epoch, the two seeds
    # differing by ~0.05: an interval at two seeds (t = 12.7) includes zero, one seed more may settle it.
    result = diagnose.study(BUILDER, DATA, factors={"lr": [0.003]}, seeds=2, max_seeds=3,
                            fit={"epochs": 1, "batch_size": 32}, monitor=MONITOR, out=tmp_path / "s",
                            executor="inline")
    verdict = result.verdict
    assert [s.runs for s in verdict.sweeps] == [4, 2]  # the spec's 2 seeds, then seed 2 for both variants
    assert verdict.follow_up_rounds == 1  # at the cap, no round more
    assert result.manifest["adaptive"]["seeds"]["counts"] == {"model": 3, "model | lr=0.003": 3}
    (effect,) = verdict.comparisons
    assert effect.n == 3 and verdict.max_seeds == 3 and verdict.seeds.max == 3
    assert len(list((tmp_path / "s" / studydir.RUNS).iterdir())) == 6
    assert effect.effect.confidence > 0.95  # the interval of a comparison read twice is widened


@pytest.mark.slow
def test_initial_weights_the_seed_does_not_change_are_named_in_the_verdict(tmp_path):
    # The hidden kernel comes from an initializer made at import: every seed starts it
    # from the same values. The biases start at zeros (no seed draws them) and the output
    # kernel from the run's seed: neither is named.
    fit = {"epochs": 1, "batch_size": 64}
    blind = diagnose.study("userstudy_models:build_fixed_init", DATA, factors={"lr": [0.003]}, seeds=2, max_seeds=2,
                           fit=fit, monitor=MONITOR, out=tmp_path / "blind", executor="inline")
    assert blind.verdict.seed_blind == SeedBlind(("dense",), 2, ("model", "model | lr=0.003"), 2)
    text = format_verdict(blind.verdict)
    assert "seeds do not change the initial values of 1 of 2 variables that start non-constant (dense)" in text
    seeded = diagnose.study(BUILDER, DATA, factors={"lr": [0.003]}, seeds=2, max_seeds=2, fit=fit, monitor=MONITOR,
                            out=tmp_path / "seeded", executor="inline")
    assert seeded.verdict.seed_blind is None
    assert "seeds do not change" not in format_verdict(seeded.verdict)


@pytest.mark.slow
def test_a_regressions_verdict_and_report_speak_in_its_losss_units_not_nats(tmp_path):
    from diagnose.report_data import load

    result = diagnose.study("userstudy_models:build_regression", "userstudy_models:data_regression",
                            factors={"lr": [0.003]}, seeds=2, max_seeds=2, fit={"epochs": 1, "batch_size": 64},
                            monitor=MONITOR, out=tmp_path / "reg", executor="inline")
    verdict = result.verdict
    assert verdict.unit == "mse"
    text = format_verdict(verdict)
    assert "nats" not in text and "ln V" not in text
    assert " mse against model (" in text and "(mse per example)" in text
    data = load([tmp_path / "reg"])
    assert data.unit == "mse" and data.headline.unit == "mse"
    # A classifier under a cross-entropy is in nats, per example (not per token as the MemN2N).
    clf = diagnose.study(BUILDER, DATA, factors={"lr": [0.003]}, seeds=2, max_seeds=2,
                         fit={"epochs": 1, "batch_size": 64}, monitor=MONITOR, out=tmp_path / "clf", executor="inline")
    assert clf.verdict.unit == "nats" and "(nats per example)" in clf.verdict.method


@pytest.mark.slow
def test_a_seed_means_the_same_run_twice(tmp_path):
    raw = {"study": {"name": "one", "builder": BUILDER, "data": DATA, "seeds": [3]}, "fit": {"epochs": 1},
           "monitor": MONITOR}
    spec = build_keras_spec(raw)
    result = diagnose.study(BUILDER, DATA, seeds=[3], fit={"epochs": 1}, monitor=MONITOR, name="one",
                            out=tmp_path / "a", executor="inline")  # the same study from Python
    assert result.verdict.mode == "effects" and result.dir == tmp_path / "a"
    run_study(spec, tmp_path / "b", InlineExecutor())
    (task,) = spec.tasks()
    a, b = (studydir.run_path(tmp_path / d, task.run_id) / runrecord.METRICS for d in "ab")
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) > 2


@pytest.mark.slow
def test_a_run_restarted_on_a_kept_model_writes_the_record_it_writes_alone(tmp_path):
    from diagnose.userstudy import worker

    # Dropout and Adam: seed states and optimizer slots must come from the run's own build.
    raw = {"study": {"name": "kept", "builder": BUILDER, "data": DATA, "seeds": [0, 1]},
           "bases": {"mine": {"dropout": 0.3}}, "fit": {"epochs": 2}, "monitor": MONITOR}
    first, second = build_keras_spec(raw).tasks()
    assert first.group == second.group and first.run_id != second.run_id
    worker.train_task(first.config.to_dict(), tmp_path / "first")
    kept = worker._MODELS[first.group][0]
    worker.train_task(second.config.to_dict(), tmp_path / "restarted")
    assert worker._MODELS[first.group][0] is kept  # trained on the kept model, not a new one
    worker.train_task(second.config.to_dict(), tmp_path / "alone", reuse=False)
    restarted, alone = ((tmp_path / d / runrecord.METRICS).read_text() for d in ("restarted", "alone"))
    assert restarted == alone and len(alone.splitlines()) > 2
    summaries = [runrecord.read_summary(tmp_path / d) for d in ("restarted", "alone")]
    assert [(x["final"], x["baselines"], x["status"]) for x in summaries][0] == \
        [(x["final"], x["baselines"], x["status"]) for x in summaries][1]
    assert restarted != (tmp_path / "first" / runrecord.METRICS).read_text()  # another seed, another run


@pytest.fixture(scope="module")
def proof(tmp_path_factory):
    """Features 100x too large into SGD: a proof of the rules' findings, and of a step size too small."""
    out = tmp_path_factory.mktemp("proof") / "scaled"
    return diagnose.prove(BUILDER, DATA, {"scale": 100, "optimizer": "sgd", "lr": 0.1}, fit=FIT, monitor=MONITOR,
                          seeds=2, max_seeds=2, out=out, jobs=1, also=("tiny-steps",))


@pytest.mark.slow
def test_the_proof_proves_the_right_cause_and_refutes_a_wrong_one(proof):
    assert proof.status("unscaled-inputs") == "proven"
    assert proof.status("tiny-steps") == "refuted"
    right = next(f for f in proof.findings if f["id"] == "unscaled-inputs")
    assert right["effect"] < -proof.proof["margin"] and right["ci"][1] < 0
    assert proof.status("ignores-input") in (None, "untested")  # a symptom without a mechanical fix
    verdict = read_verdict(proof.dir)
    assert verdict.mode == "effects" and verdict.proof["findings"] == proof.findings
    assert "unscaled-inputs [root-cause]: PROVEN" in str(proof)


@pytest.mark.slow
def test_a_fault_the_loss_cannot_show_is_proven_by_the_validation_error(tmp_path):
    # Keras' binary cross-entropy reads the logit under a one-unit softmax, so the loss
    # trains as the sigmoid's would while every prediction is 1.0.
    proof = diagnose.prove("userstudy_models:build_binary", "userstudy_models:data_binary", {"output": "softmax"},
                           fit=FIT, monitor=MONITOR, seeds=2, max_seeds=2, out=tmp_path / "p", jobs=1)
    entry = next(f for f in proof.findings if f["id"] == "single-unit-softmax")
    assert entry["status"] == "proven" and entry["measure"] == "validation error"
    assert entry["base_value"] > 0.4 and entry["effect"] < -entry["margin"]  # always 1.0: the negatives all wrong
    assert "moves the validation error by" in str(proof)


@pytest.mark.slow
def test_a_fault_of_one_output_of_several_is_proven_on_that_output(tmp_path):
    # Categorical cross-entropy over the multi-hot tags head; the class head beside it is healthy.
    proof = diagnose.prove("userstudy_models:build_two_heads", "userstudy_models:data_two_heads",
                           {"tags_loss": "categorical_crossentropy", "tags_activation": "softmax"},
                           fit={"epochs": 4, "batch_size": 32}, monitor=MONITOR, seeds=3, max_seeds=3,
                           out=tmp_path / "p", jobs=1)  # (2 seeds: an interval on one degree of freedom)
    entry = next(f for f in proof.findings if f["id"] == "loss-target-mismatch")
    assert entry["output"] == "tags" and entry["change"]["op"] == "all"
    assert all(c["output"] == "tags" for c in entry["change"]["changes"])
    assert entry["status"] == "proven" and entry["measure"] == "task error on the probe batch of output 'tags'"


@pytest.mark.slow
def test_check_and_report_show_the_proof(proof, capsys, tmp_path):
    run = Path(proof.proof["run"])
    assert read_proof(run) == proof.proof  # the proved run, inside its proof study
    code, out, _ = _cli(capsys, "check", str(run))
    assert code == 0 and "proof: PROVEN" in out and "[not found, tested on request] tiny-steps" in out
    code, out, _ = _cli(capsys, "check", str(proof.dir), "--json")
    assert code == 0 and json.loads(out)["proof"]["counts"]["proven"] >= 1
    code, out, _ = _cli(capsys, "report", str(proof.dir), "--out", str(tmp_path / "r"))
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert code == 0 and "Proof of the findings" in html and "proof-refuted" in html


@pytest.mark.slow
def test_a_monitor_run_with_rebuild_is_proven_from_the_command_line(tmp_path, capsys):
    import keras

    from userstudy_models import build, data

    keras.utils.set_random_seed(0)
    (x, y), valid = data({})
    model = diagnose.instrument(build({}))
    model.fit(x, y, validation_data=valid, epochs=1, batch_size=32, verbose=0,
              callbacks=[diagnose.Monitor(tmp_path / "run", tensorboard=False,
                                          rebuild={"builder": build, "data": data, "fit": {"epochs": 1}})])
    code, out, err = _cli(capsys, "check", str(tmp_path / "run"), "--prove", "--seeds", "2", "--max-seeds", "3",
                          "--jobs", "1", "--also", "huge-steps")
    assert code == 0, err
    proof = read_proof(tmp_path / "run")
    assert studydir.is_study_dir(tmp_path / "run" / runrecord.PROOF)
    assert [f["id"] for f in proof["findings"]][-1] == "huge-steps" and "proof:" in out
    assert all(f.get("n", 2) <= 3 for f in proof["findings"])  # added seeds stop at --max-seeds
    # Proving again resumes: every run is there, nothing trains, the same proof comes back.
    code, again, _ = _cli(capsys, "check", str(tmp_path / "run"), "--prove", "--seeds", "2", "--max-seeds", "3",
                          "--jobs", "1", "--also", "huge-steps")
    assert code == 0 and read_proof(tmp_path / "run") == proof


def test_proving_a_run_that_cannot_be_rebuilt_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    runrecord.begin_record(run, model={"kind": "keras", "layers": []}, data={}, train={})
    runrecord.write_summary(run, {"status": "failed", "error": "x"})
    code, _, err = _cli(capsys, "check", str(run), "--prove")
    assert code == 2 and "cannot be proven" in err and "rebuild=" in err and len(err.strip().splitlines()) == 1
    assert not (run / runrecord.PROOF).exists()


def test_a_bad_user_spec_is_one_line_with_exit_2(tmp_path, capsys):
    spec = tmp_path / "mine.toml"
    spec.write_text(f'[study]\nbuilder = "{BUILDER}"\ndata = "{DATA}"\n[fit]\nepochs = -1\n', encoding="utf-8")
    code, _, err = _cli(capsys, "run-ablation", str(spec), "--out", str(tmp_path / "s"))
    assert code == 2 and "[fit] epochs must be a positive integer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
    spec.write_text(f'[study]\nbuilder = "{BUILDER}"\ndata = "userstudy_models:data_without_validation"\n'
                    '[fit]\nepochs = 1\n', encoding="utf-8")
    code, out, err = _cli(capsys, "run-ablation", str(spec), "--out", str(tmp_path / "s"), "--executor", "inline",
                          "--seeds", "1", "--no-report", "--quiet")
    assert code == 1 and "gave no validation data" in err  # every run failed, saying why

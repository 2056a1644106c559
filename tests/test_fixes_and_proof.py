"""Mechanical fixes resolved on hand-built records, and the proven/refuted/inconclusive judgement. No training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from diagnose.findings import RULES, RunView, spec_of
from diagnose.findings import thresholds as T
from diagnose.findings.fixes import FIXES, LR_FACTOR, LR_FACTOR_MAX, remedy_for
from diagnose.findings.proof import REFUTE_MARGIN, findings_with_proof, format_proof, judge, proof_of
from diagnose.findings.verdict_types import Verdict
from diagnose.userstudy.transforms import OPS

VARIABLES = {"dense": [8, 16], "dense/bias": [16], "out": [16, 3], "out/bias": [3]}


def _layers(output="softmax", hidden_init="GlorotUniform", hidden_activation="relu", extra=()):
    return [{"class": "InputLayer", "name": "input", "config": {}, "inbound": []},
            {"class": "Dense", "name": "dense", "config": {"activation": hidden_activation,
                                                           "kernel_initializer": hidden_init},
             "inbound": [["input"]]},
            *extra,
            {"class": "Dense", "name": "out", "config": {"activation": output}, "inbound": [["dense"]]}]


def _view(ratio=1e-3, lr=0.01, layers=None, summary=None, n=20, **columns) -> RunView:
    step = np.arange(1, n + 1) * 10
    cols = {"step": step, "loss": np.linspace(1.1, 0.9, n), "grad_norm/global": np.linspace(0.5, 5.0, n)}
    for name in VARIABLES:
        cols[f"update_ratio/{name}"] = ratio(step) if callable(ratio) else np.full(n, ratio)
    cols.update(columns)
    model = {"kind": "keras", "layers": layers or _layers(), "outputs": ["out"], "loss": "categorical_crossentropy"}
    return RunView({"model": model, "data": {}, "train": {"optimizer": {"learning_rate": lr}}},
                   {"status": "completed", "variables": VARIABLES, **(summary or {})}, pd.DataFrame(cols))


def test_every_fix_answers_a_declared_finding_with_a_change_the_transforms_know():
    ids = {r.spec.id for r in RULES}
    assert set(FIXES) <= ids
    for finding, declared in FIXES.items():
        assert declared.what and spec_of(finding) is not None
    # Each op a fix can produce exists (one view per fix that makes it apply).
    views = {"relu-output-crossentropy": _view(layers=_layers(output="relu")),
             "constant-init": _view(layers=_layers(hidden_init="Constant(0.05)")),
             "vanishing-gradients": _view(layers=_layers(hidden_activation="sigmoid")),
             "unmasked-padding": _view(layers=_layers(extra=[{"class": "Embedding", "name": "emb", "config": {}}])),
             "temporal-encoding-dominates": _view(**{"rms/pos/position": np.full(20, 10.0),
                                                     "rms/pos/content": np.full(20, 0.03)}),
             "unscaled-inputs": _view(**{"input_rms/x": np.full(20, 120.0)}),
             "loss-target-mismatch": _view(summary={"contract": {
                 "loss": {"kind": "categorical"}, "targets": {"structure": "multi-hot"},
                 "output": {"activation": "softmax"}}}),
             "batchnorm-small-batch": _view(summary={"contract": {"batch_size": 1}}),
             "excessive-dropout": _view(layers=_layers(extra=[{"class": "Dropout", "name": "drop",
                                                               "config": {"rate": 0.9}}])),
             "frozen-layers": _view(layers=_layers(extra=[{"class": "Dense", "name": "frozen", "config": {},
                                                           "frozen_params": 40}])),
             "unadapted-preprocessing": _view(layers=_layers(extra=[{"class": "Normalization", "name": "norm",
                                                                     "adapted": False}])),
             "missing-activation": _view(layers=_layers(hidden_activation="linear"))}
    for finding in FIXES:
        remedy = remedy_for(finding, views.get(finding, _view()))
        assert remedy is not None, finding
        assert remedy.change["op"] in OPS and remedy.label and remedy.text
        for part in remedy.change.get("changes", []):  # a fix in several parts: each part an op too
            assert part["op"] in OPS, finding


@pytest.mark.parametrize("ratio, factor", [(1e-5, 100.0), (3e-8, LR_FACTOR_MAX), (5e-4, LR_FACTOR)])
def test_tiny_steps_raises_the_rate_by_the_power_of_ten_the_ratios_suggest(ratio, factor):
    remedy = remedy_for("tiny-steps", _view(ratio=ratio, lr=0.002))
    assert remedy.change == {"op": "learning_rate", "factor": factor}
    assert f"{0.002 * factor:g}" in remedy.text


def test_huge_steps_lowers_the_rate_from_the_late_ratios_or_the_blow_up_peak():
    thrashing = remedy_for("huge-steps", _view(ratio=0.5))
    assert thrashing.change == {"op": "learning_rate", "factor": 1 / LR_FACTOR_MAX}
    # A network the blow-up killed logs ratios of 0 late: the early peak says by how much.
    dead = remedy_for("huge-steps", _view(ratio=lambda s: np.where(s <= 20, 0.08, 0.0)))
    assert dead.change == {"op": "learning_rate", "factor": pytest.approx(1 / 100)}
    # The symptoms of a rate too large share huge-steps' fix, so their runs too.
    assert remedy_for("dead-network", _view(ratio=0.5)).change == thrashing.change
    assert remedy_for("diverged", _view(ratio=0.5)).change == thrashing.change


def test_diverged_at_the_first_step_has_no_step_size_fix():
    first = _view(summary={"status": "diverged", "diverged_at": {"step": 1, "variable": "loss"}})
    assert remedy_for("diverged", first) is None


def test_output_fixes_follow_the_output_layer():
    relu = remedy_for("relu-output-crossentropy", _view(layers=_layers(output="relu")))
    assert relu.change == {"op": "output_activation", "activation": "softmax"}
    linear = remedy_for("relu-output-crossentropy", _view(layers=_layers(output="linear")))
    assert linear.change == {"op": "from_logits"}
    assert remedy_for("single-unit-softmax", _view()).change == {"op": "output_activation", "activation": "sigmoid"}


def rule_of(rule_id: str):
    return next(r for r in RULES if r.spec.id == rule_id)


def test_fixes_name_what_they_change_from_the_record():
    init = remedy_for("constant-init", _view(layers=_layers(hidden_init="Zeros")))
    assert init.change == {"op": "reinit_kernels", "layers": ["dense"]}
    assert remedy_for("constant-init", _view()) is None  # nothing constant: the fix does not apply
    table = remedy_for("temporal-encoding-dominates", _view(**{
        "rms/tok/position": np.full(20, 1.0), "rms/tok/content": np.linspace(0.029, 0.06, 20)}))
    assert table.change == {"op": "reinit_table", "sites": ["tok"], "stddev": 0.029}  # the content's first scale
    # A run that blew up within its first row: both terms scaled alike by then (a ratio of 2), while
    # its first step, as built, had a table of ones over content at 0.029.
    blown = {"rms/tok/position": np.full(20, 3.0), "rms/tok/content": np.full(20, 1.5),
             "loss": np.full(20, 4e4)}
    at_start = {"at_start": {"rms/tok/position": 1.0, "rms/tok/content": 0.029}}
    assert rule_of("temporal-encoding-dominates")(_view(**blown)) is None
    found = rule_of("temporal-encoding-dominates")(_view(summary={**at_start, "baselines": {"ln_vocab": 3.7}},
                                                         **blown))
    assert found is not None and any("(first step)" in e.metric for e in found.evidence)
    assert remedy_for("temporal-encoding-dominates", _view(summary={**at_start, "baselines": {"ln_vocab": 3.7}},
                                                           **blown)).change["stddev"] == 0.029
    inputs = remedy_for("unscaled-inputs", _view(**{"input_rms/pixels": np.full(20, 130.0),
                                                    "input_rms/ids": np.full(20, 3.0)}))
    assert inputs.change == {"op": "standardize_inputs", "inputs": ["pixels"]}
    clip = remedy_for("exploding-gradients", _view())
    assert clip.change["op"] == "global_clipnorm" and clip.change["norm"] == pytest.approx(0.974, abs=0.01)
    assert remedy_for("vanishing-gradients", _view()) is None  # ReLU already


def test_no_fix_for_a_run_of_the_built_in_model_or_a_finding_without_one():
    memn2n = RunView({"model": {"output": "relu"}, "data": {}, "train": {}}, {}, pd.DataFrame({"step": [1]}))
    assert remedy_for("relu-output-crossentropy", memn2n) is None
    assert remedy_for("ignores-input", _view()) is None and "ignores-input" not in FIXES


@pytest.mark.parametrize("effect, ci, status", [
    (-0.5, (-0.8, -0.2), "proven"),        # below zero, by more than the margin
    (-0.03, (-0.04, -0.02), "refuted"),    # real but far smaller than the margin
    (0.4, (0.1, 0.7), "refuted"),          # makes it worse
    (0.0, (-0.04, 0.04), "refuted"),       # nothing, precisely
    (-0.3, (-0.9, 0.3), "inconclusive"),   # could be anything
    (-0.04, (-0.07, -0.01), "inconclusive"),  # below zero, but the mean is short of the margin
    (-0.5, (None, None), "inconclusive"),  # one seed: no interval
])
def test_judge_is_three_way_with_a_practical_margin(effect, ci, status):
    assert judge(effect, ci, margin=0.05) == status


def _verdict():
    return Verdict.from_json({"mode": "effects", "means": {"run": 1.0, "run | huge-steps=lr x0.01": 0.4},
            "effects": [{"variant": "run | huge-steps=lr x0.01", "effect": -0.6, "ci": [-0.8, -0.4], "n": 3,
                         "mean_loss": 0.4, "diverged": 0, "runs": ["a", "b", "c"]},
                        {"variant": "run | tiny-steps=lr x10", "effect": 0.2, "ci": [0.01, 0.39], "n": 3,
                         "mean_loss": 1.2, "diverged": 1, "runs": ["d", "e", "f"]}]})


def _plan():
    return {"run": "runs/x", "base": "run", "findings": [
        {"id": "huge-steps", "kind": "root-cause", "title": "huge", "variant": "run | huge-steps=lr x0.01",
         "fix": "learning rate x0.01"},
        {"id": "tiny-steps", "kind": "root-cause", "title": "tiny", "variant": "run | tiny-steps=lr x10",
         "fix": "learning rate x10"},
        {"id": "dead-network", "kind": "symptom", "title": "dead", "variant": "run | huge-steps=lr x0.01",
         "fix": "learning rate x0.01"},
        {"id": "ignores-input", "kind": "symptom", "title": "ignores", "untested": "no mechanical fix"},
        {"id": "constant-init", "kind": "root-cause", "title": "init", "variant": "run | constant-init=glorot",
         "fix": "glorot"}]}


def test_proof_marks_each_finding_from_its_fix_variant():
    proof = proof_of(_verdict(), _plan(), errors={"run | constant-init=glorot": "ConfigError: no layer 'x'"})
    status = {f["id"]: f["status"] for f in proof["findings"]}
    # A fix whose runs could not be trained is reported as failed, with its error (not as inconclusive).
    assert status == {"huge-steps": "proven", "tiny-steps": "refuted", "dead-network": "proven",
                      "ignores-input": "untested", "constant-init": "failed"}
    assert proof["margin"] == pytest.approx(REFUTE_MARGIN * 1.0)
    assert proof["counts"] == {"proven": 2, "refuted": 1, "inconclusive": 0, "untested": 1, "failed": 1}
    failed = next(f for f in proof["findings"] if f["id"] == "constant-init")
    assert "no layer 'x'" in failed["error"]
    text = format_proof(proof)
    assert "constant-init [root-cause]: FAILED: glorot could not be run: ConfigError: no layer 'x'" in text
    assert "huge-steps [root-cause]: PROVEN: learning rate x0.01 moves the validation loss by -0.600" in text
    assert "1 of 3 fixed runs diverged" in text


def test_a_fix_judged_by_the_error_is_untested_without_the_records_that_measure_it():
    assert FIXES["single-unit-softmax"].judged_by == "error" and FIXES["huge-steps"].judged_by == "loss"
    plan = {"run": "runs/x", "base": "run", "findings": [
        {"id": "single-unit-softmax", "kind": "root-cause", "title": "one unit", "variant": "run | s=sigmoid",
         "fix": "a sigmoid", "judged_by": "error"}]}
    verdict = Verdict.from_json({"mode": "effects", "means": {"run": 0.3, "run | s=sigmoid": 0.3},
                                 "effects": [{"variant": "run | s=sigmoid", "effect": 0.0, "ci": [-0.01, 0.01],
                                              "n": 3, "mean_loss": 0.3, "diverged": 0, "runs": ["a", "b", "c"]}]})
    (entry,) = proof_of(verdict, plan)["findings"]
    # Not refuted by a loss that cannot show the fault.
    assert entry["status"] == "untested" and "validation error" in entry["untested"]


def test_a_proof_adds_seeds_only_where_a_finding_is_still_open_and_stops_at_its_cap():
    from diagnose.findings.proof import proof_seeds

    def entry(variant, status, effect, sd, n=3):
        return {"id": variant, "variant": variant, "status": status, "effect": effect, "sd": sd, "n": n,
                "confidence": 0.95}

    proof = {"base": "run", "margin": 0.05, "findings": [
        entry("helps", "inconclusive", -0.3, 0.2),  # to be proven: interval clear of zero, |-0.3| each side
        entry("nothing", "inconclusive", 0.01, 0.05),  # to be refuted: clear of -margin, 0.06 each side
        entry("proven", "proven", -0.5, 0.1), entry("refuted", "refuted", 0.2, 0.1),
        entry("hopeless", "inconclusive", -0.06, 2.0),  # sd 2 nats: beyond the cap
        entry("at cap", "inconclusive", -0.3, 0.5, n=8),
        {"id": "x", "variant": None, "status": "untested"}]}
    # 6 and 7 seeds: the smallest n with t(97.5%, n-1) * sd / sqrt(n) under the half-width asked.
    assert proof_seeds(proof, cap=8) == {"helps": 6, "nothing": 7, "run": 7}
    assert proof_seeds(proof, cap=3) == {}


def test_check_output_puts_each_findings_proof_under_it():
    from diagnose.findings import Finding

    findings = [Finding("huge-steps", "root-cause", "high", "huge", (), "why", "fix"),
                Finding("ignores-input", "symptom", "high", "ignores", (), "why", "fix")]
    proof = proof_of(_verdict(), _plan())
    text, entries = findings_with_proof(findings, proof)
    assert "fix: fix\n  proof: PROVEN" in text and "proof: UNTESTED: no mechanical fix" in text
    assert [e["id"] for e in entries][:2] == ["huge-steps", "ignores-input"]
    assert entries[0]["proof"]["status"] == "proven"
    # Findings the proof tested although the rules did not report them come after.
    assert "[not found, tested on request] tiny-steps" in text
    text, entries = findings_with_proof([], None)
    assert text.startswith("no findings") and entries == []
    # Every unfixed run failed: the proof says so instead of failing to print.
    text, _ = findings_with_proof(findings, {**proof, "base_loss": None})
    assert "proof (no unfixed run finished, margin" in text
    assert math.isclose(T.HEALTHY_UPDATE_RATIO, 1e-3)


def test_a_monitor_run_that_trained_on_after_diverging_counts_what_it_had_learned_before(tmp_path):
    from diagnose import runrecord
    from diagnose.findings.verdict_stats import run_outcome

    run = tmp_path / "run"
    runrecord.begin_record(run, model={"kind": "keras", "layers": []}, data={}, train={})
    rows = [{"step": 4, "loss": 1.0, "val_loss": 1.05}, {"step": 8, "loss": 1e4},
            {"step": 12, "loss": 1e12, "val_loss": 7e14}, {"step": 24, "loss": 5e26, "val_loss": 6e28}]
    runrecord.write_metrics(run, rows)
    summary = {"status": "diverged", "diverged_at": {"step": 8, "variable": "loss"},
               "final": {"val_loss": 6e28}, "baselines": {"ln_vocab": math.log(3)}}
    runrecord.write_summary(run, summary)
    assert run_outcome(run) == (pytest.approx(1.05), "diverged")  # the validations after step 8 do not count
    runrecord.write_summary(run, {**summary, "diverged_at": {"step": 2, "variable": "loss"}})
    assert run_outcome(run) == (pytest.approx(math.log(3)), "diverged")  # none before: it learned nothing


def test_a_validation_beyond_the_divergence_bound_counts_as_the_blow_up_it_shows(tmp_path):
    from diagnose import runrecord
    from diagnose.findings.verdict_stats import run_outcome

    # The training rows had not crossed 100 x ln V yet when the validation at step 12 had.
    run = tmp_path / "run"
    runrecord.begin_record(run, model={"kind": "keras", "layers": []}, data={}, train={})
    rows = [{"step": 4, "loss": 1.0, "val_loss": 1.05}, {"step": 8, "loss": 2.0, "val_loss": 0.95},
            {"step": 12, "loss": 50.0, "val_loss": 4.8e4}, {"step": 16, "loss": 30.0, "val_loss": 0.9}]
    runrecord.write_metrics(run, rows)
    summary = {"status": "diverged", "diverged_at": {"step": 16, "variable": "loss"}, "final": {"val_loss": 0.9},
               "baselines": {"ln_vocab": math.log(40)}}
    runrecord.write_summary(run, summary)
    assert run_outcome(run) == (pytest.approx(0.95), "diverged")  # the last quarter of steps 4-8: step 8
    runrecord.write_summary(run, {**summary, "status": "completed", "diverged_at": None})
    assert run_outcome(run)[0] == pytest.approx(0.95)  # a run not marked diverged: the same
    rows[0]["val_loss"] = rows[1]["val_loss"] = 1e6
    runrecord.write_metrics(run, rows)
    assert run_outcome(run)[0] == pytest.approx(math.log(40))  # blown at its first validation: learned nothing


def test_a_base_that_diverged_on_every_seed_is_beaten_by_a_fix_that_never_does(tmp_path):
    from diagnose import studydir

    runs = [{"id": f"{v}{s}", "variant": v, "seed": s, "status": status}
            for v, status in (("run", "diverged"), ("run | huge-steps=lr x0.01", "completed"))
            for s in range(3)]
    studydir.write_manifest(tmp_path, {"runs": runs})
    verdict = Verdict.from_json({"mode": "effects", "means": {"run": 1.386, "run | huge-steps=lr x0.01": 1.35},
                                 "effects": [{"variant": "run | huge-steps=lr x0.01", "effect": -0.036,
                                              "ci": [-0.06, -0.01], "n": 3, "mean_loss": 1.35, "diverged": 0,
                                              "runs": ["a", "b", "c"]}]})
    plan = {"run": "runs/x", "base": "run", "findings": [
        {"id": "huge-steps", "kind": "root-cause", "title": "huge", "variant": "run | huge-steps=lr x0.01",
         "fix": "learning rate x0.01"}]}
    # By the loss alone (a blown-up run counts as a model that learned nothing) it would be refuted.
    assert proof_of(verdict, plan)["findings"][0]["status"] == "refuted"
    entry = proof_of(verdict, plan, study=tmp_path)["findings"][0]
    assert entry["status"] == "proven" and entry["measure"] == "divergence"
    assert "none of 3 fixed runs diverged, every unfixed one did" in format_proof({"findings": [entry],
                                                                                 "definition": "", "counts": {}})


def test_root_causes_with_their_own_fixes_are_also_proven_together():
    from diagnose.userstudy.prove import COMBINED, _plan

    layers = _layers(output="relu", hidden_init="Constant(0.05)")
    factors, planned = _plan(_view(layers=layers))
    combined = next(p for p in planned if p["id"] == COMBINED)
    assert set(combined["parts"]) == {"relu-output-crossentropy", "constant-init"}
    assert combined["change"]["op"] == "all" and len(factors[COMBINED]) == 1
    parts = {p["id"]: p["change"] for p in planned if p["id"] in combined["parts"]}
    assert next(iter(factors[COMBINED].values()))["changes"] == [parts[i] for i in combined["parts"]]
    single = _plan(_view(layers=_layers(output="relu")))[1]
    assert COMBINED not in [p["id"] for p in single]  # one cause: nothing to combine
    # A reading tested on request is a hypothesis, not a cause found: never a part of the fix of them all
    # (the dead_relus example combined a lower and a higher learning rate).
    asked = _plan(_view(layers=_layers(output="relu")), also=("tiny-steps",))[1]
    assert "tiny-steps" in [p["id"] for p in asked] and COMBINED not in [p["id"] for p in asked]

"""The findings rules on hand-built run records: each fires on its pattern and stays silent on a healthy run.

No training here: records are small DataFrames and dicts. Only the Keras graph tests
build (never train) a model, which imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import random
import string

import numpy as np
import pandas as pd
import pytest

from diagnose import runrecord
from diagnose.errors import DiagnoseError
from diagnose.findings import RULES, Evidence, Finding, RunView, check_run, check_view, format_findings
from diagnose.findings.rules_architecture import TEMPORAL_RATIO
from diagnose.findings.rules_gradients import EXPLODE_FACTOR
from diagnose.findings.rules_optimization import HUGE_UPDATE_RATIO
from diagnose.models.config import PRESETS, MemN2NConfig

N, LOG_EVERY, HOPS, M = 50, 20, 3, 8
VARIABLES = ("A/embedding", "A/temporal", "C/embedding", "C/temporal", "H_0", "W", "W/bias")
BASELINES = {"ln_vocab": math.log(35), "unigram_entropy": 3.4, "bayes_floor": 2.9, "loss_at_step0": 3.56}


# --- building records ---------------------------------------------------------------

def healthy_metrics(n: int = N) -> pd.DataFrame:
    """A paper-like run: loss decaying towards the floor, healthy gradients, selective attention."""
    rng = np.random.default_rng(0)
    step = np.arange(1, n + 1) * LOG_EVERY
    loss = 2.95 + 0.6 * np.exp(-step / 250) + rng.normal(0, 0.003, n)
    cols = {"step": step, "epoch": step / 500, "loss": loss, "accuracy": 0.3 + 0.1 * (1 - np.exp(-step / 250)),
            "learning_rate": np.full(n, 0.01)}
    validated = (np.arange(n) % 5) == 4
    cols["val_loss"] = np.where(validated, loss + 0.05, np.nan)
    cols["val_accuracy"] = np.where(validated, 0.35, np.nan)
    cols["val_perplexity"] = np.exp(cols["val_loss"])
    cols["grad_norm/global"] = 3 + rng.normal(0, 0.2, n)
    for name in VARIABLES:
        cols[f"grad_norm/{name}"] = 1 + rng.normal(0, 0.05, n)
        cols[f"update_ratio/{name}"] = 1e-3 * (1 + rng.normal(0, 0.1, n))
        cols[f"weight_norm/{name}"] = np.full(n, 2.0)
    cols["clip_fired"] = np.where(np.arange(n) < 5, 0.2, 0.02)
    for k in range(1, HOPS + 1):
        cols[f"attn_entropy/hop{k}"] = 0.6 + rng.normal(0, 0.01, n)
        cols[f"attn_top1/hop{k}"] = np.full(n, 0.4)
        cols[f"attn_pad_mass/hop{k}"] = np.zeros(n)
    for e in ("A", "C"):
        cols[f"rms/{e}/content"] = np.full(n, 0.05)
        cols[f"rms/{e}/position"] = np.full(n, 0.04)
    for k in range(1, HOPS + 1):
        cols[f"rms/hop{k}/h_term"] = np.full(n, 0.1)
        cols[f"rms/hop{k}/readout"] = np.full(n, 0.1)
    cols.update({"out_zero_frac": np.zeros(n), "out_dead_rows": np.zeros(n), "target_at_floor": np.zeros(n),
                 "max_prob": np.full(n, 0.3), "target_prob": np.full(n, 0.1)})
    cols["probe_loss_real"] = np.where(validated, 3.0, np.nan)
    cols["probe_loss_shuffled"] = np.where(validated, 3.5, np.nan)
    cols["probe_loss_zeroed"] = np.where(validated, 3.7, np.nan)
    return pd.DataFrame(cols)


def healthy_attention(metrics: pd.DataFrame) -> pd.DataFrame:
    """Winning-slot counts with a mild recency bias (the largest share is ~22%)."""
    rng = np.random.default_rng(1)
    p = np.arange(1, M + 1) / np.arange(1, M + 1).sum()
    rows = [{"step": int(s), "hop": k, **{f"pos{i}": int(c) for i, c in enumerate(rng.multinomial(640, p))}}
            for s in metrics["step"] for k in range(1, HOPS + 1)]
    return pd.DataFrame(rows)


def healthy_summary(metrics: pd.DataFrame) -> dict:
    valid = metrics["val_loss"].dropna()
    return {"status": "completed", "error": None, "steps": int(metrics["step"].iloc[-1]),
            "final": {"train_loss": float(metrics["loss"].iloc[-1]), "val_loss": float(valid.iloc[-1])},
            "best": {"val_loss": float(valid.min()), "step": int(metrics.loc[valid.idxmin(), "step"])},
            "baselines": dict(BASELINES), "diverged_at": None}


def healthy_view(**model) -> RunView:
    """The paper preset at tiny size, with a healthy record."""
    metrics = healthy_metrics()
    config = {"model": {**dataclasses.asdict(MemN2NConfig(vocab_size=35, memory_size=M, embed_dim=16, hops=HOPS)),
                        **model}, "data": {}, "train": {}}
    return RunView(config, healthy_summary(metrics), metrics, healthy_attention(metrics))


def perturb(view: RunView, model: dict | None = None, summary: dict | None = None, attention=None,
            **columns) -> RunView:
    """A copy of ``view`` with model fields, summary keys, attention or metrics columns replaced.

    A column value may be a callable of the step array (``lambda s: ...``) or values.
    """
    metrics = view.metrics.copy()
    for name, value in columns.items():
        metrics[name.replace("__", "/")] = value(metrics["step"].to_numpy()) if callable(value) else value
    config = {**view.config, "model": {**view.model, **(model or {})}}
    return RunView(config, {**view.summary, **(summary or {})}, metrics,
                   view.attention if attention is None else attention)


def ids(findings) -> list[str]:
    return [f.id for f in findings]


def fire(rule, view) -> Finding:
    finding = rule(view)
    assert finding is not None, f"{rule.__name__} did not fire"
    return finding


def evidence_of(finding: Finding, metric: str) -> Evidence:
    matches = [e for e in finding.evidence if e.metric.startswith(metric)]
    assert matches, f"{finding.id}: no evidence on {metric}: {[e.metric for e in finding.evidence]}"
    return matches[0]


def rule(name: str):
    return {r.__name__: r for r in RULES}[name]


# --- the healthy record --------------------------------------------------------------

@pytest.mark.parametrize("r", RULES, ids=lambda r: r.__name__)
def test_no_rule_fires_on_a_healthy_paper_like_run(r):
    assert r(healthy_view()) is None


def test_no_finding_at_all_on_the_healthy_run():
    assert check_view(healthy_view()) == []


@pytest.mark.parametrize("r", RULES, ids=lambda r: r.__name__)
def test_rules_are_silent_when_their_inputs_are_missing(r):
    keras_bare = RunView({"model": {"kind": "keras", "layers": []}}, {}, pd.DataFrame({"step": []}))
    loss_only = RunView({"model": {"kind": "keras"}}, {"status": "completed"},
                        pd.DataFrame({"step": [10, 20, 30, 40, 50], "loss": [3.0, 3.0, 3.0, 3.0, 3.0]}))
    nan_columns = RunView({}, {}, pd.DataFrame({"step": [1, 2], "loss": [np.nan, np.nan],
                                                "grad_norm/global": [np.nan, np.nan]}))
    for view in (keras_bare, loss_only, nan_columns):
        assert r(view) is None


# --- root causes ------------------------------------------------------------------------

def test_relu_output_fires_on_the_memn2n_relu_output_with_metric_evidence():
    view = perturb(healthy_view(output="relu"), out_zero_frac=0.9, target_at_floor=0.3)
    f = fire(rule("relu_output_crossentropy"), view)
    assert (f.id, f.kind, f.severity) == ("relu-output-crossentropy", "root-cause", "high")
    assert evidence_of(f, "model.output").observed == "relu"
    assert evidence_of(f, "out_zero_frac").observed == pytest.approx(0.9)
    assert evidence_of(f, "target_at_floor").observed == pytest.approx(0.3)
    assert "16.1 nats" in f.explanation and "from_logits=True" in f.fix


def test_linear_on_scores_fires_on_h_wiring_scores():
    f = fire(rule("linear_on_attention_scores"), healthy_view(h_wiring="scores"))
    assert (f.id, f.kind) == ("linear-on-attention-scores", "root-cause")
    assert evidence_of(f, "model.h_wiring").observed == "scores"


def test_temporal_dominance_fires_on_the_ratio_late_in_training():
    view = perturb(healthy_view(), rms__A__position=lambda s: np.where(s > 600, 0.5, 0.05))
    f = fire(rule("temporal_encoding_dominates"), view)
    assert (f.id, f.kind) == ("temporal-encoding-dominates", "root-cause")
    ratio = evidence_of(f, "rms/A/position / rms/A/content")
    assert ratio.observed == pytest.approx(10.0) and ratio.threshold == TEMPORAL_RATIO
    assert "temporal_init=0.05" in f.fix
    assert ratio.steps[1] == N * LOG_EVERY
    # The paper's learned encoding grows to a few times the words on position-heavy data: not a cause.
    assert rule("temporal_encoding_dominates")(perturb(healthy_view(), rms__A__position=0.25)) is None
    # Early dominance that has faded is not reported: the rule reads the late rows.
    assert rule("temporal_encoding_dominates")(
        perturb(healthy_view(), rms__A__position=lambda s: np.where(s < 300, 0.5, 0.05))) is None


def test_padding_attention_is_a_root_cause_when_padding_is_encoded():
    view = perturb(healthy_view(padding="encoded"), **{f"attn_pad_mass__hop{k}": 0.01 for k in (1, 2, 3)})
    f = fire(rule("padding_attention"), view)
    assert (f.id, f.kind) == ("padding-attention", "root-cause")
    assert evidence_of(f, "attn_pad_mass (mean").observed == pytest.approx(0.01)
    assert evidence_of(f, "model.padding").observed == "encoded"


def test_padding_attention_is_a_symptom_when_padding_is_masked():
    view = perturb(healthy_view(), **{f"attn_pad_mass__hop{k}": 0.2 for k in (1, 2, 3)})
    f = fire(rule("padding_attention"), view)
    assert f.kind == "symptom" and evidence_of(f, "attn_pad_mass/hop2").observed == pytest.approx(0.2)
    # Masked padding with a trace of mass below the threshold is not reported.
    assert rule("padding_attention")(perturb(healthy_view(), attn_pad_mass__hop1=0.01)) is None


def test_tiny_steps_fires_and_blames_a_mean_reduced_loss():
    view = perturb(healthy_view(loss_reduction="mean", batch_size=128),
                   **{f"update_ratio__{v}": 2e-6 for v in VARIABLES})
    f = fire(rule("tiny_steps"), view)
    assert (f.id, f.kind) == ("tiny-steps", "root-cause")
    assert evidence_of(f, "update_ratio/*").observed == pytest.approx(2e-6)
    assert evidence_of(f, "model.loss_reduction").observed == "mean"
    assert "loss_reduction=sum" in f.fix and "1.28" in f.fix


# --- symptoms ---------------------------------------------------------------------------------

def test_ignores_input_fires_at_unigram_loss_with_useless_probes():
    view = perturb(healthy_view(), summary={"final": {"train_loss": 3.42, "val_loss": 3.41}},
                   probe_loss_shuffled=lambda s: np.where(np.isnan(healthy_metrics()["probe_loss_real"]), np.nan, 3.0),
                   probe_loss_zeroed=lambda s: np.where(np.isnan(healthy_metrics()["probe_loss_real"]), np.nan, 2.99))
    f = fire(rule("ignores_input"), view)
    assert (f.id, f.kind, f.severity) == ("ignores-input", "symptom", "high")
    assert evidence_of(f, "probe_loss_shuffled").observed == pytest.approx(3.0)
    assert evidence_of(f, "summary.final.val_loss").observed == pytest.approx(3.41)
    # The same loss with probes that show the input matters is not "ignoring the input".
    assert rule("ignores_input")(perturb(healthy_view(), summary={"final": {"val_loss": 3.41}})) is None


def test_attention_uniform_fires_when_every_hop_is_near_uniform():
    view = perturb(healthy_view(), **{f"attn_entropy__hop{k}": 0.99 for k in (1, 2, 3)})
    f = fire(rule("attention_uniform"), view)
    assert (f.id, f.kind) == ("attention-uniform", "symptom")
    assert evidence_of(f, "attn_entropy/hop3").observed == pytest.approx(0.99)
    # One selective hop is enough to stay silent.
    assert rule("attention_uniform")(perturb(healthy_view(), attn_entropy__hop1=0.99)) is None


def test_attention_collapsed_fires_when_one_slot_wins_late():
    metrics = healthy_view().metrics
    attention = healthy_attention(metrics)
    late_rows = attention["step"] > 800
    pos = [f"pos{i}" for i in range(M)]
    attention.loc[late_rows, pos] = 0
    attention.loc[late_rows, "pos7"] = 640
    stuck = {"final": {"train_loss": 3.3, "val_loss": 3.3}}  # a fifth of the way to the floor
    f = fire(rule("attention_collapsed"), perturb(healthy_view(), attention=attention, summary=stuck))
    assert (f.id, f.kind) == ("attention-collapsed", "symptom")
    e = evidence_of(f, "attention.csv hop1 pos7")
    assert e.observed == pytest.approx(1.0) and "current word" in e.metric
    assert evidence_of(f, "attn_top1/hop1").observed == pytest.approx(0.4)
    assert evidence_of(f, "share of the unigram-to-floor gap").observed == pytest.approx(0.2)
    # The same winner while the loss is near the floor is what the data rewards: silent.
    assert rule("attention_collapsed")(perturb(healthy_view(), attention=attention)) is None


def test_clipping_never_fires_when_gradients_are_far_below_the_clip():
    view = perturb(healthy_view(loss_reduction="mean"), clip_fired=0.0, grad_norm__global=0.05)
    f = fire(rule("clipping_never_fires"), view)
    assert (f.id, f.kind, f.severity) == ("clipping-never-fires", "symptom", "low")
    assert evidence_of(f, "clip_fired").observed == 0.0
    assert evidence_of(f, "grad_norm/global").threshold == pytest.approx(5.0)
    # No clipping configured: nothing to report.
    assert rule("clipping_never_fires")(perturb(view, model={"clip": "none"})) is None


def test_clipping_always_fires():
    f = fire(rule("clipping_always_fires"), perturb(healthy_view(), clip_fired=1.0))
    assert (f.id, f.kind, f.severity) == ("clipping-always-fires", "symptom", "medium")
    assert evidence_of(f, "clip_fired").observed == pytest.approx(1.0)


def test_exploding_gradients():
    view = perturb(healthy_view(), grad_norm__global=lambda s: 3 * np.exp(s / 150))
    f = fire(rule("exploding_gradients"), view)
    assert (f.id, f.kind) == ("exploding-gradients", "symptom")
    assert evidence_of(f, "grad_norm/global (peak").observed > EXPLODE_FACTOR
    with_inf = perturb(healthy_view(), grad_norm__global=lambda s: np.where(s == 600, np.inf, 3.0))
    assert evidence_of(fire(rule("exploding_gradients"), with_inf), "grad_norm/global").observed == "inf"


def test_vanishing_gradients_overall_and_per_variable():
    f = fire(rule("vanishing_gradients"), perturb(healthy_view(), grad_norm__global=lambda s: 3 * np.exp(-s / 50)))
    assert (f.id, f.kind) == ("vanishing-gradients", "symptom")
    assert evidence_of(f, "grad_norm/global (late").observed < 1e-6
    # One variable's gradient was there early and went.
    f = fire(rule("vanishing_gradients"), perturb(healthy_view(), grad_norm__W=lambda s: np.where(s < 300, 0.5, 0.0)))
    assert evidence_of(f, "grad_norm/W").observed == 0.0
    # Never there at all is not vanishing: no_gradient's.
    assert rule("vanishing_gradients")(perturb(healthy_view(), grad_norm__W=0.0)) is None
    # Round-off from the start (a bias a BatchNormalization subtracts again: 1e-7 one row,
    # 1e-8 the next) has not vanished either, though it dips under the floor late.
    roundoff = perturb(healthy_view(), grad_norm__W=lambda s: np.where(s < 300, 2e-7, 5e-8))
    assert rule("vanishing_gradients")(roundoff) is None


def test_no_gradient_names_variables_the_loss_never_reaches():
    f = fire(rule("no_gradient"), perturb(healthy_view(), grad_norm__W=0.0))
    assert (f.id, f.kind, f.severity) == ("no-gradient", "symptom", "low")
    assert "W" in f.title and evidence_of(f, "grad_norm/W (max)").observed == 0.0
    # A gradient in a single row is a gradient.
    assert rule("no_gradient")(perturb(healthy_view(), grad_norm__W=lambda s: np.where(s == 100, 1e-3, 0.0))) is None


def test_huge_steps_fire_on_large_late_update_ratios_only():
    f = fire(rule("huge_steps"), perturb(healthy_view(), update_ratio__W=0.8))
    assert (f.id, f.kind, f.severity) == ("huge-steps", "root-cause", "high")
    assert evidence_of(f, "update_ratio/W").observed == pytest.approx(0.8)
    assert "800x" in f.fix  # 0.8 / 1e-3
    # Large early, healthy later (a warm-up transient): not huge.
    assert rule("huge_steps")(perturb(healthy_view(), update_ratio__W=lambda s: np.where(s < 300, 0.8, 1e-3))) is None
    assert rule("huge_steps")(perturb(healthy_view(), update_ratio__W=HUGE_UPDATE_RATIO * 0.9)) is None


def test_diverged_names_step_and_variable():
    view = perturb(healthy_view(), summary={"status": "diverged", "diverged_at": {"step": 740, "variable": "H_0"}})
    f = fire(rule("diverged"), view)
    assert (f.id, f.kind, f.severity) == ("diverged", "symptom", "high")
    assert "740" in f.title and "H_0" in f.title
    assert evidence_of(f, "summary.diverged_at.step").observed == 740
    assert "learning rate" in f.fix


def test_not_finite_at_the_first_step_is_not_blamed_on_the_learning_rate():
    view = perturb(healthy_view(), summary={"status": "diverged", "diverged_at": {"step": 1, "variable": "loss"}})
    f = fire(rule("diverged"), view)
    assert f.id == "diverged" and "first step" in f.title
    assert "learning rate" not in f.fix and "initial weights" in f.fix
    assert evidence_of(f, "summary.diverged_at.step").observed == 1


def test_oscillating_loss():
    view = perturb(healthy_view(), loss=lambda s: np.where((s // LOG_EVERY) % 2 == 0, 3.0, 4.0))
    f = fire(rule("oscillating_loss"), view)
    assert (f.id, f.kind) == ("oscillating-loss", "symptom")
    assert evidence_of(f, "loss (mean |change|").observed == pytest.approx(1 / 3.5, rel=0.02)


def test_plateau_well_above_the_floor():
    view = perturb(healthy_view(), loss=lambda s: 4.5 + 0.5 * np.exp(-s / 100))
    f = fire(rule("plateau"), view)
    assert (f.id, f.kind) == ("plateau", "symptom")
    assert evidence_of(f, "loss (end of window)").observed == pytest.approx(4.5, abs=1e-3)
    assert evidence_of(f, "summary.baselines.bayes_floor").observed == 2.9
    # Without a Bayes floor the unigram entropy bounds the best reachable loss.
    no_floor = perturb(view, summary={"baselines": {"unigram_entropy": 3.4}})
    assert evidence_of(fire(rule("plateau"), no_floor), "summary.baselines.unigram_entropy").observed == 3.4


def test_overfitting_valid_rising_while_train_falls():
    view = perturb(healthy_view(), val_loss=lambda s: np.where(
        (s // LOG_EVERY) % 5 == 0, 3.2 + 0.5 * ((s - 500) / 500) ** 2, np.nan))
    f = fire(rule("overfitting"), view)
    assert (f.id, f.kind) == ("overfitting", "symptom")
    assert evidence_of(f, "val_loss (best)").steps == (500, 500)
    assert evidence_of(f, "val_loss (final - best)").observed == pytest.approx(0.5)
    assert f.title == "Overfitting: validation loss up 0.500 nats since step 500"
    # A Keras model under a squared error: the same figure, in its loss's units.
    mse = perturb(view, model={"kind": "keras", "loss": "mse"}, summary={"baselines": {"target_variance": 1.0}})
    assert fire(rule("overfitting"), mse).title == "Overfitting: validation loss up 0.500 mse since step 500"
    # Its thresholds are shares of the targets' variance: the same rise of 0.5 is 25% of a
    # variance of 2 (fires), 2.5% of one of 20 (the validation R^2 barely moved: silent).
    assert fire(rule("overfitting"), perturb(mse, summary={"baselines": {"target_variance": 2.0}}))
    assert rule("overfitting")(perturb(mse, summary={"baselines": {"target_variance": 20.0}})) is None


# --- the whole check, sorting and text -----------------------------------------------------

def as_posted_view() -> RunView:
    posted = dataclasses.asdict(PRESETS["as-posted"])
    view = perturb(healthy_view(), model=posted, out_zero_frac=0.9, target_at_floor=0.3, clip_fired=0.0,
                   grad_norm__global=0.05, **{f"update_ratio__{v}": 2e-6 for v in VARIABLES},
                   **{f"attn_pad_mass__hop{k}": 0.05 for k in (1, 2, 3)})
    return view


def test_findings_sorted_root_causes_first_then_severity_then_id():
    findings = check_view(as_posted_view())
    assert {"relu-output-crossentropy", "linear-on-attention-scores", "padding-attention", "tiny-steps",
            "clipping-never-fires"} <= set(ids(findings))
    assert [f.sort_key() for f in findings] == sorted(f.sort_key() for f in findings)
    kinds = [f.kind for f in findings]
    assert kinds == sorted(kinds, key=("root-cause", "symptom").index)
    # A ReLU output under a cross-entropy (high) before H on the scores (medium: the model still trains).
    assert ids(findings)[:2] == ["relu-output-crossentropy", "linear-on-attention-scores"]


def test_format_findings_lists_ids_evidence_and_fixes():
    findings = check_view(as_posted_view())
    text = format_findings(findings)
    assert text.startswith("[root-cause/high] relu-output-crossentropy: ")
    for f in findings:
        assert f"{f.id}: {f.title}" in text and f.fix in text
    assert "model.output = relu (threshold softmax)" in text
    assert format_findings([]).startswith("No findings")


def test_to_dict_is_plain_json():
    import json

    f = check_view(as_posted_view())[0]
    d = json.loads(json.dumps(f.to_dict()))
    assert d["id"] == f.id and d["evidence"][0]["metric"] == f.evidence[0].metric


def test_finding_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        Finding("x", "cause", "high", "t", (), "e", "f")


def test_check_run_reads_a_written_record(tmp_path):
    view = as_posted_view()
    runrecord.write_config(tmp_path, model=view.model, data={}, train={})
    runrecord.write_metrics(tmp_path, view.metrics.to_dict("records"))
    runrecord.write_summary(tmp_path, view.summary)
    runrecord.write_attention(tmp_path, view.attention.to_dict("records"))
    assert ids(check_run(tmp_path)) == ids(check_view(view))
    healthy = tmp_path / "healthy"
    h = healthy_view()
    runrecord.write_config(healthy, model=h.model, data={}, train={})
    runrecord.write_metrics(healthy, h.metrics.to_dict("records"))
    runrecord.write_summary(healthy, h.summary)
    assert check_run(healthy) == []
    with pytest.raises(DiagnoseError, match="not a run directory"):
        check_run(tmp_path / "missing")


# --- Keras models: the graph, never the names -----------------------------------------------

@pytest.fixture(scope="module")
def keras_describe():
    import keras

    from diagnose.instruments.describe import describe as _describe

    yield _describe
    # Layer names come from global counters; other test modules expect fresh ones ("dense_1").
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def question(keras_describe):
    from diagnose.models.question import build_question_model

    return keras_describe(build_question_model(35, 8, 8, 3))


def keras_view(model: dict) -> RunView:
    return RunView({"model": model, "data": {}, "train": {}}, {}, pd.DataFrame({"step": []}))


def renamed(model: dict, seed: int = 0) -> dict:
    """The description with every layer name replaced by a random string (edges follow)."""
    rng = random.Random(seed)
    new = {layer["name"]: "".join(rng.choices(string.ascii_lowercase, k=10)) for layer in model["layers"]}
    # Misleading names too: the ReLU output now calls itself "softmax".
    new[model["layers"][-1]["name"]] = "softmax"
    layers = [{**layer, "name": new[layer["name"]],
               "inbound": [[new[p] for p in call] for call in layer["inbound"]]} for layer in model["layers"]]
    return {**model, "layers": layers, "outputs": [new[n] for n in model["outputs"]]}


def test_describe_records_inbound_edges(question):
    by_name = {layer["name"]: layer for layer in question["layers"]}
    dense = [layer for layer in question["layers"]
             if layer["class"] == "Dense" and layer["config"]["activation"] == "linear"]
    assert len(dense) == 1 and len(dense[0]["inbound"]) == 2  # shared over the 2 hops
    first = dense[0]["inbound"][0][0]
    assert by_name[first]["class"] == "Dot"
    assert any(layer["class"] == "Softmax" and layer["inbound"] == [[first]] for layer in question["layers"])
    assert question["outputs"] == [question["layers"][-1]["name"]] and question["loss_from_logits"] is False


def test_keras_question_model_has_both_root_causes_whatever_the_names(question):
    for model in (question, renamed(question)):
        found = check_view(keras_view(model))
        assert {"relu-output-crossentropy", "linear-on-attention-scores"} <= set(ids(found))
        f = next(f for f in found if f.id == "linear-on-attention-scores")
        assert "Dense" in f.evidence[0].observed and "Softmax" in f.evidence[0].observed
        r = next(f for f in found if f.id == "relu-output-crossentropy")
        assert evidence_of(r, "model.layers[").observed == "relu"


def _paper_like_keras(keras, output_activation, loss):
    word_seq = keras.Input((8,), dtype="int32")
    query = keras.Input((8,))
    memories = keras.layers.Embedding(35, 8)(word_seq)
    content = keras.layers.Embedding(35, 8)(word_seq)
    scores = keras.layers.Dot(axes=[1, 2])([query, memories])
    attention = keras.layers.Softmax()(scores)
    readout = keras.layers.Dot(axes=1)([attention, content])
    read = keras.layers.Dense(8)(readout)  # a Dense on the read-out is fine
    state = keras.layers.Add()([keras.layers.Dense(8)(query), read])
    out = keras.layers.Dense(35, activation=output_activation)(keras.layers.Dropout(0.1)(state))
    model = keras.Model([word_seq, query], out)
    model.compile(optimizer="sgd", loss=loss)
    return model


def test_keras_dense_on_the_readout_and_softmax_output_are_healthy(keras_describe):
    import keras

    model = keras_describe(_paper_like_keras(keras, "softmax", "categorical_crossentropy"))
    assert check_view(keras_view(model)) == []
    assert check_view(keras_view(renamed(model, seed=1))) == []


def test_keras_output_rule_reads_activation_and_from_logits(keras_describe):
    import keras

    logits = keras_describe(_paper_like_keras(keras, None, keras.losses.CategoricalCrossentropy(from_logits=True)))
    assert rule("relu_output_crossentropy")(keras_view(logits)) is None
    linear = keras_describe(_paper_like_keras(keras, "linear", "categorical_crossentropy"))
    f = fire(rule("relu_output_crossentropy"), keras_view(linear))
    assert evidence_of(f, "model.layers[").observed == "linear"
    assert rule("relu_output_crossentropy")(keras_view({**linear, "loss": "mean_squared_error"})) is None


def test_keras_dense_on_attention_probabilities_fires(keras_describe):
    import keras

    x = keras.Input((8,))
    attention = keras.layers.Softmax()(keras.layers.Dense(8)(x))
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.Dropout(0.1)(attention))
    model = keras.Model(x, out)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    f = fire(rule("linear_on_attention_scores"), keras_view(keras_describe(model)))
    assert "attention probabilities" in f.evidence[0].observed

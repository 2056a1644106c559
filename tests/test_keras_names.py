"""Keras' names in the record (val_loss, val_accuracy, History's keys), old records read under them, and a
Keras model's record, findings and run page free of the built-in MemN2N's words (issue 30 item 2)."""

import csv
import json
import math

import pytest

from diagnose import load_run, runrecord
from diagnose.findings import check_run
from diagnose.findings.verdict_stats import run_error, run_outcome

LN4 = math.log(4)


def _keras_record(path, *, old: bool = False, steps: int = 192, per_epoch: int = 64, plateau: bool = False):
    """A small CNN-like Keras run record (4 classes, 3 epochs of ``per_epoch`` steps), written with the
    validation columns' old names (valid_loss...) where ``old``, as records were before Keras' names."""
    val = "valid_" if old else "val_"
    path.mkdir(parents=True)
    rows = []
    for step in range(16, steps + 1, 16):
        frac = step / steps
        loss = 1.38 if plateau else 1.38 - 0.9 * frac
        row = {"step": step, "epoch": step / per_epoch, "loss": loss, "accuracy": 0.25 + 0.5 * frac,
               "learning_rate": 0.001, "grad_norm/global": 1.0 + frac, "grad_norm/dense/kernel": 0.5 + frac,
               "update_ratio/dense/kernel": 1e-3, "out_zero_frac": 0.0, "max_prob": 0.3 + 0.5 * frac,
               **{f"grad_norm/conv{i}/kernel": 0.1 * i + frac for i in range(6)}}
        if step % per_epoch == 0:
            row.update({f"{val}loss": loss + 0.05, f"{val}accuracy": 0.2 + 0.5 * frac})
            if old:
                row["valid_perplexity"] = math.exp(loss + 0.05)
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    final_val = [r[f"{val}loss"] for r in rows if f"{val}loss" in r][-1]
    summary = {"schema": 1, "status": "completed", "error": None, "steps": steps, "epochs": steps // per_epoch,
               "final": {"train_loss": rows[-1]["loss"], f"{val}loss": final_val},
               "best": {f"{val}loss": final_val},
               "baselines": {"ln_vocab": LN4, "unigram_entropy": LN4, "constant_loss": LN4, "classes": 4},
               "contract": {"steps_per_epoch": per_epoch, "loss": {"name": "sparse_categorical_crossentropy"}},
               "wall_time_s": 1.0}
    (path / "summary.json").write_text(json.dumps(summary))
    config = {"schema": 1, "model": {"kind": "keras", "name": "cnn", "loss": "sparse_categorical_crossentropy"},
              "data": {}, "train": {}}
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_a_record_written_with_the_old_validation_names_reads_checks_and_scores_under_keras_names(tmp_path):
    old = _keras_record(tmp_path / "old", old=True)
    new = _keras_record(tmp_path / "new")
    wide = runrecord.read_metrics(old)
    assert {"val_loss", "val_accuracy", "val_perplexity"} <= set(wide.columns)
    assert not [c for c in wide.columns if c.startswith("valid_")]
    assert runrecord.read_summary(old)["final"]["val_loss"] == runrecord.read_summary(new)["final"]["val_loss"]
    rows, _ = runrecord.read_rows(old)
    assert any("val_loss" in r for r in rows) and not any("valid_loss" in r for r in rows)
    assert set(load_run(old).metric) >= {"val_loss", "val_accuracy"}
    # the verdict's outcome and error, and the findings, are those of the same record written the new way
    assert run_outcome(old) == run_outcome(new) and run_outcome(old)[0] is not None
    assert run_error(old) == pytest.approx(run_error(new)) and run_error(old) is not None
    assert [f.id for f in check_run(old)] == [f.id for f in check_run(new)]


def test_load_run_puts_the_last_step_of_an_epoch_in_that_epoch(tmp_path):
    run = _keras_record(tmp_path / "run")
    frame = load_run(run, tidy=False).set_index("step")
    assert frame.loc[64, "epoch"] == 0 and frame.loc[80, "epoch"] == 1 and frame.loc[128, "epoch"] == 1
    assert frame.loc[16, "epoch"] == 0 and frame.loc[192, "epoch"] == 2
    tidy = load_run(run)
    assert set(tidy[tidy.step == 64].epoch) == {0}


def test_load_run_reads_steps_per_epoch_from_fractional_epochs_without_a_contract(tmp_path):
    run = _keras_record(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    del summary["contract"]
    (run / "summary.json").write_text(json.dumps(summary))
    frame = load_run(run, tidy=False).set_index("step")
    assert frame.loc[64, "epoch"] == 0 and frame.loc[65 if 65 in frame.index else 80, "epoch"] == 1


def test_compare_takes_val_loss_and_an_old_name_and_lists_every_column(tmp_path):
    from diagnose.reports import plots

    old, new = _keras_record(tmp_path / "old", old=True), _keras_record(tmp_path / "new")
    assert plots.compare([old, new], tmp_path / "c.png", metric="val_loss").is_file()
    assert plots.compare([old], tmp_path / "d.png", metric="valid_loss").is_file()
    with pytest.raises(ValueError) as caught:
        plots.compare([old, new], tmp_path / "e.png", metric="nope")
    listed = str(caught.value).split("try one of: ")[1].split(", ")
    columns = set(runrecord.read_metrics(new).columns) | set(runrecord.read_metrics(old).columns)
    assert set(listed) == columns - {"step", "epoch"} and len(listed) > 12
    assert listed[:3] == ["loss", "accuracy", "learning_rate"] and "val_loss" in listed


def test_the_monitor_records_compiled_metrics_under_history_s_names_and_its_own_columns_once():
    from diagnose.instruments.epoch_logs import compiled_metrics as _compiled_metrics

    logs = {"loss": 1.0, "accuracy": 0.5, "mae": 0.2, "val_loss": 1.1, "val_accuracy": 0.4, "val_mae": 0.3,
            "val_auc": 0.7, "out_loss": 0.4, "val_out_loss": 0.5, "val_out_sparse_categorical_accuracy": 0.6,
            "val_out_mae": 0.1, "learning_rate": 0.01}
    found = _compiled_metrics(logs, ["out"], {"learning_rate": 0.01})
    assert found == {"mae": 0.2, "val_mae": 0.3, "val_auc": 0.7, "val_out_mae": 0.1}


def test_a_keras_plateau_names_the_best_constant_prediction_not_the_unigram_entropy(tmp_path):
    run = _keras_record(tmp_path / "run", plateau=True)
    plateau = [f for f in check_run(run) if f.id == "plateau"]
    assert plateau, [f.id for f in check_run(run)]
    assert "unigram" not in plateau[0].title and "best constant prediction" in plateau[0].title


def test_a_keras_run_page_shows_its_accuracy_and_nothing_of_memn2n(tmp_path):
    from diagnose.reports.html import build_report

    run = _keras_record(tmp_path / "run", old=True)  # an old record: its summary has no val_accuracy
    index = build_report([run], tmp_path / "report")
    page = next(p for p in index.parent.glob("*.html") if p.name != "index.html").read_text()
    assert "final validation accuracy</th><td>0.7" in page
    svg = next(index.parent.glob("run-*.svg")).read_text()
    words = page.lower() + svg.lower()
    for word in ("perplexity", "ln v", "unigram", "attention", "position", "word", "not recorded"):
        assert word not in words, word
    assert "best constant prediction" in words and "ln(classes)" in words
    assert "<svg" in svg and svg.count("Output health") == 1

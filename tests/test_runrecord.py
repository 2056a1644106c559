"""Tests of the run-record schema: atomic writes, JSON cleaning, metrics round trips."""

import json
import math
import os

import numpy as np
import pytest

from diagnose import runrecord


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_writes_text_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "file.json"
    runrecord.atomic_write(target, "first\n")
    runrecord.atomic_write(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    runrecord.write_summary(tmp_path, {"status": "running"})
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        runrecord.write_summary(tmp_path, {"status": "completed", "steps": 10})
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_failed_write_mid_file_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    runrecord.write_metrics(tmp_path, [{"step": 1, "loss": 2.0}])
    before = target.read_text()

    def broken_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        runrecord.write_metrics(tmp_path, [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}])
    assert target.read_text() == before
    assert _leftovers(tmp_path) == []


def test_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "x.json"
    runrecord.write_json(path, {"a": math.nan, "b": [1.5, math.inf, -math.inf], "c": {"d": np.float32("nan")},
                                "e": np.float64(2.5), "f": np.int64(3), "g": "nan"})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    data = runrecord.read_json(path)
    assert data == {"a": None, "b": [1.5, None, None], "c": {"d": None}, "e": 2.5, "f": 3, "g": "nan"}
    assert type(data["f"]) is int


def test_write_summary_adds_schema_and_rejects_unknown_status(tmp_path):
    for status in runrecord.STATUSES:
        runrecord.write_summary(tmp_path, {"status": status, "loss": math.nan})
        assert runrecord.read_summary(tmp_path) == {"schema": runrecord.SCHEMA_VERSION, "status": status,
                                                     "loss": None}
    runrecord.write_summary(tmp_path, {"status": "completed"})
    for bad in ("finished", None, "COMPLETED"):
        with pytest.raises(ValueError, match="status"):
            runrecord.write_summary(tmp_path, {"status": bad})
    with pytest.raises(ValueError, match="status"):
        runrecord.write_summary(tmp_path, {"steps": 3})
    assert runrecord.read_summary(tmp_path)["status"] == "completed"  # the rejected writes left it alone


def test_config_round_trip_and_is_run_dir(tmp_path):
    assert not runrecord.is_run_dir(tmp_path)
    runrecord.write_config(tmp_path, model={"hops": 2}, data={"corpus": None}, train={"seed": 0})
    assert runrecord.is_run_dir(tmp_path)
    assert runrecord.read_config(tmp_path) == {"schema": runrecord.SCHEMA_VERSION, "model": {"hops": 2},
                                               "data": {"corpus": None}, "train": {"seed": 0}}


def test_metrics_round_trip(tmp_path):
    rows = [
        {"step": 0, "epoch": 0.0, "loss": math.nan, "accuracy": math.nan, "learning_rate": 0.01,
         "val_loss": 3.5553480614894135, "val_accuracy": 0.05, "val_perplexity": 35.0},
        {"step": 20, "epoch": 0.1 + 0.2, "loss": 1 / 3, "accuracy": 0.125, "learning_rate": np.float64(0.01) / 1.5},
        {"step": 40, "epoch": 0.6, "loss": np.float64(2.0) / 7, "accuracy": 0.25, "learning_rate": 0.01 / 1.5,
         "val_loss": 3.1, "val_accuracy": None, "val_perplexity": math.exp(3.1)},
    ]
    runrecord.write_metrics(tmp_path, rows)
    df = runrecord.read_metrics(tmp_path)
    assert list(df.columns) == [*runrecord.BASE_COLUMNS, "val_perplexity"]  # the built-in MemN2N's own
    assert df["step"].tolist() == [0, 20, 40]
    for col in [*runrecord.BASE_COLUMNS, "val_perplexity"]:
        for i, row in enumerate(rows):
            value = row.get(col)
            got = df[col].iloc[i]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert math.isnan(got), (col, i)
            else:
                assert got == value, (col, i)  # floats round-trip exactly


def test_unknown_columns_follow_base_columns_in_first_seen_order(tmp_path):
    rows = [{"zeta": 1.0, "step": 1, "loss": 0.5},
            {"step": 2, "alpha": "x", "zeta": 2.0, "loss": 0.25},
            {"step": 3, "loss": 0.125, "grad_norm/A": 7.5}]
    runrecord.write_metrics(tmp_path, rows)
    header = (tmp_path / runrecord.METRICS).read_text().splitlines()[0].split(",")
    assert header == [*runrecord.BASE_COLUMNS, "zeta", "alpha", "grad_norm/A"]
    df = runrecord.read_metrics(tmp_path)
    assert df["zeta"].tolist()[:2] == [1.0, 2.0] and math.isnan(df["zeta"].iloc[2])
    assert df["alpha"].iloc[1] == "x"
    assert df["grad_norm/A"].iloc[2] == 7.5
    assert df["loss"].tolist() == [0.5, 0.25, 0.125]


def test_empty_metrics_have_the_base_header(tmp_path):
    runrecord.write_metrics(tmp_path, [])
    df = runrecord.read_metrics(tmp_path)
    assert list(df.columns) == list(runrecord.BASE_COLUMNS) and len(df) == 0

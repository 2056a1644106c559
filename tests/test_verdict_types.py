"""The verdict's types: a JSON round trip, verdict.json written and read back to the same bytes,
and a verdict an older version wrote read back (hand-built studies, no training)."""

import dataclasses
import json

import pytest
from test_adaptive import SPEC, _executor
from test_verdict import _study

from diagnose import studydir
from diagnose.memn2n.spec import build_spec
from diagnose.ablation.study import run_study
from diagnose.files import json_text
from diagnose.findings.verdict import compute_verdict, format_verdict
from diagnose.findings.verdict_types import Verdict, read_verdict, write_verdict

# Each shape a verdict takes: a gap whose fix is a set of two switches (combinations, an
# interaction, a part that widens the gap alone, a set that falls short), a study of one base
# (effects), a faulty base that ends below the reference (no gap), and no base to compare with.
SHAPES = {
    "gap": {
        "as-posted": [7.6, 7.7, 7.5], "paper": [5.6, 5.7, 5.5],
        "as-posted | output=softmax": [6.0, 6.1, 5.9], "as-posted | loss_reduction=sum": [8.0, 8.1, 7.9],
        "as-posted | dropout=none": [7.5, 7.8, 7.4], "paper | loss_reduction=mean": [8.44, 8.54, 8.34],
        "paper | output=relu": [7.6, 7.7, 7.5], "paper | dropout=both": [5.6, 5.8, 5.5],
        "as-posted | loss_reduction=sum + output=softmax": [5.62, 5.71, 5.53],
        "as-posted | dropout=none + output=softmax": [7.0, 7.1, 6.9]},
    "effects": {"paper": [1.0, 1.1, 1.05], "paper | dropout=both": [0.8, 0.85, 0.9],
                "paper | temporal=none": [1.3, 1.35, 1.32]},
    "no gap": {"as-posted": [1.0, 1.1, 1.0], "paper": [5.0, 5.1, 5.2], "as-posted | output=softmax": [0.9, 1.0, 0.9]},
    "error": {"paper": [None, None], "paper | output=relu": [4.0, 4.1]},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_verdict_survives_its_json_round_trip(tmp_path, shape):
    v = compute_verdict(_study(tmp_path, SHAPES[shape]))
    assert v.mode == {"gap": "gap", "effects": "effects", "no gap": "effects", "error": "error"}[shape]
    assert Verdict.from_json(json.loads(json_text(v.to_json()))) == v
    with_proof = dataclasses.replace(v, proof={"base": "run", "findings": []}, follow_up_rounds=0, follow_up_s=0.5,
                                     sweeps=())
    assert Verdict.from_json(json.loads(json_text(with_proof.to_json()))) == with_proof
    write_verdict(tmp_path, v)
    assert read_verdict(tmp_path) == v
    text = (tmp_path / studydir.VERDICT).read_text()
    assert json_text(read_verdict(tmp_path).to_json()) == text


def test_the_gap_shape_has_every_part_that_round_trips(tmp_path):
    # The round trip above proves something only where the parts are there to lose.
    v = Verdict.from_json(json.loads(json_text(compute_verdict(_study(tmp_path, SHAPES["gap"])).to_json())))
    fix = v.smallest_fix
    assert fix.switches == ("loss_reduction=sum", "output=softmax") and fix.interaction is not None
    assert [p.switch for p in fix.parts] == ["loss_reduction=sum", "output=softmax"]
    assert any(c.falls_short for c in v.combinations) and any(c.kind == "residual" for c in v.comparisons)
    assert {f.factor for f in v.factors} >= {"output", "loss_reduction"} and v.root_causes


def test_a_study_writes_the_verdict_json_its_type_reads_back_byte_for_byte(tmp_path):
    _, verdict = run_study(build_spec(SPEC), tmp_path / "study", _executor())
    text = (tmp_path / "study" / studydir.VERDICT).read_text()
    read = read_verdict(tmp_path / "study")
    assert read == verdict and read.follow_up_rounds == 1 and read.sweeps
    assert json_text(read.to_json()) == text


def test_the_same_records_give_the_same_verdict_bytes_and_the_manifest_keeps_the_timings(tmp_path):
    # Two studies of one spec (the executor answers at once, so the records are equal, not the wall-clock
    # times): their verdict.json match byte for byte; how long each sweep took is the manifest's.
    for name in ("a", "b"):
        run_study(build_spec(SPEC), tmp_path / name, _executor())
    first, second = ((tmp_path / n / studydir.VERDICT).read_bytes() for n in ("a", "b"))
    assert first == second and b"wall_s" not in first and b"follow_up_s" not in first
    manifest = studydir.read_manifest(tmp_path / "a")
    assert [s["runs"] for s in manifest["sweeps"]] == [s.runs for s in read_verdict(tmp_path / "a").sweeps]
    assert all(isinstance(s["wall_s"], float) for s in manifest["sweeps"]) and manifest["follow_up_s"] >= 0


def test_a_verdict_an_older_version_wrote_reads_back():
    # Before statuses and levels: effects flagged "significant", no "status", no "confidence".
    old = {"mode": "effects", "bases": ["paper"], "means": {"paper": 1.0, "paper | dropout=both": 0.8},
           "effects": [{"variant": "paper | dropout=both", "base": "paper", "factor": "dropout", "runs": ["a", "b"],
                        "mean_loss": 0.8, "diverged": 0, "significant": True, "effect": -0.2, "ci": [-0.3, -0.1],
                        "n": 2, "sd": 0.01}],
           "comparisons": [], "factors": [], "root_causes": [], "smallest_fix": None}
    v = Verdict.from_json(old)
    (effect,) = v.effects
    assert effect.established and effect.status == "established" and effect.effect.confidence == 0.95
    assert v.unit == "nats" and v.seeds.per_variant == {}
    assert "paper | dropout=both: -0.200 nats against paper (95% CI -0.300 to -0.100, 2 seeds): lowers the loss" \
        in format_verdict(v)

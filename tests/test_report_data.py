"""What the report shows, computed by diagnose.report_data from hand-written study directories (no training)."""

import pytest
from report_fakes import DEFAULT_LIKE, default_like_study, noise, write_run

from diagnose import studydir
from diagnose.report_data import load
from diagnose.findings.verdict_types import SwitchEffect, Verdict
from diagnose.report_data import verdict_view as vv


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return load([default_like_study(tmp_path_factory.mktemp("study"))])


def _mean(variant, seeds=2):
    return sum(DEFAULT_LIKE[variant] + noise(variant, s) for s in range(seeds)) / seeds


def test_every_run_has_its_findings_and_every_variant_its_interval(study):
    assert len(study.runs) == 2 * len(DEFAULT_LIKE)
    ones = study.variants["paper | temporal=ones"]
    assert ones.loss.mean == pytest.approx(_mean("paper | temporal=ones"))
    assert ones.loss.lo < ones.loss.mean < ones.loss.hi and ones.loss.n == 2
    # The unit-scale table (RMS 1.0 against content 0.05) is found on each of its runs, and only where it is.
    assert all(any(f["id"] == "temporal-encoding-dominates" for f in r.findings) for r in ones.runs)
    assert not any(f["id"] == "temporal-encoding-dominates" for r in study.variants["paper"].runs for f in r.findings)
    assert study.variants["as-posted"].runs[0].label == "as-posted, seed 0"


def test_the_headline_rows_are_the_verdicts_switches_with_the_fix_marked(study):
    head = study.headline
    assert head.mode == "gap" and head.faulty.name == "as-posted" and head.reference.name == "paper"
    assert head.fix.name == "as-posted | loss_reduction=sum + output=softmax"
    rows = {r.variant.name: r for r in head.rows}
    # Switches to the other base's choice and combinations; a level neither base has (none, ones) is no row.
    assert "as-posted | temporal=normal" in rows and "as-posted | temporal=ones" not in rows
    assert [r.variant.name for r in head.rows if r.is_fix] == [head.fix.name]
    summed = rows["as-posted | loss_reduction=sum"]
    assert summed.effect.side == "fix" and summed.base.name == "as-posted"
    expected = _mean("as-posted | loss_reduction=sum") - _mean("as-posted")
    assert summed.effect.effect.mean == pytest.approx(expected)
    assert summed.effect.share == pytest.approx(-expected / head.gap.mean)
    assert rows["paper | output=relu"].effect.side == "break"


def test_interactions_give_the_four_cells_of_each_pair(study):
    by_name = {i.variant.name: i for i in study.interactions}
    item = by_name["as-posted | loss_reduction=sum + temporal=ones"]
    cells = [[c.variant.name if c.variant else None for c in row] for row in item.cells]
    assert cells == [["as-posted", "as-posted | temporal=ones"],
                     ["as-posted | loss_reduction=sum", "as-posted | loss_reduction=sum + temporal=ones"]]
    assert item.interaction is not None and item.interaction.mean is not None


def test_a_triple_shows_every_subset_that_ran(tmp_path):
    variants = {"as-posted": 4.5, "paper": 1.8, "as-posted | output=softmax": 3.6,
                "as-posted | loss_reduction=sum": 2.3, "as-posted | temporal=normal": 4.4,
                "as-posted | loss_reduction=sum + output=softmax": 2.0,
                "as-posted | loss_reduction=sum + output=softmax + temporal=normal": 1.8}
    data = load([default_like_study(tmp_path, variants=variants)])
    item = next(i for i in data.interactions if len(i.switches) == 3)
    assert item.row_labels == ["neither", "loss_reduction=sum", "output=softmax", "loss_reduction=sum + output=softmax"]
    assert item.cells[3][1].variant.name.endswith("temporal=normal") and item.cells[0][1].variant is not None


def test_the_temporal_suspect_contrasts_the_levels_that_differ_most_with_their_evidence(study):
    s = next(x for x in study.suspects if x.factor == "temporal")
    assert s.levels == ["none", "normal", "uniform", "ones"]  # the spec's order
    assert s.labels["normal"] == "N(0, 0.05)" and s.labels["uniform"] == "U(-0.05, 0.05)"
    contexts = {c.label: c for c in s.contexts}
    assert contexts["as-posted"].own_level == "uniform" and contexts["paper"].own_level == "normal"
    summed = contexts["as-posted + loss_reduction=sum"]
    assert set(summed.points) == {"none", "uniform", "ones"}  # with the summed loss: no encoding, posted, ones
    c = s.contrast
    assert c.context is summed and (c.low, c.high) == ("none", "ones")  # 2.3 against 5.3: the widest
    assert "temporal-encoding-dominates" in {f["id"] for f in c.only_high}
    assert c.panels[0] == "branches" and "attention-map" in c.panels


def test_suspects_come_from_the_studys_own_factors(tmp_path):
    """A study of a user's own model: one base, a factor of its own; no MemN2N names anywhere."""
    runs = []
    for variant, final in (("mine", 2.0), ("mine | lr=high", 3.0), ("mine | lr=tiny", 2.6)):
        for seed in range(2):
            rid = f"{variant.replace(' | ', '-').replace('=', '-')}-{seed}"
            write_run(tmp_path / "runs" / rid, final + 0.01 * seed, position=None)
            factor, _, level = variant.partition(" | ")[2].partition("=")
            runs.append({"id": rid, "variant": variant, "base": "mine", "seed": seed, "status": "completed",
                         "factor": factor or None, "level": level or None,
                         "switches": [[factor, level]] if factor else [], "level_of": []})
    studydir.write_manifest(tmp_path, {"study": "mine", "runs": runs, "corpus": {},
                                       "spec": {"factors": {"lr": {"high": {"lr": 1}, "tiny": {"lr": 1e-5}}}}})
    from diagnose.findings.verdict import compute_verdict
    from diagnose.findings.verdict_types import write_verdict

    write_verdict(tmp_path, compute_verdict(tmp_path))
    data = load([tmp_path])
    assert [s.factor for s in data.suspects] == ["lr"]
    s = data.suspects[0]
    assert s.levels == ["high", "tiny", "mine's own"] and s.contexts[0].own_level == "mine's own"
    assert (s.contrast.low, s.contrast.high) == ("mine's own", "high")
    assert data.headline.mode == "effects" and {r.variant.name for r in data.headline.rows} == {
        "mine | lr=high", "mine | lr=tiny"}


@pytest.mark.parametrize("entry, settled", [
    ({"effect": -1.0, "ci": [-2.0, -0.5]}, True),  # an older verdict without either: the interval decides
    ({"effect": -1.0, "ci": [-2.0, 0.5]}, False),
    ({"effect": -1.0, "ci": [-2.0, -0.5], "established": False}, False),  # an explicit flag wins
    ({"effect": -1.0, "ci": [-2.0, 0.5], "status": "established"}, True),
    ({"effect": -1.0, "ci": [-2.0, -0.5], "status": "inconclusive"}, False),
])
def test_established_reads_the_flag_the_status_or_the_interval(entry, settled):
    assert SwitchEffect.from_json({"variant": "a | x=1", **entry}).established is settled


@pytest.mark.parametrize("entry, status", [
    ({"effect": 0.01, "ci": [-0.02, 0.03], "status": "negligible"}, "negligible"),  # the verdict rules it out
    ({"effect": 0.01, "ci": [-0.02, 0.03]}, "inconclusive"),
    ({"effect": -1.0, "ci": [-2.0, -0.5], "established": True}, "established"),
])
def test_status_keeps_the_verdicts_word(entry, status):
    assert SwitchEffect.from_json({"variant": "a | x=1", **entry}).status == status


def test_the_outcome_label_is_the_verdicts_phrase():
    assert vv.outcome_label(None) == "final validation loss"
    assert vv.outcome_label(Verdict(outcome="final validation loss (nats per token); diverged runs count at ...")) \
        == "final validation loss"
    assert vv.outcome_label(Verdict(outcome="the mean validation loss over the last 25% of a run's steps (nats)")) \
        == "validation loss over the last 25% of steps"


def test_interval_is_the_verdicts_t_interval():
    from scipy import stats

    values = [2.0, 2.3, 2.1]
    ref = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    got = vv.interval(values)
    assert got.mean == pytest.approx(sum(values) / 3) and (got.lo, got.hi) == pytest.approx((ref.low, ref.high))
    assert vv.interval([]) is None and vv.interval([1.0]).lo is None


def test_the_pages_verdict_says_when_a_fix_diverged():
    verdict = {
        "faulty": "as-posted", "reference": "paper", "outcome": "final validation loss", "test": "paired t",
        "gap": {"effect": 2.7, "ci": [0.2, 5.2]},
        "factors": [{"factor": "loss_reduction", "best_fix": "as-posted | loss_reduction=sum", "share_closed": 0.83,
                     "fix": [{"variant": "as-posted | loss_reduction=sum", "diverged": 2, "runs": ["a", "b", "c"]}]}],
        "root_causes": [{"factor": "loss_reduction", "share_closed": 0.83, "share_opened": None, "runs": ["a"]}],
        "smallest_fix": {"switches": ["loss_reduction=sum", "output=softmax"], "share_closed": 0.9, "diverged": 0,
                         "runs": ["d", "e", "f"], "unstable_alone": ["loss_reduction=sum"]}}
    view = vv.parts(Verdict.from_json(verdict))  # an older verdict's, with fewer fields
    assert "2 of 3 seeds diverged later" in view["causes"][0]["text"]
    assert view["fix"].endswith("No single one of them does without diverging on some seed")
    verdict["smallest_fix"] = {"switches": ["loss_reduction=sum"], "share_closed": 0.83, "diverged": 2,
                               "runs": ["a", "b", "c"], "unstable_alone": []}
    assert "diverged later on 2 of 3 seeds" in vv.parts(Verdict.from_json(verdict))["fix"]
    assert "not yet a stable fix" in vv.parts(Verdict.from_json(verdict))["fix"]

"""The verdict of an ablation, on hand-built ablation directories (no training)."""

import math

import numpy as np
import pytest
from scipy import stats

from diagnose import runrecord, studydir
from diagnose.findings.verdict import compute_verdict, format_verdict, plan_follow_ups

LN_V = math.log(35)


def _study(tmp_path, variants: dict[str, list[float | None]], diverged: dict | None = None):
    """variants: name -> final valid loss per seed (None = diverged without a validation)."""
    runs = []
    for name, losses in variants.items():
        base, _, rest = name.partition(" | ")
        factor = level = None
        if rest and "+" not in rest:
            factor, level = rest.split("=")
        for seed, loss in enumerate(losses):
            rid = f"{abs(hash((name, seed))) % 10**12:012d}"
            status = "diverged" if (diverged or {}).get(name) and seed in diverged[name] else "completed"
            runrecord.write_summary(tmp_path / "runs" / rid, {
                "status": status, "final": {"val_loss": loss}, "baselines": {"ln_vocab": LN_V}})
            other = {"as-posted": "paper", "paper": "as-posted"}[base]
            runs.append({"id": rid, "variant": name, "base": base, "factor": factor, "level": level, "seed": seed,
                         "status": status, "level_of": [other] if factor else [],
                         "switches": [s.split("=") for s in rest.split(" + ")] if rest else []})
    studydir.write_manifest(tmp_path, {"study": "hand-built", "runs": runs, "corpus": {}})
    return tmp_path


def test_root_cause_ranked_first_with_paired_interval(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "as-posted": [5.0, 5.2, 4.9],
        "paper": [1.5, 1.6, 1.4],
        "as-posted | output=softmax": [1.7, 1.6, 1.5],
        "as-posted | dropout=none": [5.1, 5.0, 4.8],
        "paper | output=relu": [4.8, 5.1, 5.0],
        "paper | dropout=both": [1.6, 1.5, 1.45],
    }))
    assert [rc.factor for rc in v.root_causes] == ["output"]
    output = v.factor("output")
    fix = output.fixes[0]
    # Independent reference: scipy's paired t-test interval on the same numbers.
    ref = stats.ttest_rel([1.7, 1.6, 1.5], [5.0, 5.2, 4.9]).confidence_interval(0.95)
    assert fix.effect.mean == pytest.approx(np.mean([1.7 - 5.0, 1.6 - 5.2, 1.5 - 4.9]))
    assert (fix.effect.lo, fix.effect.hi) == pytest.approx((ref.low, ref.high))
    gap = np.mean([5.0 - 1.5, 5.2 - 1.6, 4.9 - 1.4])
    assert output.share_closed == pytest.approx(-fix.effect.mean / gap)
    assert v.smallest_fix.switches == ("output=softmax",) and v.smallest_fix.confident
    assert set(v.root_causes[0].runs) >= set(fix.runs)
    assert v.smallest_fix.stable and v.smallest_fix.reaches
    text = format_verdict(v)
    causes = [line for line in text.splitlines() if line.lstrip()[:2].rstrip(".").isdigit()]
    assert causes == [line for line in text.splitlines() if "1. output" in line]  # dropout is no root cause
    assert "smallest fix: output=softmax closes" in text
    assert "reaches paper: what it leaves is under a tenth of the gap" in text  # one switch: singular
    # What the dropout switches do is said, each with its own status.
    assert "negligible" in text and "dropout=both on paper" in text


def test_no_single_switch_asks_for_pairs_then_names_the_pair(tmp_path):
    variants = {
        "as-posted": [5.0, 5.1, 4.9],
        "paper": [1.0, 1.1, 0.9],
        "as-posted | output=softmax": [3.3, 3.4, 3.2],  # closes ~42%
        "as-posted | loss_reduction=sum": [3.2, 3.4, 3.3],  # closes ~42%
        "as-posted | dropout=none": [5.0, 5.05, 4.95],
    }
    v = compute_verdict(_study(tmp_path / "a", variants))
    # The best single switch is named with what it leaves, and the search goes on.
    assert not v.smallest_fix.reaches and v.smallest_fix.short_of_reference
    assert "no tested set of switches reaches paper" in format_verdict(v)
    plan = plan_follow_ups(v, set(variants))
    pairs = {tuple(sorted(f"{f}={lv}" for f, lv in s)) for _, s in plan}
    assert ("loss_reduction=sum", "output=softmax") in pairs
    assert all(len(s) == 2 for _, s in plan)
    variants["as-posted | loss_reduction=sum + output=softmax"] = [1.1, 1.2, 1.0]
    v = compute_verdict(_study(tmp_path / "b", variants))
    assert v.smallest_fix.switches == ("loss_reduction=sum", "output=softmax")
    text = format_verdict(v)
    assert "switch loss_reduction=sum and output=softmax together" in text and "No single one" in text
    assert plan_follow_ups(v, set(variants)) == []
    combo = v.combinations[0]
    # Interaction: the pair does better than the sum of its parts would predict? Here the
    # parts add to -3.5 and the pair gives -3.9: a negative (synergistic) interaction.
    assert combo.interaction.mean == pytest.approx(
        np.mean([1.1 - (5.0 + (3.3 - 5.0) + (3.2 - 5.0)), 1.2 - (5.1 + (3.4 - 5.1) + (3.4 - 5.1)),
                 1.0 - (4.9 + (3.2 - 4.9) + (3.3 - 4.9))]))


def test_noise_is_not_a_root_cause(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "as-posted": [5.0, 4.0, 6.0],
        "paper": [1.0, 1.1, 0.9],
        "as-posted | temporal=none": [4.5, 5.5, 4.2],
    }))
    assert v.root_causes == ()
    assert "no single switch moves the loss beyond seed noise" in format_verdict(v)


def test_a_faulty_base_that_does_not_end_above_the_reference_has_no_gap_to_explain(tmp_path):
    # Shares of a gap whose sign is unknown, or wrong, would rank causes of nothing: the
    # verdict gives each switch's effect on its base instead, and says why.
    switches = {"as-posted | output=softmax": [1.0, 1.1, 0.9], "paper | output=relu": [5.0, 5.1, 4.9]}
    reversed_ = compute_verdict(_study(tmp_path / "reversed", {
        "as-posted": [1.0, 1.1, 0.9], "paper": [5.0, 5.2, 4.9], **switches}))
    assert reversed_.mode == "effects" and reversed_.no_gap == "reversed"
    assert reversed_.root_causes == () and reversed_.smallest_fix is None
    assert reversed_.gap.mean == pytest.approx(-4.0 - 0.1 / 3)
    assert format_verdict(reversed_).startswith("verdict: as-posted ends below paper, not above (as-posted - paper = "
                                                "-4.033 nats")
    noisy = compute_verdict(_study(tmp_path / "noisy", {
        "as-posted": [2.0, 4.0, 1.0], "paper": [3.0, 1.5, 2.9], **switches}))
    assert noisy.mode == "effects" and noisy.no_gap == "inconclusive"
    gap = next(c for c in noisy.comparisons if c.kind == "gap")
    assert gap.status == "inconclusive" and gap.effect.mean < 0 < gap.effect.hi
    assert "as-posted ends no higher than paper on average" in format_verdict(noisy)
    # A gap above zero is explained, its headline saying where it is still unsure.
    unsure = compute_verdict(_study(tmp_path / "unsure", {
        "as-posted": [6.0, 3.0, 4.5], "paper": [1.0, 1.1, 0.9], **switches}))
    assert unsure.mode == "gap" and unsure.gap.status == "inconclusive"
    assert "the gap itself is still within seed noise" in format_verdict(unsure).splitlines()[0]
    sure = compute_verdict(_study(tmp_path / "gap", {
        "as-posted": [5.0, 5.2, 4.9], "paper": [1.0, 1.1, 0.9], **switches}))
    assert sure.mode == "gap" and "within seed noise" not in format_verdict(sure).splitlines()[0]


def test_diverged_runs_count_as_not_learning(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "as-posted": [5.0, 5.1, 4.9],
        "paper": [1.0, 1.1, 0.9],
        "paper | clip=per_tensor": [None, None, 1.0],
    }, diverged={"paper | clip=per_tensor": {0, 1}}))
    clip = v.factor("clip")
    assert clip.breaks[0].diverged == 2
    assert clip.breaks[0].mean_loss == pytest.approx((LN_V + LN_V + 1.0) / 3)


def test_missing_base_runs_are_reported(tmp_path):
    # The base's runs have no outcome (no validation loss): nothing to compare switches with.
    v = compute_verdict(_study(tmp_path, {"paper": [None, None], "paper | output=relu": [4.0, 4.1]}))
    assert "no base model" in v.error and format_verdict(v).startswith("verdict: no base model")


def test_a_study_without_both_bases_gives_each_switchs_effect_on_its_base(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "paper": [1.0, 1.1, 1.05],
        "paper | temporal=none": [1.3, 1.35, 1.32],
        "paper | dropout=both": [0.8, 0.85, 0.83],
        "paper | clip=none": [1.0, 1.12, 1.03],
    }))
    assert v.mode == "effects" and v.bases == ("paper",) and v.root_causes == ()
    assert [e.variant for e in v.effects] == ["paper | dropout=both", "paper | clip=none",
                                                    "paper | temporal=none"]  # lowest loss first
    by = {e.variant: e for e in v.effects}
    ref = stats.ttest_rel([1.3, 1.35, 1.32], [1.0, 1.1, 1.05]).confidence_interval(0.95)
    assert (by["paper | temporal=none"].effect.lo, by["paper | temporal=none"].effect.hi) == pytest.approx(
        (ref.low, ref.high))
    assert [by[x].established for x in ("paper | dropout=both", "paper | clip=none", "paper | temporal=none")] \
        == [True, False, True]
    text = format_verdict(v)
    assert "paper | dropout=both: -0.223 nats" in text and "lowers the loss" in text
    assert "paper | clip=none: +0.000 nats" in text and "within seed noise" in text
    assert plan_follow_ups(v, set()) == []  # no gap, so no fix to search for


def test_only_switches_to_the_other_models_choice_are_blamed(tmp_path):
    out = _study(tmp_path, {
        "as-posted": [5.0, 5.1, 4.9],
        "paper": [1.0, 1.1, 0.9],
        "paper | temporal=none": [3.0, 3.1, 2.9],  # removing the encoding hurts the paper model...
        "paper | temporal=uniform": [1.05, 1.1, 0.95],  # ...but the posted init does not
        "as-posted | loss_reduction=sum": [1.2, 1.3, 1.1],
    })
    manifest = studydir.read_manifest(out)
    for r in manifest["runs"]:  # "none" is neither base's level: exploratory only
        if r["variant"] == "paper | temporal=none":
            r["level_of"] = []
    studydir.write_manifest(out, manifest)
    v = compute_verdict(out)
    assert [rc.factor for rc in v.root_causes] == ["loss_reduction"]
    temporal = v.factor("temporal")
    assert [e.variant for e in temporal.others] == ["paper | temporal=none"]


def test_follow_ups_grow_from_pairs_of_candidates_only(tmp_path):
    variants = {
        "as-posted": [5.0, 5.1, 4.9],
        "paper": [1.0, 1.1, 0.9],
        "as-posted | output=softmax": [4.0, 4.1, 3.9],
        "as-posted | loss_reduction=sum": [3.9, 4.0, 4.1],
        "as-posted | h_wiring=state": [4.5, 4.4, 4.6],
        # a contrast that is not made of candidate switches must not seed larger sets
        "as-posted | loss_reduction=sum + temporal=ones": [6.0, 6.1, 5.9],
    }
    v = compute_verdict(_study(tmp_path / "a", variants))
    plan = plan_follow_ups(v, set(variants))
    # The strongest pair first; the other pairs of candidates once it falls short; then triples.
    assert plan == [("as-posted", (("loss_reduction", "sum"), ("output", "softmax")))]
    for stage, size in (("b", 2), ("c", 3)):
        for _, s in plan:  # none of the pairs recovers
            variants["as-posted | " + " + ".join(f"{f}={lv}" for f, lv in s)] = [3.0, 3.1, 2.9]
        v = compute_verdict(_study(tmp_path / stage, variants))
        plan = plan_follow_ups(v, set(variants))
        assert plan and {len(s) for _, s in plan} == {size}
        assert all(("temporal", "ones") not in s for _, s in plan)


def test_a_fix_that_diverges_on_some_seeds_is_flagged_not_hidden(tmp_path):
    # Switching the loss closes the gap on every seed's last validation, but two
    # seeds diverge afterwards: the verdict must say so wherever it names the fix.
    v = compute_verdict(_study(tmp_path, {
        "as-posted": [5.0, 5.2, 4.9],
        "paper": [1.5, 1.6, 1.4],
        "as-posted | loss_reduction=sum": [1.7, 1.6, 1.8],
        "paper | loss_reduction=mean": [4.8, 5.1, 5.0],
    }, diverged={"as-posted | loss_reduction=sum": {0, 2}}))
    assert v.smallest_fix.switches == ("loss_reduction=sum",)
    assert v.smallest_fix.diverged == 2
    text = format_verdict(v)
    assert "2 of 3 seeds diverged later" in text
    assert "diverged later on 2 of 3 seeds" in text and "not yet a stable fix" in text


def test_a_fix_without_divergence_carries_no_caveat(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "as-posted": [5.0, 5.2, 4.9],
        "paper": [1.5, 1.6, 1.4],
        "as-posted | loss_reduction=sum": [1.7, 1.6, 1.8],
    }))
    assert v.smallest_fix.diverged == 0
    fix_line = next(line for line in format_verdict(v).splitlines() if "smallest fix" in line)
    assert "diverged" not in fix_line and "stable on every seed" in fix_line


def test_an_unstable_fix_asks_for_pairs_and_a_stable_pair_wins(tmp_path):
    variants = {
        "as-posted": [5.0, 5.2, 4.9],
        "paper": [1.5, 1.6, 1.4],
        "as-posted | loss_reduction=sum": [1.7, 1.6, 1.8],  # recovers, but two seeds diverge later
        "as-posted | output=softmax": [4.0, 4.1, 3.9],
        "as-posted | clip=global": [4.6, 4.7, 4.5],
    }
    unstable = {"as-posted | loss_reduction=sum": {0, 2}}
    v = compute_verdict(_study(tmp_path / "a", variants, unstable))
    assert v.smallest_fix.variant == "as-posted | loss_reduction=sum"  # the best so far, with its caveat
    plan = plan_follow_ups(v, set(variants))
    assert plan == [("as-posted", (("loss_reduction", "sum"), ("output", "softmax")))]  # the strongest pair first
    variants["as-posted | loss_reduction=sum + output=softmax"] = [1.5, 1.6, 1.5]
    unstable["as-posted | loss_reduction=sum + output=softmax"] = {1}
    v = compute_verdict(_study(tmp_path / "a2", variants, unstable))
    plan = plan_follow_ups(v, set(variants))  # it diverged on a seed: the other pairs are asked for
    pairs = {tuple(sorted(f"{f}={lv}" for f, lv in s)) for _, s in plan}
    assert ("clip=global", "loss_reduction=sum") in pairs
    variants["as-posted | loss_reduction=sum + clip=global"] = [1.6, 1.7, 1.5]
    variants["as-posted | output=softmax + clip=global"] = [3.9, 4.0, 3.8]
    v = compute_verdict(_study(tmp_path / "b", variants, unstable))
    # The pair that never diverges beats both the unstable single and the unstable, better pair.
    assert v.smallest_fix.switches == ("loss_reduction=sum", "clip=global")
    assert v.smallest_fix.diverged == 0
    assert plan_follow_ups(v, set(variants)) == []
    text = format_verdict(v)
    assert "not yet a stable fix" not in text
    assert "switch loss_reduction=sum and clip=global together" in text and "without diverging on some seed" in text


@pytest.mark.parametrize("model, unit", [
    ({}, "nats"),  # the built-in MemN2N: a softmax cross-entropy per token
    ({"kind": "keras", "loss": "sparse_categorical_crossentropy"}, "nats"),
    ({"kind": "keras", "loss": "BinaryCrossentropy"}, "nats"),
    ({"kind": "keras", "loss": "mse"}, "mse"),
    ({"kind": "keras", "loss": "huber_by_hand"}, "huber_by_hand"),  # a function of the user's own, by its name
    ({"kind": "keras", "loss": "list"}, "loss units"),  # one loss per output: config.json names the container
    ({"kind": "keras", "loss": None}, "loss units"),
])
def test_a_loss_is_in_nats_only_where_it_is_a_cross_entropy(model, unit):
    from diagnose.findings.verdict_stats import loss_unit

    assert loss_unit(model) == unit

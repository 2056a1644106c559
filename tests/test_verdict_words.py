"""A user study's verdict says every factor, ranks a run that blew up below one that did not, and words
divergence and shares of the gap as what happened (issue 30 item 3)."""

import math

from diagnose import runrecord, studydir
from diagnose.findings import check_run
from diagnose.findings.verdict import compute_verdict, format_verdict
from diagnose.findings.verdict_stats import divergence_of
from diagnose.findings.verdict_text import verdict_parts

LN4 = math.log(4)


def _study(tmp_path, variants: dict, *, diverged: dict | None = None, went_on: bool = True,
           at_row: int = 1, level_of: dict | None = None, gap: tuple | None = None):
    """variants: name -> outcome per seed (None: diverged before any validation). ``diverged``: name -> seeds
    that diverged, at logged row ``at_row`` of 10 (a row every 10 steps, a validation at each), training going
    on to step 100 where ``went_on``, else stopping there. ``level_of``: name -> the bases whose level it is;
    ``gap``: (faulty, reference), the manifest's."""
    runs = []
    for name, outcomes in variants.items():
        base, _, rest = name.partition(" | ")
        factor, _, level = rest.partition("=") if rest else (None, "", None)
        for seed, y in enumerate(outcomes):
            rid = f"{abs(hash((name, seed))) % 10**12:012d}"
            blew = seed in (diverged or {}).get(name, ())
            at = 10 * at_row
            steps = 100 if not blew or went_on else at
            rows = []
            for step in range(10, steps + 1, 10):
                bad = blew and step >= at
                rows.append({"step": step, "epoch": step / 50, "loss": 400.0 if bad else 1.5,
                             "val_loss": 300.0 if bad else (y if y is not None else 1.5)})
            if blew and at_row > 1:  # validations before it: the outcome the verdict counts
                rows = [dict(r, val_loss=y) if r["step"] < at else r for r in rows]
            run = tmp_path / "runs" / rid
            runrecord.write_metrics(run, rows)
            runrecord.write_summary(run, {
                "status": "diverged" if blew else "completed", "steps": steps,
                "diverged_at": {"step": at, "variable": "loss"} if blew else None,
                "final": {"val_loss": rows[-1]["val_loss"]}, "baselines": {"ln_vocab": LN4}})
            runs.append({"id": rid, "variant": name, "base": base, "factor": factor or None, "level": level or None,
                         "seed": seed, "status": "diverged" if blew else "completed",
                         "level_of": (level_of or {}).get(name, []), "switches": [[factor, level]] if rest else []})
    bases = {"faulty": gap[0], "reference": gap[1]} if gap else {}
    studydir.write_manifest(tmp_path, {"study": "mine", "runs": runs, "corpus": {}, **bases})
    return tmp_path


def test_a_variant_that_blew_up_ranks_below_one_that_did_not_and_says_so_first(tmp_path):
    # The base learned little (1.434, above ln 4): a run that blew up counts as ln 4 = 1.386, "lower".
    v = compute_verdict(_study(tmp_path, {
        "mine": [1.434, 1.436, 1.432, 1.435, 1.433],
        "mine | lr=high": [None] * 5,
        "mine | dropout=on": [1.420, 1.424, 1.421, 1.425, 1.419],
    }, diverged={"mine | lr=high": range(5)}))
    assert v.mode == "effects"
    assert [e.variant for e in v.effects] == ["mine | dropout=on", "mine | lr=high"]
    blown = next(e for e in v.effects if e.variant == "mine | lr=high")
    assert blown.effect.mean < 0 and blown.status == "established"  # lower as counted ...
    text = format_verdict(v)
    line = next(x for x in text.splitlines() if "lr=high" in x)
    assert "diverged on 5 of 5 seeds at the first logged row and training went on;" in line
    assert "lowers the loss" not in line and "later" not in line and "not an improvement" in line
    assert "best switch: mine | dropout=on lowers the loss" in text


def test_a_divergence_after_validations_is_later_and_never_said_to_go_on(tmp_path):
    v = compute_verdict(_study(tmp_path, {
        "mine": [1.434, 1.436, 1.432],
        "mine | lr=high": [1.50, 1.52, 1.51],
    }, diverged={"mine | lr=high": {0, 1}}, went_on=False, at_row=5))
    line = next(x for x in format_verdict(v).splitlines() if "lr=high" in x)
    assert "diverged on 2 of 3 seeds later;" in line and "went on" not in line


def test_every_factor_of_a_gap_study_is_in_the_printed_verdict_and_its_tally(tmp_path):
    # Two of three factors switch to levels neither base has: reported, never ranked, never left out.
    v = compute_verdict(_study(tmp_path, {
        "broken": [2.0, 2.02, 1.98], "fixed": [1.0, 1.02, 0.98],
        "broken | output=softmax": [1.1, 1.12, 1.08],
        "broken | width=wide": [1.9, 1.93, 1.88], "fixed | width=wide": [1.05, 1.04, 1.03],
        "broken | init=zeros": [2.5, 2.4, 2.6],
    }, level_of={"broken | output=softmax": ["fixed"]}, gap=("broken", "fixed")))
    text = format_verdict(v)
    assert "width=wide on broken" in text and "width=wide on fixed" in text and "init=zeros on broken" in text
    assert "levels neither base has" in text
    tally = verdict_parts(v)["tally"]
    assert "3 switches to levels neither base has" in tally


def test_shares_of_the_gap_are_worded_by_their_sign(tmp_path):
    # output is a root cause by its reference side; its switch on the faulty base widens the gap.
    v = compute_verdict(_study(tmp_path, {
        "broken": [5.0, 5.1, 4.9], "fixed": [1.0, 1.1, 0.9],
        "broken | output=softmax": [6.0, 6.1, 5.9], "fixed | output=relu": [4.0, 4.1, 3.9],
    }, level_of={"broken | output=softmax": ["fixed"], "fixed | output=relu": ["broken"]}, gap=("broken", "fixed")))
    text = format_verdict(v)
    assert [c.factor for c in v.root_causes] == ["output"]
    assert "widens the gap by 25%" in text and "closes -" not in text


def _monitor_record(path, went_on: bool, at: int = 20):
    """A run that diverged at step ``at`` (found by the row at step 20) and went on to step 100, or stopped."""
    runrecord.write_metrics(path, [{"step": s, "epoch": s / 50, "loss": 1.4 if s < 20 else math.nan}
                                   for s in range(10, (100 if went_on else 20) + 1, 10)])
    runrecord.write_summary(path, {"status": "diverged", "steps": 100 if went_on else 20,
                                   "diverged_at": {"step": at, "variable": "loss"}, "error": "blew up"})
    (path / "config.json").write_text('{"schema": 1, "model": {"kind": "keras"}, "data": {}, "train": {}}')
    return path


def test_the_diverged_finding_says_whether_training_went_on(tmp_path):
    went = next(f for f in check_run(_monitor_record(tmp_path / "a", True)) if f.id == "diverged")
    stopped = next(f for f in check_run(_monitor_record(tmp_path / "b", False)) if f.id == "diverged")
    assert "training went on to step 100" in went.explanation and "stopped there" not in went.explanation
    assert "the run stopped there" in stopped.explanation
    # found mid-interval (a NaN at step 15): the trainer ends the interval's steps, then stops
    mid = next(f for f in check_run(_monitor_record(tmp_path / "c", False, at=15)) if f.id == "diverged")
    assert "the run stopped there" in mid.explanation
    assert divergence_of(tmp_path / "c") == {"at_once": False, "went_on": False}
    assert divergence_of(tmp_path / "a") == {"at_once": False, "went_on": True}

"""The fault suite's structure (bench/faults/) and the scorer's comparisons; no training."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnose._tf import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402

from bench.faults import FAMILIES, KNOWN_IDS, NEW_IDS, TEST_FAMILIES, load_cases, take  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = load_cases()


def _scorer():
    sys.path.insert(0, str(ROOT / "bench"))  # the scorer is a script beside common.py
    import fault_suite

    return fault_suite


def test_suite_size_families_and_share_of_healthy_controls():
    tuning = {n: c for n, c in CASES.items() if c.part == "tuning"}
    assert len(tuning) >= 30
    families = {c.family for c in tuning.values()}
    assert families == set(FAMILIES) and len(families) >= 6
    healthy = sum(c.healthy for c in tuning.values())
    assert 0.25 <= healthy / len(tuning) <= 0.5  # about a third are controls
    for family in FAMILIES:  # every family has a control and a fault
        kinds = {c.healthy for c in tuning.values() if c.family == family}
        assert kinds == {True, False}, family


def test_the_test_part_is_as_large_as_the_issue_asks_and_apart_from_the_tuning_part():
    # Issue 27: at least 30 faulty cases over at least 8 families, 10 of them ports of real reported bugs,
    # with their healthy twins; families the tuning part does not have.
    test = {n: c for n, c in CASES.items() if c.part == "test"}
    faulty = [c for c in test.values() if not c.healthy]
    assert len(faulty) >= 30
    assert len({c.family for c in faulty}) >= 8
    assert len([c for c in faulty if c.report]) >= 10
    assert {c.family for c in test.values()} <= set(TEST_FAMILIES) and not set(TEST_FAMILIES) & set(FAMILIES)
    for c in faulty:
        assert CASES[c.twin].part == "test", c.name  # a test case's twin is a test case too
        if c.report:
            assert CASES[c.twin].report == c.report, c.name  # the accepted fix of the same report


def test_every_fault_names_a_healthy_twin_of_its_family():
    for case in CASES.values():
        if case.healthy:
            assert case.twin is None, case.name
            continue
        twin = CASES.get(case.twin)
        assert twin is not None, f"{case.name}: twin {case.twin!r} is not a case"
        assert twin.healthy and twin.family == case.family, case.name


def test_every_case_names_its_source():
    for case in CASES.values():
        doc = case.doc
        assert case.summary, case.name
        source = doc.split("Source:", 1)
        assert len(source) == 2, f"{case.name}: no 'Source:' in the docstring"
        # An address, a paper, or the question this project grew from.
        assert re.search(r"https?://|arXiv \d{4}\.\d{4,5}|the question", source[1]), case.name


def test_expected_ids_are_known_or_declared_and_written_once():
    allowed = KNOWN_IDS | set(NEW_IDS)
    for case in CASES.values():
        assert set(case.expect) <= allowed, (case.name, set(case.expect) - allowed)
        assert len(set(case.expect)) == len(case.expect), case.name
    used = {i for case in CASES.values() for i in case.expect}
    assert set(NEW_IDS) <= used  # a declared new id that no case needs is a stale declaration


_SO_QUESTION = re.compile(r"stackoverflow\.com/(?:questions|q)/(\d+)", re.IGNORECASE)


def test_no_case_cites_an_excluded_post():
    from bench.faults.excluded import EXCLUDED_POSTS

    assert EXCLUDED_POSTS and all(isinstance(i, int) for i in EXCLUDED_POSTS)
    assert _SO_QUESTION.findall("https://stackoverflow.com/q/12/3 stackoverflow.com/questions/45/x") == ["12", "45"]
    cited = {}
    for case in CASES.values():
        for text in (case.doc, case.report or ""):
            for post in _SO_QUESTION.findall(text):
                if int(post) in EXCLUDED_POSTS:
                    cited.setdefault(case.name, set()).add(int(post))
    assert not cited, f"cases citing held-out DeepLocalize/DeepFD/DeepDiagnosis posts: {cited}"


def _rows(data) -> int:
    return len(data[next(iter(data))]) if isinstance(data, dict) else len(data[0] if isinstance(data, list) else data)


def _trailing_shapes(data):
    arrays = data.values() if isinstance(data, dict) else data if isinstance(data, list) else [data]
    return [np.shape(a)[1:] for a in arrays]


# Two cases whose build alone takes ~5 s (the first pretrains its base model): with the slow tests.
_SLOW_BUILDS = {"ts_transfer_adam", "ts_transfer_sgd", "au_melspec_pcm_scaled", "au_framewise_posteriors"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_BUILDS else n
                                  for n in CASES])
def test_case_builds_a_compiled_model_its_data_fits(name):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    setup = CASES[name].build()
    model = setup.model
    assert model.optimizer is not None and model.loss is not None, "not compiled"
    n = _rows(setup.x)
    targets = keras.tree.flatten(setup.y)  # one array per output
    assert len(targets) == len(model.outputs) and all(len(t) == n for t in targets)
    steps = setup.epochs * math.ceil(n / setup.batch_size)
    assert 150 <= steps <= 700, steps  # a few seconds on two cores
    if setup.sample_weight is not None:
        assert np.shape(setup.sample_weight) == (n,)
    # Inputs fit the model's Input layers (by name for a dict) ...
    by_name = {t.name: t for t in model.inputs}
    arrays = setup.x.items() if isinstance(setup.x, dict) else zip(
        [t.name for t in model.inputs], setup.x if isinstance(setup.x, list) else [setup.x])
    for input_name, array in arrays:
        assert np.shape(array)[1:] == tuple(by_name[input_name].shape[1:]), input_name
    # ... and the targets fit its outputs under Keras' own loss: a misfit raises here.
    outputs = [np.full((4, *o.shape[1:]), 0.5, np.float32) for o in model.outputs]
    loss = model.compute_loss(x=take(setup.x, 4), y=keras.tree.map_structure(lambda a: a[:4], setup.y),
                              y_pred=outputs[0] if len(outputs) == 1 else outputs)
    assert np.shape(loss) == () and np.isfinite(float(loss))
    if setup.validation_data is not None:
        vx, vy = setup.validation_data
        held = keras.tree.flatten(vy)
        assert len(held) == len(targets) and all(_rows(vx) == len(h) > 0 for h in held)
        assert _trailing_shapes(vx) == _trailing_shapes(setup.x)
        assert [np.shape(h)[1:] for h in held] == [np.shape(t)[1:] for t in targets]


def test_compare_sees_a_changed_loss_and_accepts_identical_non_finite_runs():
    compare = _scorer().compare
    weights = [np.ones((3, 2), np.float32), np.zeros(2, np.float32)]
    plain = {"history": {"loss": [1.0, 0.5]}, "weights": weights}
    same = compare(plain, {"history": {"loss": [1.0, 0.5]}, "weights": [w.copy() for w in weights]})
    assert same["losses_equal"] and same["weights_equal"]
    moved = compare(plain, {"history": {"loss": [1.0, 0.49]}, "weights": [w * 1.01 for w in weights]})
    assert not moved["losses_equal"] and not moved["weights_equal"]
    nan = {"history": {"loss": [float("nan")]}, "weights": [np.full(2, np.nan, np.float32)]}
    assert compare(nan, nan)["losses_equal"] and compare(nan, nan)["weights_equal"]
    stopped = compare(plain, {"history": {"loss": [1.0]}, "weights": weights})  # one epoch of two
    assert not stopped["losses_equal"]


def test_same_start_gives_a_case_the_shared_weights_and_one_order_of_its_examples(tmp_path):
    """--same-start: the first build writes its initial weights, a build drawn from another seed loads them, and
    every array of the inputs and targets (a dict of inputs here) is permuted by the same order."""
    scorer, case = _scorer(), CASES["wd_healthy"]  # a wide-and-deep model: a dict of inputs
    builds = []
    for seed in (0, 1):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        setup = case.build()
        original = (keras.tree.map_structure(np.copy, setup.x), keras.tree.map_structure(np.copy, setup.y))
        kwargs, facts = scorer._same_start(case, setup, tmp_path)
        builds.append((setup, original, kwargs, facts))
    (first, original, kwargs, facts), (second, _, _, loaded) = builds
    assert facts["weights"] == "written" and loaded["weights"] == "loaded"
    assert kwargs["shuffle"] is False and facts["order"] == "permuted once"
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)  # seed 1 drew other weights; the shared ones replaced them
    assert any(not np.array_equal(a, b) for a, b in zip(keras.tree.flatten(first.x), keras.tree.flatten(original[0])))
    # One order for every array: find it from the first input and check the rest against it.
    rows = keras.tree.flatten(original[0])[0]
    order = np.random.RandomState(scorer.SEED).permutation(len(rows))
    for now, before in zip(keras.tree.flatten((first.x, first.y)), keras.tree.flatten(original)):
        np.testing.assert_array_equal(now, np.asarray(before)[order])


def test_summary_counts_top1_recall_and_false_alarms():
    summarise = _scorer().summarise
    rows = [
        {"case": "a", "family": "f", "expect": ["x", "y"], "healthy": False, "top1": True, "found": ["x"],
         "recall": 0.5, "plain_error": None, "instrumented_error": None, "check_error": None, "check_s": 0.1},
        {"case": "b", "family": "f", "expect": ["z"], "healthy": False, "top1": False, "found": [], "recall": 0.0,
         "plain_error": None, "instrumented_error": "ValueError: boom", "check_error": None},
        {"case": "c", "family": "g", "expect": [], "healthy": True, "root_causes": ["huge-steps"],
         "oscillating": True, "plain_error": None, "instrumented_error": None, "check_error": None, "check_s": 0.3},
    ]
    s = summarise(rows)
    assert (s["cases"], s["families"], s["faulty"], s["healthy"]) == (3, 2, 2, 1)
    assert s["top1_accuracy"] == 0.5 and s["recall"] == pytest.approx(1 / 3)
    assert s["instrumented_crashes"] == 1 and s["healthy_with_root_cause"] == ["c"]
    assert s["healthy_with_oscillating_loss"] == ["c"] and s["check_s_max"] == 0.3

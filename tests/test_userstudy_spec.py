"""The spec of a study of the user's own model: validation, variants, run ids, dispatch. No training."""

import json

import pytest

from diagnose.memn2n.spec import Spec
from diagnose.errors import ConfigError
from diagnose import refs
from diagnose.rebuild import rebuild_entry
from diagnose.studies import load_study_spec
from diagnose.userstudy.spec import KerasSpec, KerasTrainer, Level, build_keras_spec

BUILDER, DATA = "userstudy_models:build", "userstudy_models:data"


def _raw(**sections):
    raw = {"study": {"name": "mine", "builder": BUILDER, "data": DATA, "seeds": 2},
           "bases": {"posted": {"output": "relu", "lr": 0.01}, "fixed": {"output": "softmax", "lr": 0.01}},
           "factors": {"output": ["softmax", "relu"], "lr": {"low": {"lr": 0.001}}}}
    for name, values in sections.items():
        raw[name] = values
    return raw


def test_variants_switch_each_factor_alone_and_name_the_base_that_has_the_level():
    spec = build_keras_spec(_raw())
    names = [v.name for v, _ in spec.variants()]
    assert names == ["posted", "fixed", "posted | output=softmax", "posted | lr=low", "fixed | output=relu",
                     "fixed | lr=low"]
    by_name = {v.name: (v, level) for v, level in spec.variants()}
    variant, level = by_name["posted | output=softmax"]
    assert level.settings == {"output": "softmax", "lr": 0.01}
    assert variant.level_of == ("fixed",)  # the switch adopts the fixed base's own choice
    assert by_name["posted | lr=low"][0].level_of == ()


def test_run_ids_are_stable_and_differ_by_seed_and_settings():
    a = build_keras_spec(_raw()).tasks()
    b = build_keras_spec(_raw()).tasks()
    assert [t.run_id for t in a] == [t.run_id for t in b]
    assert len(a) == 6 * 2
    ids = {}
    for t in a:
        ids.setdefault(t.variant.name, []).append(t.run_id)
    # A switch that makes one base the other shares the other's runs; every other run is its own.
    assert ids["posted | output=softmax"] == ids["fixed"] and ids["fixed | output=relu"] == ids["posted"]
    assert len({t.run_id for t in a}) == 8
    assert all(isinstance(t.trainer, KerasTrainer) for t in a)
    config = a[0].config.to_dict()
    assert config["kind"] == "keras" and config["builder"] == BUILDER and config["seed"] == 0
    assert json.loads(json.dumps(config)) == config  # what the worker receives is JSON


def test_reference_names_the_faulty_base_and_goes_to_the_manifest():
    spec = build_keras_spec(_raw(study={"builder": BUILDER, "data": DATA, "reference": "fixed"}))
    assert spec.faulty == "posted" and spec.reference == "fixed"
    tasks, about = spec.prepare()
    assert about["faulty"] == "posted" and about["reference"] == "fixed" and len(tasks) == 6 * 3  # seeds default 3
    assert spec.name == "build"  # the builder's name when the study names none


def test_a_level_with_changes_appends_them_to_the_base():
    raw = _raw(factors={"fix": {"lr10": {"changes": [{"op": "learning_rate", "factor": 0.1}]}}})
    spec = build_keras_spec(raw)
    level = dict((v.name, lv) for v, lv in spec.variants())["posted | fix=lr10"]
    assert level.settings == {"output": "relu", "lr": 0.01}
    assert level.changes == ({"op": "learning_rate", "factor": 0.1},)


def test_combos_switch_several_factors():
    spec = build_keras_spec(_raw(combos={"both": {"base": "posted", "output": "softmax", "lr": "low"}}))
    variant, level = spec.variants()[-1]
    assert variant.name == "posted | output=softmax + lr=low" and variant.factor is None
    assert level.settings == {"output": "softmax", "lr": 0.001}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(corpus={}), "unknown spec section [corpus]"),
    (lambda r: r["study"].pop("builder"), "[study] builder must be 'package.module:function'"),
    (lambda r: r["study"].update(data="not a ref"), "[study] data must be"),
    (lambda r: r["study"].update(reference="nobody"), "reference='nobody' must name one of exactly two bases"),
    (lambda r: r["study"].update(seeds=0), "[study] seeds must be a positive count"),
    (lambda r: r["study"].update(name="../x"), "must be a plain name"),
    (lambda r: r["factors"].update(depth=[]), "factor 'depth' needs levels"),
    (lambda r: r["factors"].update(fix={"a": {"changes": [{"op": "teleport"}]}}), "unknown change op 'teleport'"),
    (lambda r: r.update(fit={"epochs": 0}), "[fit] epochs must be a positive integer"),
    (lambda r: r.update(fit={"optimizer": "adam"}), "unknown key 'optimizer' in [fit]"),
    (lambda r: r.update(fit={"validation_split": 0.2}),
     "validation data comes from its data function; return (train, valid) from data()"),
    (lambda r: r.update(combos={"c": {"base": "posted", "output": "sigmoid"}}), "combo 'c': output=sigmoid"),
])
def test_bad_specs_are_one_line_errors_naming_the_fix(mutate, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        build_keras_spec(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_builder_that_cannot_be_imported_fails_before_anything_runs():
    spec = build_keras_spec(_raw(study={"builder": "no_such_module_here:build", "data": DATA}))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_here'"):
        spec.prepare()
    spec = build_keras_spec(_raw(study={"builder": "userstudy_models:no_such_function", "data": DATA}))
    with pytest.raises(ConfigError, match="has no 'no_such_function'"):
        spec.prepare()


def test_load_study_spec_dispatches_on_a_builder(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text(f'[study]\nbuilder = "{BUILDER}"\ndata = "{DATA}"\nseeds = 2\n[fit]\nepochs = 1\n'
                    '[factors]\nlr = [0.1, 0.001]\n', encoding="utf-8")
    spec = load_study_spec(mine, {"study": {"seeds": 3}})
    assert isinstance(spec, KerasSpec) and spec.seeds == (0, 1, 2) and spec.fit == {"epochs": 1}
    assert [lv.settings for lv in spec.factors["lr"].values()] == [{"lr": 0.1}, {"lr": 0.001}]
    assert isinstance(load_study_spec(None), Spec)  # no spec: the built-in default study
    with pytest.raises(ConfigError, match="--steps is for the built-in model"):
        load_study_spec(mine, {"budget": {"steps": 10}})


def test_a_function_becomes_its_reference_or_stays_in_this_process():
    from userstudy_models import build

    assert refs.to_ref(build, "builder") == BUILDER and not refs.needs_this_process(BUILDER)

    def local_builder(settings):
        return build(settings)

    ref = refs.to_ref(local_builder, "builder")
    assert refs.needs_this_process(ref) and refs.resolve(ref, "builder") is local_builder
    spec = build_keras_spec(_raw(study={"builder": ref, "data": DATA}))
    assert spec.local  # its runs must train in this process


def test_rebuild_entry_records_references_and_refuses_what_cannot_be_rebuilt():
    from userstudy_models import build, data

    entry = rebuild_entry({"builder": build, "data": data, "settings": {"lr": 0.1}, "fit": {"epochs": 2}})
    assert entry["builder"] == BUILDER and entry["data"] == DATA and entry["settings"] == {"lr": 0.1}
    assert entry["fit"] == {"epochs": 2} and entry["seed"] == 0
    with pytest.raises(ConfigError, match="rebuild needs 'data'"):
        rebuild_entry({"builder": build})
    with pytest.raises(ConfigError, match="settings must be JSON"):
        rebuild_entry({"builder": build, "data": data, "settings": {"f": build}})
    with pytest.raises(ConfigError, match="unknown keys"):
        rebuild_entry({"builder": build, "data": data, "model": 1})


def test_level_then_merges_settings_and_keeps_changes_once():
    a = Level({"lr": 1}, ({"op": "mask_zero", "layers": ["e"]},))
    b = Level({"lr": 2, "x": 1}, ({"op": "mask_zero", "layers": ["e"]}, {"op": "from_logits"}))
    c = a.then(b)
    assert c.settings == {"lr": 2, "x": 1}
    assert c.changes == ({"op": "mask_zero", "layers": ["e"]}, {"op": "from_logits"})

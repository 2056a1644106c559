"""Rules that read any Keras model: each fires on its pattern, stays silent on the healthy twin.

Records are hand-built (no training); model descriptions come from tiny Keras
models built, never trained.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from diagnose.findings import RULES, RunView, check_view
from diagnose.findings.rules_inputs import INPUT_RMS, PAD_SHARE

MATRICES = ("dense", "dense_1", "out")
VARIABLES = {"dense": [6, 16], "dense/bias": [16], "dense_1": [16, 16], "dense_1/bias": [16], "out": [16, 3],
             "out/bias": [3]}


def rule(rule_id: str):
    return next(r for r in RULES if r.spec.id == rule_id)


def record(n: int = 40, loss=None, grads=None, ratios=None, weights=None, **columns) -> pd.DataFrame:
    """A healthy Adam classifier's record: loss from 1.1 towards 0.05, ratios ~1e-3."""
    step = np.arange(1, n + 1) * 10
    cols = {"step": step, "epoch": step / 100,
            "loss": 0.05 + 1.05 * np.exp(-step / 80) if loss is None else loss(step)}
    cols["grad_norm/global"] = np.full(n, 0.5)
    for name in VARIABLES:
        cols[f"grad_norm/{name}"] = np.full(n, 0.2) if grads is None else grads(name, step)
        cols[f"update_ratio/{name}"] = np.full(n, 1e-3) if ratios is None else ratios(name, step)
        cols[f"weight_norm/{name}"] = np.full(n, 2.0) if weights is None else weights(name, step)
    cols.update(columns)
    return pd.DataFrame(cols)


def view(metrics, model=None, baselines=None, summary=None) -> RunView:
    model = {"kind": "keras", "layers": [], **(model or {})}
    base = {"ln_vocab": math.log(3), "unigram_entropy": 1.09, "loss_at_step0": 1.1, **(baselines or {})}
    return RunView({"model": model, "data": {}, "train": {}},
                   {"status": "completed", "baselines": base, "variables": VARIABLES, **(summary or {})}, metrics)


def test_the_healthy_record_has_no_finding():
    assert check_view(view(record())) == []


def test_a_converged_run_with_small_steps_is_not_tiny_steps():
    # Plain SGD near a minimum: gradients, hence steps, are small because there is little left to learn.
    converged = view(record(ratios=lambda name, s: np.full(len(s), 2e-5)))
    assert rule("tiny-steps")(converged) is None
    stuck = view(record(loss=lambda s: np.full(len(s), 1.08), ratios=lambda name, s: np.full(len(s), 2e-5)))
    assert rule("tiny-steps")(stuck) is not None


def test_steps_below_healthy_are_too_small_only_for_a_run_still_falling_far_from_its_goal():
    ratios = lambda name, s: np.full(len(s), 3e-4)  # noqa: E731  (3x below healthy, 3x above tiny)
    slow = view(record(loss=lambda s: 1.1 - 0.3 * s / s[-1], ratios=ratios))  # a quarter of the way, falling
    assert rule("tiny-steps")(slow) is not None
    flat = view(record(loss=lambda s: np.full(len(s), 1.09), ratios=ratios))  # nothing to learn: flat
    assert rule("tiny-steps")(flat) is None
    healthy = view(record(ratios=ratios))  # most of the way there
    assert rule("tiny-steps")(healthy) is None


def test_an_adaptive_optimiser_whose_rate_alone_moves_weights_healthily_is_not_tiny_steps():
    # Adam moves a weight by about its rate when the gradient keeps its sign: at 1e-3 on weights of RMS 0.2
    # that is 5e-3 of their scale. Ratios of 3e-4 then mean gradients that keep changing sign, not a small
    # rate; at a rate of 1e-6 the same ratios are the rate's doing.
    ratios = lambda name, s: np.full(len(s), 3e-4)  # noqa: E731
    metrics = record(loss=lambda s: 1.1 - 0.3 * s / s[-1], ratios=ratios)  # weight norms 2.0: RMS 0.2 in dense

    def under(rate):
        found = view(metrics)
        return RunView({**found.config, "train": {"optimizer": {"name": "adam", "learning_rate": rate}}},
                       found.summary, found.metrics)

    assert rule("tiny-steps")(under(1e-3)) is None
    tiny = rule("tiny-steps")(under(1e-6))
    assert tiny is not None and any(e.metric.startswith("learning rate / weight RMS") for e in tiny.evidence)
    sgd = view(metrics)  # plain SGD (no optimiser recorded): its steps are the rate times the gradient
    assert rule("tiny-steps")(sgd) is not None


def test_zero_initialised_biases_do_not_lift_the_median_above_tiny():
    # Biases start at 0: their ratios are large whatever the rate. Only the weight matrices count.
    ratios = lambda name, s: np.full(len(s), 0.5 if name.endswith("bias") else 2e-5)  # noqa: E731
    stuck = view(record(loss=lambda s: np.full(len(s), 1.08), ratios=ratios))
    assert rule("tiny-steps")(stuck) is not None


def _dead(name, s):
    # Gradients for the first few rows, then exactly zero except the output bias (which learns the prior).
    if name == "out/bias":
        return np.full(len(s), 0.1)
    return np.where(s <= 30, 5.0, 0.0)


def test_the_findings_order_does_not_depend_on_the_order_rules_are_declared(monkeypatch):
    from diagnose.findings import registry

    ratios = lambda name, s: np.where(s <= 30, 0.8, 0.0)  # noqa: E731
    dead = view(record(loss=lambda s: np.full(len(s), 1.09), grads=_dead, ratios=ratios))
    declared = [f.id for f in check_view(dead)]
    monkeypatch.setattr(registry, "RULES", list(reversed(registry.RULES)))
    assert len(declared) >= 3 and [f.id for f in check_view(dead)] == declared  # ranked by kind, cause, id


def test_a_dead_network_is_dead_network_and_huge_steps_not_tiny_steps():
    ratios = lambda name, s: np.where(s <= 30, 0.8, 0.0)  # noqa: E731  (a blow-up in the first rows)
    dead = view(record(loss=lambda s: np.full(len(s), 1.09), grads=_dead, ratios=ratios))
    ids = [f.id for f in check_view(dead)]
    assert "dead-network" in ids and "huge-steps" in ids and "tiny-steps" not in ids
    assert "vanishing-gradients" not in ids  # said once, by dead-network
    assert ids[0] == "huge-steps"  # the root cause ranks first
    assert rule("dead-network")(view(record())) is None


def test_adaptive_optimizer_blow_up_is_seen_in_the_weights():
    # Adam at a huge rate: ratios look modest late because the weights grew 50x; the loss got worse.
    grown = view(record(loss=lambda s: np.full(len(s), 25.0), ratios=lambda name, s: np.full(len(s), 0.02),
                        weights=lambda name, s: np.linspace(2.0, 100.0, len(s))))
    finding = rule("huge-steps")(grown)
    assert finding is not None and any("grown" in e.metric for e in finding.evidence)
    # The same growth with a falling loss is a model that learns (weights grow as it fits).
    learning = view(record(ratios=lambda name, s: np.full(len(s), 0.02),
                           weights=lambda name, s: np.linspace(2.0, 100.0, len(s))))
    assert rule("huge-steps")(learning) is None


def test_oscillation_is_measured_against_the_starting_loss():
    rng = np.random.default_rng(0)
    # A healthy run near 0 whose logged loss swings by 50% of almost nothing.
    near_zero = view(record(loss=lambda s: 0.01 + 0.005 * (np.arange(len(s)) % 2) + rng.normal(0, 1e-4, len(s))))
    assert rule("oscillating-loss")(near_zero) is None
    thrashing = view(record(loss=lambda s: 0.9 + 0.3 * (np.arange(len(s)) % 2)))
    assert rule("oscillating-loss")(thrashing) is not None


def test_swings_that_minibatch_noise_explains_are_not_oscillation():
    # Rows every 10 steps; per-step losses spread by 1.0 -> a row mean's noise is 0.32, rows differ by ~0.36.
    swings = lambda s: 0.8 + 0.15 * (np.arange(len(s)) % 2)  # noqa: E731
    noisy = view(record(loss=swings, loss_sd=np.full(40, 1.0)))
    assert rule("oscillating-loss")(noisy) is None
    quiet = view(record(loss=swings, loss_sd=np.full(40, 0.05)))
    assert rule("oscillating-loss")(quiet) is not None


def test_rows_cut_short_at_epoch_ends_are_expected_to_swing_more():
    # Epochs of 25 steps logged every 20: rows of 20 and 5 steps in turn. A 5-step mean is twice as
    # noisy as a 20-step one, so consecutive rows differ by ~0.08 from noise alone (per-step sd 0.2),
    # more than the 0.064 a uniform 12.5-step spacing would suggest.
    metrics = record(loss=lambda s: 0.8 + 0.21 * (np.arange(len(s)) % 2), loss_sd=np.full(40, 0.2))
    metrics["step"] = np.cumsum(np.tile([5, 20], 20))
    assert rule("oscillating-loss")(view(metrics)) is None
    metrics["loss_sd"] = 0.1  # half the noise: the same swings are now beyond it
    assert rule("oscillating-loss")(view(metrics)) is not None


def test_ignores_input_leans_on_the_shuffled_probe():
    probes = dict(probe_loss_real=np.full(40, 1.09), probe_loss_shuffled=np.full(40, 1.09),
                  probe_loss_zeroed=np.full(40, 1.6))  # zeroed inputs out of distribution: costlier for that alone
    flat = record(loss=lambda s: np.full(len(s), 1.09), **probes)
    assert rule("ignores-input")(view(flat, summary={"final": {"val_loss": 1.1}})) is not None
    uses = record(loss=lambda s: np.full(len(s), 1.09), **{**probes, "probe_loss_shuffled": np.full(40, 1.5)})
    assert rule("ignores-input")(view(uses, summary={"final": {"val_loss": 1.1}})) is None


def test_ignores_input_on_a_regression_compares_with_the_target_variance():
    probes = dict(probe_loss_real=np.full(40, 3.9), probe_loss_shuffled=np.full(40, 3.95))
    flat = view(record(loss=lambda s: np.full(len(s), 3.9), **probes), model={"loss": "mse"},
                baselines={"unigram_entropy": None, "ln_vocab": None, "target_variance": 4.0})
    assert rule("ignores-input")(flat) is not None
    fitted = view(record(loss=lambda s: np.full(len(s), 0.4), **probes), model={"loss": "mse"},
                  baselines={"unigram_entropy": None, "ln_vocab": None, "target_variance": 4.0})
    assert rule("ignores-input")(fitted) is None


@pytest.fixture(scope="module")
def describe():
    import keras

    from diagnose.instruments.describe import describe

    yield describe
    keras.backend.clear_session()


def _mlp(out_units, activation, loss, init="glorot_uniform"):
    import keras

    inp = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu", kernel_initializer=init)(inp)
    model = keras.Model(inp, keras.layers.Dense(out_units, activation=activation)(hidden))
    model.compile(optimizer="adam", loss=loss)
    return model


def test_softmax_over_one_unit(describe):
    import keras

    broken = describe(_mlp(1, "softmax", "binary_crossentropy"))
    assert rule("single-unit-softmax")(view(record(), model=broken)) is not None
    fine = describe(_mlp(1, "sigmoid", "binary_crossentropy"))
    assert rule("single-unit-softmax")(view(record(), model=fine)) is None
    # Keras 3 takes the loss from the logits under a softmax output whatever from_logits says: no fault.
    softmax_logits = describe(_mlp(3, "softmax", keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
    assert [f for f in check_view(view(record(), model=softmax_logits)) if f.kind == "root-cause"] == []


def test_a_binary_cross_entropy_wants_a_sigmoid_or_logits(describe):
    import keras

    from diagnose.findings.fixes import remedy_for

    relu_output = rule("relu-output-crossentropy")
    for activation in (None, "relu"):  # from_logits forgotten; a ReLU unit clipped at 1e-7 below
        found = relu_output(view(record(), model=describe(_mlp(1, activation, "binary_crossentropy"))))
        assert found is not None and "BinaryCrossentropy(from_logits=True)" in found.fix
    relu = view(record(), model=describe(_mlp(1, "relu", "binary_crossentropy")))
    assert remedy_for("relu-output-crossentropy", relu).change == {"op": "output_activation", "activation": "sigmoid"}
    for fine in (_mlp(1, "sigmoid", "binary_crossentropy"),
                 _mlp(1, None, keras.losses.BinaryCrossentropy(from_logits=True))):
        assert relu_output(view(record(), model=describe(fine))) is None


def test_constant_init_of_a_hidden_layer(describe):
    zeros = describe(_mlp(3, "softmax", "sparse_categorical_crossentropy", init="zeros"))
    finding = rule("constant-init")(view(record(), model=zeros))
    assert finding is not None and finding.evidence[0].observed == "Zeros"
    assert rule("constant-init")(view(record(), model=describe(_mlp(3, "softmax", "mse")))) is None


def test_unscaled_inputs_unless_normalised_first(describe):
    import keras

    raw = describe(_mlp(3, "softmax", "sparse_categorical_crossentropy"))
    name = raw["layers"][0]["name"]
    stuck = {"loss": lambda s: np.full(len(s), 1.09)}  # the run learned nothing
    pixels = record(**stuck, **{f"input_rms/{name}": np.full(40, 120.0)})
    assert rule("unscaled-inputs")(view(pixels, model=raw)) is not None
    assert rule("unscaled-inputs")(view(record(**stuck, **{f"input_rms/{name}": np.full(40, 1.0)}), model=raw)) \
        is None
    # Large inputs the model learned from anyway (a rate small enough) are no cause of anything.
    assert rule("unscaled-inputs")(view(record(**{f"input_rms/{name}": np.full(40, 120.0)}), model=raw)) is None
    inp = keras.Input((6,))
    scaled = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Rescaling(1 / 255)(inp)))
    scaled.compile(optimizer="adam", loss="mse")
    scaled = describe(scaled)
    pixels = record(**stuck, **{f"input_rms/{scaled['layers'][0]['name']}": np.full(40, 120.0)})
    assert rule("unscaled-inputs")(view(pixels, model=scaled)) is None


def _gru(mask_zero):
    import keras

    inp = keras.Input((20,), dtype="int32")
    h = keras.layers.GRU(8)(keras.layers.Embedding(50, 8, mask_zero=mask_zero)(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_padding_read_by_an_unmasked_recurrent_layer(describe):
    unmasked = describe(_gru(False))
    padded = record(**{f"input_zero_frac/{unmasked['layers'][0]['name']}": np.full(40, 0.8)})
    assert rule("unmasked-padding")(view(padded, model=unmasked)) is not None
    assert rule("unmasked-padding")(view(padded, model=describe(_gru(True)))) is None
    short = record(**{f"input_zero_frac/{unmasked['layers'][0]['name']}": np.full(40, 0.1)})
    assert rule("unmasked-padding")(view(short, model=unmasked)) is None


def test_every_rule_names_a_known_figure_and_a_threshold_module_constant_exists():
    from diagnose.findings.registry import FIGURES

    assert all(r.spec.figure in FIGURES for r in RULES)
    assert len({r.spec.id for r in RULES}) == len(RULES)
    assert INPUT_RMS > 1 and 0 < PAD_SHARE < 1


def test_attention_on_padding_through_its_own_mask_is_the_cause_in_a_run_that_failed():
    n = 40
    stuck = lambda step: np.full(len(step), 1.1)  # noqa: E731 - at chance (ln 3) throughout
    on_padding = {"attn_entropy/hop1": np.full(n, 1.0), "attn_top1/hop1": np.full(n, 0.02),
                  "attn_pad_mass/hop1": np.full(n, 1.0)}
    masked = rule("padding-attention")(view(record(loss=stuck, **on_padding, **{"attn_masked/hop1": np.full(n, 0.15)})))
    assert masked is not None and masked.kind == "root-cause"
    assert "ids != 0" in masked.fix
    # Unmasked, reading padding is how the model was built: no cause named from it.
    assert rule("padding-attention")(view(record(loss=stuck, **on_padding, **{"attn_masked/hop1": np.zeros(n)}))) \
        is None
    # The same mass in a run that learned its task did no harm.
    assert rule("padding-attention")(view(record(**on_padding, **{"attn_masked/hop1": np.full(n, 0.15)}))) is None


def test_a_model_measured_affine_is_one_linear_map_whatever_its_layers_read_as():
    stuck = lambda step: np.full(len(step), 1.1)  # noqa: E731
    layers = [{"class": "InputLayer", "name": "x"},
              {"class": "Dense", "name": "dense", "config": {"activation": "linear"}, "inbound": [["x"]]},
              {"class": "SumPooling", "name": "sum_pooling", "inbound": [["dense"]]},  # a layer of the user's own
              {"class": "Dense", "name": "out", "config": {"activation": "softmax"}, "inbound": [["sum_pooling"]]}]
    model = {"layers": layers, "outputs": ["out"]}

    def with_deviation(deviation):
        return view(record(loss=stuck), model, summary={"contract": {"affine": {"deviation": deviation}}})

    found = rule("missing-activation")(with_deviation(3e-7))
    assert found is not None and "dense" in found.title
    assert rule("missing-activation")(with_deviation(0.2)) is None  # something bends: not one linear map
    assert rule("missing-activation")(view(record(loss=stuck), model)) is None  # unmeasured: the custom layer may

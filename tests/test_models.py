"""Tests of the MemN2N model and its configuration, against hand counts and numpy references."""

import math

import keras
import numpy as np
import pytest

from conftest import SMALL_V
from diagnose.models import PRESETS, MemN2N, MemN2NConfig, apply_overrides, build_memn2n, field_choices, token_loss

M, D = 8, 16  # memory slots and embedding size of the tiny models (conftest.TINY_SIZES)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# -- shapes and parameter counts ----------------------------------------------------


@pytest.mark.parametrize("preset_name", ["paper", "as-posted"])
@pytest.mark.parametrize("training", [False, True])
def test_output_shape_is_batch_by_vocab(preset_name, training, model_config, seeded, random_windows):
    model = build_memn2n(model_config(preset_name))
    windows, _ = random_windows
    out = _np(model(windows[:5], training=training))
    assert out.shape == (5, SMALL_V)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    if preset_name == "as-posted":
        assert np.all(out >= 0.0)  # a ReLU output layer


def _expected_params(V, M, D, K, tying, temporal, h_wiring, output):
    """Parameter count worked out from the architecture, not from the model."""
    per_encoder = V * D + (M * D if temporal == "learned" else 0)  # embedding (+ T)
    n_encoders = {"layerwise": 2, "adjacent": K + 1, "untied": 2 * K}[tying]
    n_h = K if tying == "untied" else 1
    h = D * D if h_wiring == "state" else M * D + D  # (D x D, no bias) or Dense(D) on (B, M)
    out = D * V if output == "softmax" else D * V + V  # W without / with bias
    return n_encoders * per_encoder + n_h * h + out


@pytest.mark.parametrize("tying", ["layerwise", "adjacent", "untied"])
@pytest.mark.parametrize("temporal", ["learned", "none", "sinusoidal"])
@pytest.mark.parametrize("h_wiring,output", [("state", "softmax"), ("scores", "relu"),
                                             ("scores", "softmax"), ("state", "relu")])
def test_parameter_count_matches_hand_count(tying, temporal, h_wiring, output):
    # Distinct sizes so that a transposed or misplaced dimension changes the count.
    V, Mm, Dd, K = 35, 9, 12, 3
    cfg = MemN2NConfig(vocab_size=V, memory_size=Mm, embed_dim=Dd, hops=K, tying=tying,
                       temporal=temporal, h_wiring=h_wiring, output=output)
    model = build_memn2n(cfg)
    expected = _expected_params(V, Mm, Dd, K, tying, temporal, h_wiring, output)
    assert model.count_params() == expected
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    assert not model.non_trainable_weights
    assert len(model.h_layers) == (K if tying == "untied" else 1)


def test_presets_differ_from_the_paper_in_the_posted_ways():
    paper, posted = PRESETS["paper"], PRESETS["as-posted"]
    assert (paper.h_wiring, paper.output, paper.loss_reduction, paper.clip) == ("state", "softmax", "sum", "global")
    assert (posted.h_wiring, posted.output, posted.loss_reduction, posted.clip) == (
        "scores", "relu", "mean", "per_tensor")
    assert posted.clip_norm == paper.clip_norm == 50.0  # clipnorm = 50. in the question
    assert posted.learning_rate == paper.learning_rate == 0.01  # SGD(lr = 0.01)


# -- H wiring ----------------------------------------------------------------------


def test_h_kernel_shape_follows_the_wiring(model_config):
    posted = build_memn2n(model_config("as-posted"))
    paper = build_memn2n(model_config("paper"))
    (h_posted,), (h_paper,) = posted.h_layers, paper.h_layers
    assert tuple(h_posted.kernel.shape) == (M, D)  # reads the (B, M) match scores
    assert h_posted.bias is not None and tuple(h_posted.bias.shape) == (D,)
    assert tuple(h_paper.kernel.shape) == (D, D)  # reads the (B, D) state
    assert h_paper.bias is None


def _two_memories(rng):
    a = rng.integers(3, SMALL_V, size=(6, M)).astype("int32")
    b = rng.integers(3, SMALL_V, size=(6, M)).astype("int32")
    assert np.any(a != b, axis=1).all()
    return a, b


def test_scores_wiring_h_term_depends_on_memory(model_config, seeded):
    model = build_memn2n(model_config("as-posted"))
    a, b = _two_memories(np.random.default_rng(1))
    _, ia = model(a, return_internals=True)
    _, ib = model(b, return_internals=True)
    h1a, h1b = _np(ia["h_term"][0]), _np(ib["h_term"][0])
    assert np.abs(h1a - h1b).max() > 1e-6
    # H is a Dense(D) with bias on the pre-softmax scores of the same hop.
    (h,) = model.h_layers
    ref = _np(ia["scores"][0]) @ _np(h.kernel) + _np(h.bias)
    np.testing.assert_allclose(h1a, ref, rtol=1e-5, atol=1e-6)


def test_state_wiring_first_hop_h_term_is_constant(model_config, seeded):
    cfg = model_config("paper")
    model = build_memn2n(cfg)
    a, b = _two_memories(np.random.default_rng(1))
    _, ia = model(a, return_internals=True)
    _, ib = model(b, return_internals=True)
    (h,) = model.h_layers
    kernel = _np(h.kernel)
    # u^1 is the constant query (0.1, ..., 0.1): H u^1 does not see the memory.
    u1 = np.full((a.shape[0], D), cfg.query_value, dtype=np.float32)
    np.testing.assert_array_equal(_np(ia["h_term"][0]), _np(ib["h_term"][0]))
    np.testing.assert_allclose(_np(ia["h_term"][0]), u1 @ kernel, rtol=1e-5, atol=1e-7)
    # Later hops apply H to the previous state, which does depend on the memory.
    np.testing.assert_allclose(_np(ia["h_term"][1]), _np(ia["state"][0]) @ kernel, rtol=1e-5, atol=1e-6)
    assert np.abs(_np(ia["h_term"][1]) - _np(ib["h_term"][1])).max() > 0


def test_scores_wiring_with_masked_padding_feeds_zero_for_pad_slots(model_config, seeded):
    model = build_memn2n(model_config("paper", h_wiring="scores", padding="masked"))
    windows = np.random.default_rng(2).integers(3, SMALL_V, size=(4, M)).astype("int32")
    windows[:, :3] = 0
    _, internals = model(windows, return_internals=True)
    (h,) = model.h_layers
    scores = _np(internals["scores"][0]).copy()
    scores[:, :3] = 0.0
    np.testing.assert_allclose(_np(internals["h_term"][0]), scores @ _np(h.kernel) + _np(h.bias),
                               rtol=1e-5, atol=1e-6)


# -- loss ----------------------------------------------------------------------------


def test_initial_loss_of_paper_preset_is_about_ln_v(model_config, small_corpus, seeded):
    from diagnose.memn2n.data import windows as cut_windows

    cfg = model_config("paper")
    model = build_memn2n(cfg)
    positions = np.random.default_rng(3).choice(small_corpus.num_windows("train"), size=512, replace=False)
    x, y = cut_windows(small_corpus.train, M, positions)
    loss = float(np.mean(_np(token_loss(cfg, y, model(x)))))
    assert abs(loss - math.log(SMALL_V)) < 0.05


def _keras_categorical_ce_reference(targets, outputs, eps=1e-7):
    """Keras' categorical cross-entropy on probabilities, written out in numpy."""
    p = outputs.astype(np.float64) / outputs.astype(np.float64).sum(axis=-1, keepdims=True)
    p = np.clip(p, eps, 1.0 - eps)
    return -np.log(p[np.arange(len(targets)), targets])


def test_relu_token_loss_matches_keras_categorical_ce_on_model_outputs(model_config, seeded, random_windows):
    cfg = model_config("as-posted")
    model = build_memn2n(cfg)
    windows, targets = random_windows
    outputs = _np(model(windows))
    got = _np(token_loss(cfg, targets, outputs))
    ref = _keras_categorical_ce_reference(targets, outputs)
    assert np.isfinite(ref).sum() >= len(targets) // 2  # most rows have some positive unit
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_relu_token_loss_normalises_and_clips():
    cfg = MemN2NConfig(vocab_size=4, output="relu")
    outputs = np.array([[1.0, 3.0, 0.0, 0.0],  # target 1: p = 3/4
                        [0.0, 2.0, 2.0, 0.0],  # target 0: p = 0, clipped to 1e-7
                        [0.0, 0.0, 5.0, 0.0],  # target 2: p = 1, clipped to 1 - 1e-7
                        [0.5, 0.5, 0.5, 0.5]], np.float32)  # target 3: p = 1/4
    targets = np.array([1, 0, 2, 3])
    got = _np(token_loss(cfg, targets, outputs))
    np.testing.assert_allclose(got, [-math.log(0.75), -math.log(1e-7), -math.log(1 - 1e-7), math.log(4)],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got, _keras_categorical_ce_reference(targets, outputs), rtol=1e-4, atol=1e-6)
    # An all-zero ReLU row has no distribution: NaN, as in Keras.
    nan = _np(token_loss(cfg, np.array([0]), np.zeros((1, 4), np.float32)))
    assert np.isnan(nan).all()


def test_softmax_token_loss_is_log_softmax_cross_entropy():
    cfg = MemN2NConfig(vocab_size=5)
    logits = np.random.default_rng(4).normal(size=(6, 5)).astype(np.float32) * 3
    targets = np.array([0, 1, 2, 3, 4, 2])
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    ref = np.log(np.exp(shifted).sum(axis=-1)) - shifted[np.arange(6), targets]
    np.testing.assert_allclose(_np(token_loss(cfg, targets, logits)), ref, rtol=1e-5, atol=1e-6)


# -- attention and padding -----------------------------------------------------------


def _padded_windows():
    windows = np.random.default_rng(5).integers(3, SMALL_V, size=(6, M)).astype("int32")
    for i in range(6):
        windows[i, :i] = 0  # 0..5 leading pad slots (never the current word)
    return windows


def test_masked_padding_gets_no_attention(model_config, seeded):
    model = build_memn2n(model_config("paper", padding="masked"))
    windows = _padded_windows()
    _, internals = model(windows, return_internals=True)
    pad = windows == 0
    np.testing.assert_array_equal(_np(internals["pad_mask"]), pad)
    for attention in internals["attention"]:
        att = _np(attention)
        np.testing.assert_allclose(att.sum(axis=-1), 1.0, atol=1e-5)
        assert att[pad].max() < 1e-6
        np.testing.assert_allclose(np.where(pad, 0.0, att).sum(axis=-1), 1.0, atol=1e-5)


def test_encoded_padding_attends_to_pad_slots(model_config, seeded):
    model = build_memn2n(model_config("as-posted"))  # padding="encoded"
    windows = _padded_windows()
    _, internals = model(windows, return_internals=True)
    pad = windows == 0
    for attention in internals["attention"]:
        att = _np(attention)
        np.testing.assert_allclose(att.sum(axis=-1), 1.0, atol=1e-5)
        # Small initial scores: every slot, pad included, gets a share near 1/M.
        assert att[pad].min() > 0.1 / M


def test_sinusoidal_encoding_has_no_trainable_table_and_matches_vaswani(model_config, seeded):
    model = build_memn2n(model_config("paper", temporal="sinusoidal"))
    assert not any("temporal" in w.path for w in model.weights)
    windows = np.random.default_rng(6).integers(3, SMALL_V, size=(2, M)).astype("int32")
    _, internals = model(windows, return_internals=True)
    table = _np(internals["encoders"][0]["a_temporal"])
    pos = np.arange(M)[:, None]
    i = np.arange(D // 2)[None, :]
    angle = pos / 10000.0 ** (2 * i / D)
    ref = np.empty((M, D))
    ref[:, 0::2], ref[:, 1::2] = np.sin(angle), np.cos(angle)
    np.testing.assert_allclose(table, ref, atol=1e-5)
    # The learned variant does own a trainable (M, D) table per encoder.
    learned = build_memn2n(model_config("paper", temporal="learned"))
    tables = [w for w in learned.trainable_weights if "temporal" in w.path]
    assert [tuple(w.shape) for w in tables] == [(M, D), (M, D)]


# -- serialization -------------------------------------------------------------------


@pytest.mark.parametrize("preset_name", ["paper", "as-posted"])
def test_save_and_reload_round_trip(preset_name, model_config, seeded, random_windows, tmp_path):
    model = build_memn2n(model_config(preset_name))
    windows, _ = random_windows
    before = _np(model(windows))
    path = tmp_path / "memn2n.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MemN2N)
    assert loaded.cfg == model.cfg
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(_np(a), _np(b))
    np.testing.assert_array_equal(_np(loaded(windows)), before)


# -- configuration -------------------------------------------------------------------


def test_every_choice_of_every_factor_builds_and_runs(model_config, random_windows):
    windows, _ = random_windows
    for name, choices in field_choices().items():
        for choice in choices:
            cfg = model_config("paper", **{name: choice})
            assert getattr(cfg, name) == choice
            out = _np(build_memn2n(cfg)(windows[:3]))
            assert out.shape == (3, SMALL_V), (name, choice)


def test_apply_overrides_parses_strings_to_field_types():
    cfg = apply_overrides(PRESETS["paper"], {"memory_size": "8", "dropout_rate": "0.25", "output": "relu"})
    assert cfg.memory_size == 8 and isinstance(cfg.memory_size, int)
    assert cfg.dropout_rate == 0.25 and isinstance(cfg.dropout_rate, float)
    assert cfg.output == "relu"
    assert PRESETS["paper"].memory_size == 100  # the preset itself is untouched


def test_apply_overrides_rejects_unknown_key_listing_valid_keys():
    with pytest.raises(ValueError) as info:
        apply_overrides(PRESETS["paper"], {"memroy_size": 8})
    msg = str(info.value)
    assert "memroy_size" in msg
    for valid in ("memory_size", "embed_dim", "h_wiring", "temporal_init", "batch_size"):
        assert valid in msg


def test_apply_overrides_rejects_bad_literal_listing_choices():
    with pytest.raises(ValueError) as info:
        apply_overrides(PRESETS["paper"], {"output": "sigmoid"})
    msg = str(info.value)
    assert "output" in msg and "sigmoid" in msg
    assert "softmax" in msg and "relu" in msg


@pytest.mark.parametrize("key,value", [("hops", "three"), ("hops", 2.5), ("embed_dim", "16.5"),
                                       ("learning_rate", "fast"), ("memory_size", None), ("hops", [2])])
def test_apply_overrides_rejects_bad_type(key, value):
    with pytest.raises(ValueError, match=key):
        apply_overrides(PRESETS["paper"], {key: value})


def test_apply_overrides_rejects_bool_for_int_field():
    with pytest.raises(ValueError, match="hops"):
        apply_overrides(PRESETS["paper"], {"hops": True})


@pytest.mark.parametrize("key,value", [("hops", 0), ("dropout_rate", 1.0), ("learning_rate", -0.1),
                                       ("vocab_size", 2), ("lr_anneal", 0.5)])
def test_apply_overrides_rejects_out_of_range(key, value):
    with pytest.raises(ValueError, match=key):
        apply_overrides(PRESETS["paper"], {key: value})


@pytest.mark.parametrize("value,expected", [(0.1, 0.1), ("0.02", 0.02), ("ones", "ones"),
                                            ("uniform", "uniform"), ("glorot_uniform", "glorot_uniform")])
def test_temporal_init_accepts_std_or_initializer_name(value, expected, model_config):
    cfg = apply_overrides(PRESETS["paper"], {"temporal_init": value})
    assert cfg.temporal_init == expected
    assert type(cfg.temporal_init) is type(expected)
    # and the model builds with it
    build_memn2n(model_config("paper", temporal_init=value))


def test_temporal_init_ones_gives_a_table_of_ones(model_config):
    model = build_memn2n(model_config("paper", temporal_init="ones"))
    tables = [w for w in model.weights if "temporal" in w.path]
    assert tables and all(np.array_equal(_np(t), np.ones((M, D))) for t in tables)


@pytest.mark.parametrize("value", ["nonsense", "-1", 0.0, -0.05, "", None])
def test_temporal_init_rejects_nonsense(value):
    with pytest.raises(ValueError, match="temporal_init"):
        apply_overrides(PRESETS["paper"], {"temporal_init": value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_temporal_init_rejects_non_finite_std(value):
    with pytest.raises(ValueError, match="temporal_init"):
        apply_overrides(PRESETS["paper"], {"temporal_init": value})


def test_every_listed_initializer_name_is_a_keras_initializer():
    import keras

    from diagnose.models.config import INITIALIZERS

    for name in INITIALIZERS:
        assert isinstance(keras.initializers.get(name), keras.initializers.Initializer), name


# -- the hops' contractions ------------------------------------------------------------


def test_hop_contractions_give_einsum_values_and_gradients_bit_for_bit():
    """match_scores and read_out write their gradients by hand (a broadcast product for
    the memories' outer product): values and both gradients must be the einsum's own."""
    import tensorflow as tf

    from diagnose.models.memn2n import match_scores, read_out

    rng = np.random.default_rng(3)
    B, Mm, Dd = 5, 7, 6  # distinct sizes: a swapped axis cannot pass
    state, keys = (tf.constant(rng.normal(size=s).astype("float32")) for s in [(B, Dd), (B, Mm, Dd)])
    attention, values = (tf.constant(rng.normal(size=s).astype("float32")) for s in [(B, Mm), (B, Mm, Dd)])
    up_scores = tf.constant(rng.normal(size=(B, Mm)).astype("float32"))
    up_readout = tf.constant(rng.normal(size=(B, Dd)).astype("float32"))

    def value_and_grads(fn, x, y, upstream):
        with tf.GradientTape() as tape:
            tape.watch([x, y])
            out = fn(x, y)
            weighted = tf.reduce_sum(out * upstream)
        return [_np(t) for t in (out, *tape.gradient(weighted, [x, y]))]

    pairs = [(match_scores, lambda u, m: tf.einsum("bd,bmd->bm", u, m), state, keys, up_scores),
             (read_out, lambda a, c: tf.einsum("bm,bmd->bd", a, c), attention, values, up_readout)]
    for mine, reference, x, y, upstream in pairs:
        got, want = value_and_grads(mine, x, y, upstream), value_and_grads(reference, x, y, upstream)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_array_equal(g, w)
        # and the memories' gradient is the outer product it should be
        outer = (_np(upstream)[:, :, None] * _np(x)[:, None, :] if mine is match_scores
                 else _np(x)[:, :, None] * _np(upstream)[:, None, :])
        np.testing.assert_allclose(got[2], outer, rtol=1e-6)

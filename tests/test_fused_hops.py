"""The fused hop kernel against the hop-by-hop model: same numbers, same gradients, right choice of path."""

import dataclasses

import numpy as np
import pytest

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

import keras  # noqa: E402

from diagnose.models import MemN2NConfig, build_memn2n  # noqa: E402
from diagnose.models import fused_hops as fused_module  # noqa: E402

INTERNALS = ("scores", "attention", "h_term", "readout", "state")
# Distinct sizes, so that a transposed or misplaced axis cannot line up by chance.
SMALL = MemN2NConfig(vocab_size=50, memory_size=9, embed_dim=10, hops=3, batch_size=4)


def _windows(cfg, batch, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, cfg.vocab_size, (batch, cfg.memory_size)).astype(np.int32)
    w[0, :3] = 0  # a padded start of stream
    w[2, :-1] = 0  # only the current word
    return tf.constant(w)


def _run(model, kind, windows, jit):
    """Outputs, stacked internals and dense gradients of a loss touching the output and every internal."""
    cfg = model.cfg
    rng = np.random.default_rng(1)
    b = windows.shape[0]
    weights = {k: tf.constant(rng.normal(size=(b, cfg.hops, cfg.memory_size if k in ("scores", "attention")
                                                else cfg.embed_dim)).astype(np.float32)) for k in INTERNALS}
    out_w = tf.constant(rng.normal(size=(b, cfg.vocab_size)).astype(np.float32))
    model.hop_kernel = kind

    @tf.function(jit_compile=jit, autograph=False)
    def f(w):
        with tf.GradientTape() as tape:
            out, internals = model(w, training=True, return_internals=True)
            loss = tf.reduce_sum(out * out_w)
            for k in INTERNALS:
                loss += 0.3 * tf.reduce_sum(tf.stack(internals[k], axis=1) * weights[k])
        grads = tape.gradient(loss, model.trainable_variables)
        return out, [tf.stack(internals[k], axis=1) for k in INTERNALS], grads

    out, internals, grads = f(windows)
    dense = [tf.math.unsorted_segment_sum(g.values, g.indices, g.dense_shape[0])
             if isinstance(g, tf.IndexedSlices) else g for g in grads]
    return out.numpy(), [x.numpy() for x in internals], [g.numpy() for g in dense], grads


def _assert_same(a, b):
    out_a, int_a, grad_a, _ = a
    out_b, int_b, grad_b, _ = b
    np.testing.assert_allclose(out_b, out_a, rtol=1e-5, atol=1e-6)
    for name, x, y in zip(INTERNALS, int_a, int_b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)
    for x, y in zip(grad_a, grad_b):
        scale = np.abs(x).max()
        assert scale > 0  # every variable gets a gradient, so a dropped one cannot pass as equal
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("temporal", ["learned", "none", "sinusoidal"])
@pytest.mark.parametrize("padding", ["masked", "encoded"])
@pytest.mark.parametrize("h_wiring,relu_fraction", [("state", 0.5), ("scores", 0.0)])
def test_fused_kernel_matches_hop_by_hop_values_and_gradients(temporal, padding, h_wiring, relu_fraction):
    cfg = dataclasses.replace(SMALL, temporal=temporal, padding=padding, h_wiring=h_wiring,
                              relu_fraction=relu_fraction)
    keras.utils.set_random_seed(0)
    model = build_memn2n(cfg)
    windows = _windows(cfg, 7)
    _assert_same(_run(model, "layered", windows, jit=False), _run(model, "fused", windows, jit=False))


@pytest.mark.parametrize("h_wiring", ["state", "scores"])
def test_fused_kernel_matches_under_xla_over_several_tiles_with_a_ragged_last_one(monkeypatch, h_wiring):
    # Tiles of 2 examples for a batch of 7: four tiles, the last padded with an empty window.
    monkeypatch.setattr(fused_module, "_TILE_BYTES", 2 * 2 * SMALL.memory_size * SMALL.embed_dim * 4)
    assert fused_module.tile_size(SMALL.memory_size, SMALL.embed_dim) == 2
    cfg = dataclasses.replace(SMALL, h_wiring=h_wiring)
    keras.utils.set_random_seed(1)
    model = build_memn2n(cfg)
    windows = _windows(cfg, 7, seed=3)
    _assert_same(_run(model, "layered", windows, jit=True), _run(model, "fused", windows, jit=True))


@pytest.mark.parametrize("vocab_size,dense", [(30, True), (50, False)])
def test_table_gradients_are_dense_only_where_the_table_is_smaller_than_a_batch_lookup(vocab_size, dense):
    # batch_size 4 x memory 9 = 36 lookups: a 30-row table gets dense gradients, a 50-row one slices.
    cfg = dataclasses.replace(SMALL, vocab_size=vocab_size)
    keras.utils.set_random_seed(2)
    model = build_memn2n(cfg)
    windows = _windows(cfg, 4)
    layered, fused = _run(model, "layered", windows, jit=False), _run(model, "fused", windows, jit=False)
    _assert_same(layered, fused)
    embedding = [g for g, v in zip(fused[3], model.trainable_variables) if "embedding" in v.path]
    assert len(embedding) == 2
    assert all(isinstance(g, tf.IndexedSlices) != dense for g in embedding)


def test_auto_picks_the_fused_kernel_only_where_it_applies_and_pays():
    paper = MemN2NConfig(vocab_size=100)  # the paper's sizes: 15 MB of keys and values per batch
    tiny = dataclasses.replace(paper, memory_size=8, embed_dim=16, batch_size=32)
    assert build_memn2n(paper)._fused(training=True)
    assert not build_memn2n(tiny)._fused(training=True)  # fits in cache: the tile loop only adds work
    assert not build_memn2n(dataclasses.replace(paper, tying="adjacent"))._fused(training=False)
    dropout = build_memn2n(dataclasses.replace(paper, dropout="both"))
    assert not dropout._fused(training=True)
    assert dropout._fused(training=False)  # no dropout at evaluation: every hop reads the same memories
    forced = build_memn2n(dataclasses.replace(tiny, tying="untied"))
    forced.hop_kernel = "fused"
    with pytest.raises(ValueError, match="layer-wise tying"):
        forced._fused(training=False)
    forced.hop_kernel = "fast"
    with pytest.raises(ValueError, match="auto, fused, layered"):
        forced._fused(training=False)


@pytest.mark.slow  # three XLA-compiled trainings, ~22 s under load
def test_training_with_the_fused_kernel_follows_the_hop_by_hop_run_and_repeats_exactly(small_corpus):
    from conftest import _tiny_run_config

    from diagnose.memn2n.steps import MemN2NSteps

    cfg = _tiny_run_config("paper", jit_compile=True)
    positions = np.random.default_rng(0).integers(0, small_corpus.num_windows("train"), (4, 5, 32)).astype(np.int32)
    rows, weights = {}, {}
    for kind in ("layered", "fused", "fused again"):
        trainer = MemN2NSteps(cfg, small_corpus)
        trainer.model.hop_kernel = kind.split()[0]  # before the step is first traced
        rows[kind] = []
        for chunk in positions:
            trainer.train_chunk(tf.constant(chunk))
            rows[kind].append(trainer.read_and_reset())
        weights[kind] = [v.numpy() for v in trainer.model.trainable_variables]
    # Every logged figure (loss, gradient norms and update ratios per variable,
    # attention per hop, branch balance, output health) agrees over 20 steps.
    for layered, fused in zip(rows["layered"], rows["fused"]):
        assert set(layered["row"]) == set(fused["row"]) and len(layered["row"]) > 20
        for key, value in layered["row"].items():
            np.testing.assert_allclose(fused["row"][key], value, rtol=1e-3, atol=1e-6, err_msg=key)
        np.testing.assert_array_equal(fused["histogram"], layered["histogram"])  # attention argmax per hop
        assert fused["diverged"] is layered["diverged"] is None
    for a, b in zip(weights["layered"], weights["fused"]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
    # Same config and seed, same numbers: the kernel is deterministic on CPU.
    for a, b in zip(rows["fused"], rows["fused again"]):
        assert b["row"] == a["row"]
        np.testing.assert_array_equal(b["histogram"], a["histogram"])
    for a, b in zip(weights["fused"], weights["fused again"]):
        np.testing.assert_array_equal(b, a)
    assert not np.allclose(weights["layered"][0], MemN2NSteps(cfg, small_corpus).model.trainable_variables[0].numpy())

"""Each instrument against a slow reference computed outside the graph, on tiny models."""

import dataclasses
import math

import numpy as np
import pytest

from diagnose import load_run, runrecord
from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

from diagnose.instruments import attention, measures, output_health  # noqa: E402
from diagnose.instruments.family import HISTOGRAM, AttentionSite, Step  # noqa: E402
from diagnose.memn2n.train import MemN2NSteps, dedupe_slices, train  # noqa: E402


def _attention(*sites) -> dict:
    """The attention family's columns for hand-set (probs, pad) sites, as floats."""
    row = attention.measure(Step(names=[], norms=[], attention=[AttentionSite(tf.constant(p), tf.constant(pad))
                                                                 for p, pad in sites]))
    row.pop(HISTOGRAM)
    return {k: float(v) for k, v in measures.scalars(row).items()}


def _output(outputs, targets, kind, parts=None) -> dict:
    row = output_health.measure(Step(names=[], norms=[], outputs=tf.constant(outputs), labels=tf.constant(targets),
                                     output_kind=kind, parts=parts))
    return {k: float(v) for k, v in measures.scalars(row).items()}


def _trainer(run_config, small_corpus, preset="paper", **model):
    cfg = run_config(preset, model=model)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=small_corpus.vocab_size))
    return MemN2NSteps(cfg, small_corpus)


def test_attention_measures_match_numpy_on_hand_set_attention():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 0.5, 0.5]], np.float32)
    pad = np.array([[False] * 4, [False] * 4, [True, True, False, False]])
    got = _attention((p, pad))
    ent = [-(row[row > 0] * np.log(row[row > 0])).sum() for row in p]
    n_real = (~pad).sum(axis=1)
    assert got["attn_entropy/hop1"] == pytest.approx(np.mean(np.array(ent) / np.log(n_real)), rel=1e-5)
    assert got["attn_top1/hop1"] == pytest.approx(np.mean(p.max(axis=1)), rel=1e-6)
    assert got["attn_pad_mass/hop1"] == pytest.approx(0.0, abs=1e-7)
    leaky = p.copy()
    leaky[2] = [0.1, 0.1, 0.4, 0.4]
    got = _attention((p, pad), (leaky, pad))
    assert got["attn_pad_mass/hop2"] == pytest.approx(0.2 / 3, rel=1e-5)


def test_argmax_histogram_counts_winning_slots():
    p = tf.constant([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    assert measures.argmax_histogram(p).numpy().tolist() == [1.0, 2.0, 0.0]


def test_sites_of_one_shape_are_measured_together_as_each_alone():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 6, 7)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    pad = rng.random((6, 7)) < 0.3
    together = _attention(*[(p[k], pad) for k in range(3)])
    for k in range(3):
        alone = _attention((p[k], pad))
        for name in ("attn_entropy", "attn_top1", "attn_pad_mass"):
            assert together[f"{name}/hop{k + 1}"] == pytest.approx(alone[f"{name}/hop1"], rel=1e-5)
    np.testing.assert_array_equal(measures.argmax_histogram(tf.constant(p)).numpy(),
                                  np.stack([measures.argmax_histogram(tf.constant(p[k])).numpy() for k in range(3)]))
    np.testing.assert_allclose(measures.rms_per(tf.constant(logits)).numpy(),
                               np.sqrt((logits ** 2).reshape(3, -1).mean(-1)), rtol=1e-5)


def test_sites_with_leading_axes_fold_them_into_rows():
    # A MultiHeadAttention's (B, heads, T, S) weights: every (example, head, query) is one distribution.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = _attention((p, np.zeros((2, 1, 4, 5), bool)))
    assert got["attn_top1/hop1"] == pytest.approx(p.max(-1).mean(), rel=1e-5)


def test_padding_is_read_from_the_batch_whatever_mask_the_attention_was_given():
    # A Keras attention over 4 token slots of which the last 2 are padding (id 0), heads and one query.
    ids = tf.constant([[5, 7, 0, 0], [3, 0, 0, 0]], tf.int32)
    inverted = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 1 / 3, 1 / 3, 1 / 3]], np.float32)[:, None, None, :]
    forbids_tokens = ~(ids.numpy() == 0)[:, None, None, :]  # a mask marking the tokens, not the padding

    def measured(probs, masked):
        step = Step(names=[], norms=[], inputs=[("tokens", ids)],
                    attention=[AttentionSite(tf.constant(probs), masked=None if masked is None else
                                             tf.constant(masked))])
        row = attention.measure(step)
        row.pop(HISTOGRAM)
        return {k: float(v) for k, v in measures.scalars(row).items()}

    got = measured(inverted, forbids_tokens)
    assert got["attn_pad_mass/hop1"] == pytest.approx(1.0, rel=1e-6)  # every weight on padding
    assert got["attn_masked/hop1"] == pytest.approx(3 / 8)  # the mask forbids the 3 tokens of 8 slots
    assert got["attn_entropy/hop1"] == pytest.approx(1.0, rel=1e-5)  # uniform over the slots it may weigh
    right = np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], np.float32)[:, None, None, :]
    got = measured(right, ids.numpy()[:, None, None, :] == 0)
    assert got["attn_pad_mass/hop1"] == pytest.approx(0.0, abs=1e-7)
    assert measured(right, None)["attn_masked/hop1"] == 0.0


@pytest.mark.parametrize("causal", [False, True])
def test_a_long_sequences_attention_is_measured_on_evenly_spaced_queries(causal):
    # 130 query positions: every third (44 of them) is read, the weights Keras' layer computes at those rows
    import keras

    from diagnose.instruments.taps import QUERIES_MEASURED, Taps

    keras.utils.set_random_seed(3)
    inp = keras.Input((130, 8))
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    model = keras.Model(inp, layer(inp, inp, use_causal_mask=causal))
    x = np.random.default_rng(5).normal(size=(3, 130, 8)).astype(np.float32)
    taps = Taps(model)
    with taps.capture() as captured:
        model(x)
    (site,), _ = captured.sites()
    _, scores = layer(x, x, use_causal_mask=causal, return_attention_scores=True)  # (3, heads, 130, 130)
    stride = -(-130 // QUERIES_MEASURED)
    expected = np.asarray(scores)[:, :, ::stride]
    assert stride == 3 and tuple(site.probs.shape) == expected.shape == (3, 2, 44, 130)
    np.testing.assert_allclose(np.asarray(site.probs), expected, rtol=1e-5, atol=1e-7)
    if causal:  # the mask's rows are the same queries': row q may weigh keys 0..q
        rows = np.arange(0, 130, stride)
        allowed = np.arange(130)[None, :] <= rows[:, None]
        np.testing.assert_array_equal(~np.asarray(site.masked)[0, 0], allowed)
    else:
        assert site.masked is None


@pytest.mark.parametrize("jit", [False, True])
def test_softmax_cross_entropy_matches_keras_loss_and_gradient(jit, model_config):
    from diagnose.models import token_loss

    rng = np.random.default_rng(4)
    logits = tf.constant(rng.normal(scale=5.0, size=(16, 11)).astype(np.float32))
    targets = tf.constant(rng.integers(0, 11, 16).astype(np.int32))
    cfg = model_config("paper", vocab_size=11)

    def both(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours, parts = measures.softmax_cross_entropy(targets, x)
            ref = token_loss(cfg, targets, x)
            s_ours, s_ref = tf.reduce_sum(ours), tf.reduce_sum(ref)
        return ours, ref, tape.gradient(s_ours, x), tape.gradient(s_ref, x), parts

    ours, ref, g_ours, g_ref, parts = tf.function(both, jit_compile=jit)(logits)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-6)
    probs = tf.nn.softmax(logits).numpy()
    got = _output(logits.numpy(), targets.numpy(), "logits", parts)
    assert float(got["max_prob"]) == pytest.approx(probs.max(-1).mean(), rel=1e-5)
    assert float(got["target_prob"]) == pytest.approx(probs[np.arange(16), targets.numpy()].mean(), rel=1e-5)


def test_argmax_histogram_breaks_ties_like_argmax():
    p = tf.constant([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    expected = np.bincount(np.argmax(p.numpy(), axis=-1), minlength=3)
    np.testing.assert_array_equal(measures.argmax_histogram(p).numpy(), expected)


@pytest.mark.parametrize("jit", [False, True])
def test_top1_correct_matches_numpy_argmax_with_ties(jit):
    rng = np.random.default_rng(3)
    # Rounded so rows have ties, as ReLU outputs (many exact zeros) do; one all-zero row.
    outputs = np.round(rng.normal(size=(64, 9)), 0).clip(0).astype(np.float32)
    outputs[0] = 0.0
    targets = rng.integers(0, 9, 64).astype(np.int32)
    targets[1] = np.argmax(outputs[1])
    fn = tf.function(measures.top1_correct, jit_compile=jit)
    got = fn(tf.constant(outputs), tf.constant(targets)).numpy()
    np.testing.assert_array_equal(got, (np.argmax(outputs, -1) == targets).astype(np.float32))
    assert 0 < got.sum() < len(got)


def test_output_measures_relu_floor_and_dead_rows():
    out = np.array([[0.0, 2.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]], np.float32)
    targets = np.array([0, 1, 2])
    got = _output(out, targets, "unnormalized")
    assert got["out_zero_frac"] == pytest.approx(4 / 9)
    assert got["out_dead_rows"] == pytest.approx(1 / 3)
    # Row 0's target has probability 0 (at the clip floor); row 1 is dead (also 0).
    assert got["target_at_floor"] == pytest.approx(2 / 3)
    assert got["max_prob"] == pytest.approx((0.5 + 0.0 + 0.5) / 3)


def test_output_measures_softmax_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, 5)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = _output(logits, targets, "logits")
    assert float(got["max_prob"]) == pytest.approx(probs.max(axis=1).mean(), rel=1e-5)
    assert float(got["target_prob"]) == pytest.approx(probs[np.arange(5), targets].mean(), rel=1e-5)


def test_indexed_slices_norm_equals_dense_norm():
    table = tf.Variable(tf.random.normal((11, 4), seed=1))
    ids = tf.constant([[1, 2, 2, 5], [5, 5, 0, 1]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, ids) ** 3)
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)
    dense = tf.convert_to_tensor(grad).numpy()
    norm = float(measures.gradient_norms([dedupe_slices(grad)])[0])
    assert norm == pytest.approx(np.linalg.norm(dense), rel=1e-5)
    # Without summing duplicate rows the norm would be wrong.
    assert np.linalg.norm(grad.values.numpy()) != pytest.approx(np.linalg.norm(dense), rel=1e-3)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2000, 40), (40, 30, 60), (70000,), (7000, 10), (65537,), (15, 10001)])
def test_l2_norm_matches_numpy_for_small_and_large_tensors(jit, shape):
    # Large tensors take the matrix-vector path (rows of a divisor near 1,024, else the
    # last axis: 65,537 is prime); the rest tf.norm.
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32) * 1e3
    got = tf.function(measures.l2_norm, jit_compile=jit, autograph=False)(tf.constant(x))
    assert float(got) == pytest.approx(np.linalg.norm(x.astype(np.float64)), rel=1e-5)


def test_gradient_norms_and_update_ratio_match_weights_before_and_after(run_config, small_corpus):
    trainer = _trainer(run_config, small_corpus, clip="none")
    positions = tf.constant(np.arange(100, 132, dtype=np.int32))
    before = [v.numpy().copy() for v in trainer.variables]
    trainer.train_step(positions)
    after = [v.numpy() for v in trainer.variables]
    row = trainer.read_and_reset()["row"]
    for name, b, a in zip(trainer.names, before, after):
        expected = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert row[f"update_ratio/{name}"] == pytest.approx(expected, rel=1e-3, abs=1e-9), name
        assert row[f"weight_norm/{name}"] == pytest.approx(np.linalg.norm(b), rel=1e-5)
        # Plain SGD without clipping: ||dw|| = lr * ||g||.
        assert row[f"grad_norm/{name}"] * trainer.config.model.learning_rate == pytest.approx(
            np.linalg.norm(a - b), rel=1e-3, abs=1e-9)


def test_clip_fired_reports_clipping(run_config, small_corpus):
    low = _trainer(run_config, small_corpus, clip="global", clip_norm=1e-3)
    high = _trainer(run_config, small_corpus, clip="global", clip_norm=1e6)
    positions = tf.constant(np.arange(32, dtype=np.int32))
    for t in (low, high):
        t.train_step(positions)
    assert low.read_and_reset()["row"]["clip_fired"] == 1.0
    assert high.read_and_reset()["row"]["clip_fired"] == 0.0


def test_branch_balance_matches_direct_rms(run_config, small_corpus):
    trainer = _trainer(run_config, small_corpus, temporal_init=1.0)
    positions = np.arange(200, 232, dtype=np.int32)
    from diagnose.memn2n.data import windows as cut

    w, _ = cut(small_corpus.train, trainer.config.model.memory_size, positions)
    _, internals = trainer.model(w, return_internals=True)
    table = trainer.model.encoders[0].temporal.table.numpy()
    emb = trainer.model.encoders[0].embedding.embeddings.numpy()[w]
    trainer.train_step(tf.constant(positions))
    row = trainer.read_and_reset()["row"]
    assert row["rms/A/position"] == pytest.approx(np.sqrt(np.mean(table ** 2)), rel=1e-5)
    assert row["rms/A/content"] == pytest.approx(np.sqrt(np.mean(emb ** 2)), rel=1e-5)
    assert row["rms/A/position"] > 10 * row["rms/A/content"]  # N(0, 1) encoding vs N(0, 0.05) words


def test_huge_learning_rate_diverges_at_the_first_nonfinite_step(run_config, small_corpus, tmp_path):
    from diagnose.models import token_loss

    cfg = run_config("paper", model={"learning_rate": 1e12, "clip": "none"}, steps=30, log_every=30,
                     probe_every=0, eval_at_start=False)
    result = train(cfg, tmp_path / "run", corpus=small_corpus)
    assert result.summary["status"] == "diverged"
    got = result.summary["diverged_at"]
    # Reference: replay the same batches eagerly and find the first non-finite loss or gradient.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=small_corpus.vocab_size))
    trainer = MemN2NSteps(cfg, small_corpus)
    n = small_corpus.num_windows("train")
    order = np.random.default_rng(cfg.train.seed).permutation(n).astype(np.int32)
    b = cfg.model.batch_size
    expected = None
    for step in range(1, 31):
        pos = order[(step - 1) * b: step * b]
        w, t = trainer._windows("train", tf.constant(pos))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(token_loss(cfg.model, t, trainer.model(w, training=True)))
        grads = tape.gradient(loss, trainer.variables)
        bad = [not np.isfinite(loss.numpy())] + [
            not np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads]
        if any(bad):
            expected = (step, "loss" if bad[0] else trainer.names[bad.index(True) - 1])
            break
        trainer.train_step(tf.constant(pos))
    assert expected is not None
    assert (got["step"], got["variable"]) == expected
    assert f"step {expected[0]}" in result.summary["error"]
    # The record stops at the divergence and stays finite.
    metrics = runrecord.read_metrics(tmp_path / "run")
    assert metrics["step"].max() <= 30 and np.isfinite(metrics["loss"].dropna()).all()


def test_probe_shows_a_trained_model_uses_its_input(run_config, small_corpus, tmp_path):
    cfg = run_config("paper", steps=300, log_every=100, probe_every=300, eval_at_start=False,
                     model={"batch_size": 32})
    train(cfg, tmp_path / "run", corpus=small_corpus)
    last = runrecord.read_metrics(tmp_path / "run").iloc[-1]
    assert last["probe_loss_real"] < last["probe_loss_shuffled"] - 0.1
    assert last["probe_loss_real"] < last["probe_loss_zeroed"] - 0.1


def test_tensorboard_scalars_match_metrics(run_config, small_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = run_config("paper", steps=20, log_every=10, tensorboard=True)
    train(cfg, tmp_path / "run", corpus=small_corpus)
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"loss", "grad_norm/global", "attn_entropy/hop1", "update_ratio/W"} <= tags
    metrics = runrecord.read_metrics(tmp_path / "run").set_index("step")
    for event in acc.Tensors("grad_norm/global"):
        value = float(tf.make_ndarray(event.tensor_proto))
        assert value == pytest.approx(metrics.loc[event.step, "grad_norm/global"], rel=1e-6)


def test_load_run_is_tidy(run_config, small_corpus, tmp_path):
    cfg = run_config("paper", steps=20, log_every=10)
    train(cfg, tmp_path / "run", corpus=small_corpus)
    frame = load_run(tmp_path / "run")
    assert list(frame.columns) == ["run", "step", "epoch", "metric", "value"]
    wide = runrecord.read_metrics(tmp_path / "run")
    row = frame[(frame.step == 20) & (frame.metric == "attn_top1/hop2")]
    assert float(row.value.iloc[0]) == pytest.approx(float(wide.set_index("step").loc[20, "attn_top1/hop2"]))
    assert frame.attrs["summary"]["status"] == "completed"
    hist = (tmp_path / "run" / "attention.csv").read_text().splitlines()
    assert hist[0].startswith("step,hop,pos0")
    counts = [int(x) for x in hist[1].split(",")[2:]]
    assert sum(counts) == 10 * cfg.model.batch_size  # one winner per example per step
    assert not math.isnan(float(wide.iloc[-1]["loss"]))

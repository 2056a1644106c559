"""Tests of the training path: run records, determinism, learning, clipping, evaluation."""

import dataclasses
import math
import re

import numpy as np
import pytest
import tensorflow as tf

import keras
from conftest import SMALL_V
from diagnose import runrecord
from diagnose.memn2n.checkpoint import read_checkpoint, write_checkpoint
from diagnose.instruments import measures
from diagnose.memn2n.config import DataConfig, MemN2NConfig, RunConfig, TrainConfig, make_run_config
from diagnose.errors import ConfigError
from diagnose.memn2n.train import MemN2NSteps, clip_gradients, dedupe_slices, train

STEPS, LOG_EVERY, EVAL_EVERY, BATCH = 30, 5, 10, 32


# -- one short run, shared by the run-record tests ---------------------------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, small_corpus, run_config):
    cfg = run_config("paper", model={"learning_rate": 0.05}, steps=STEPS, log_every=LOG_EVERY,
                     eval_every=EVAL_EVERY)
    out = tmp_path_factory.mktemp("short_run")
    calls = []
    result = train(cfg, out, corpus=small_corpus, progress=calls.append)
    return cfg, out, result, calls


def test_config_json_is_fully_resolved(short_run, small_corpus):
    cfg, out, _, _ = short_run
    assert cfg.model.vocab_size != small_corpus.vocab_size  # the preset's 10k: train must resolve it
    written = runrecord.read_config(out)
    assert written["schema"] == runrecord.SCHEMA_VERSION
    for section, cls in (("model", MemN2NConfig), ("data", DataConfig), ("train", TrainConfig)):
        assert set(written[section]) == {f.name for f in dataclasses.fields(cls)}
    assert written["model"]["vocab_size"] == small_corpus.vocab_size == SMALL_V
    # Enough to repeat the run: it reads back as the config that was trained.
    again = RunConfig.from_dict(written)
    expected = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=SMALL_V))
    assert again == expected


def test_metrics_csv_rows_and_columns(short_run, small_corpus):
    cfg, out, _, _ = short_run
    metrics = runrecord.read_metrics(out)
    assert tuple(metrics.columns[:len(runrecord.BASE_COLUMNS)]) == runrecord.BASE_COLUMNS
    # A row at step 0 (eval_at_start), every LOG_EVERY steps and at each validation.
    expected_steps = sorted({0} | set(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
                            | set(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)) | {STEPS})
    assert metrics["step"].tolist() == expected_steps
    assert np.all(np.diff(metrics["step"]) > 0)
    steps_per_epoch = small_corpus.num_windows("train") // BATCH
    np.testing.assert_allclose(metrics["epoch"], metrics["step"] / steps_per_epoch, rtol=1e-12)
    evaluated = metrics["val_loss"].notna()
    eval_steps = {0} | set(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert set(metrics.loc[evaluated, "step"]) == eval_steps
    for col in ("val_accuracy", "val_perplexity"):
        assert (metrics[col].notna() == evaluated).all()
    np.testing.assert_allclose(metrics.loc[evaluated, "val_perplexity"],
                               np.exp(metrics.loc[evaluated, "val_loss"]), rtol=1e-9)
    trained = metrics[metrics["step"] > 0]
    assert trained["loss"].notna().all() and np.isfinite(trained["loss"]).all()
    assert trained["accuracy"].between(0, 1).all()
    assert metrics.loc[evaluated, "val_accuracy"].between(0, 1).all()
    # Step 0 has no training interval behind it.
    assert math.isnan(metrics["loss"].iloc[0])
    # The rate starts at the configured one and only ever drops by the anneal factor.
    rates = metrics["learning_rate"].to_numpy()
    assert rates[0] == cfg.model.learning_rate
    ratios = rates[1:] / rates[:-1]
    assert np.all(np.isclose(ratios, 1.0) | np.isclose(ratios, 1.0 / cfg.model.lr_anneal))


def test_summary_json(short_run, small_corpus):
    _, out, result, _ = short_run
    summary = runrecord.read_summary(out)
    assert summary == result.summary
    assert result.run_dir == out
    assert summary["status"] == "completed" and summary["error"] is None
    assert summary["steps"] == STEPS
    assert summary["samples_per_s"] > 0
    assert 0 < summary["train_time_s"] <= summary["wall_time_s"]
    baselines = summary["baselines"]
    assert baselines["ln_vocab"] == pytest.approx(math.log(SMALL_V), abs=1e-12)
    assert baselines["bayes_floor"] == pytest.approx(small_corpus.stats["bayes_floor"], abs=1e-12)
    assert baselines["unigram_entropy"] == pytest.approx(small_corpus.stats["unigram_entropy"], abs=1e-12)
    metrics = runrecord.read_metrics(out)
    valid = metrics[metrics["val_loss"].notna()]
    assert summary["final"]["val_loss"] == pytest.approx(valid["val_loss"].iloc[-1], rel=1e-12)
    trained_valid = valid[valid["step"] > 0]
    best = trained_valid["val_loss"].idxmin()
    assert summary["best"]["val_loss"] == pytest.approx(trained_valid.loc[best, "val_loss"], rel=1e-12)
    assert summary["best"]["step"] == trained_valid.loc[best, "step"]
    assert summary["best"]["val_perplexity"] == pytest.approx(math.exp(summary["best"]["val_loss"]))
    assert set(summary["versions"]) == {"python", "tensorflow", "keras", "keras_backend", "numpy", "diagnose"}
    assert summary["versions"]["keras_backend"] == "tensorflow"  # the built-in MemN2N trains on TensorFlow


def test_progress_called_once_per_logged_row(short_run):
    _, out, _, calls = short_run
    metrics = runrecord.read_metrics(out)
    logged = metrics[metrics["step"] > 0]
    assert [c["step"] for c in calls] == logged["step"].tolist()
    assert all(c["total_steps"] == STEPS for c in calls)
    np.testing.assert_allclose([c["loss"] for c in calls], logged["loss"], rtol=1e-12)


def test_make_run_config_reports_bad_override_as_config_error():
    with pytest.raises(ConfigError, match="valid settings"):
        make_run_config("paper", {"no_such_setting": 1})
    with pytest.raises(ConfigError, match="preset"):
        make_run_config("no-such-preset")


# -- determinism ---------------------------------------------------------------------


def _losses(run_dir):
    metrics = runrecord.read_metrics(run_dir)
    return metrics[["step", "loss", "val_loss"]].to_numpy()


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(tmp_path, small_corpus, run_config):
    # Eager-graph path (XLA compilation would cost seconds per run); as-posted has dropout,
    # so the seed drives the weights, the batch order and the dropout masks.
    def run(seed, name):
        cfg = run_config("as-posted", seed=seed, steps=15, log_every=5, eval_every=15, eval_max_windows=256)
        train(cfg, tmp_path / name, corpus=small_corpus)
        return _losses(tmp_path / name)

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    np.testing.assert_array_equal(a, b)  # NaN (step 0 loss) compares equal here
    assert a.shape == c.shape
    assert not np.array_equal(a[1:, 1], c[1:, 1])


# -- checkpoints and resuming -----------------------------------------------------------


@pytest.mark.parametrize("preset", ["paper", "as-posted"])
@pytest.mark.slow
def test_resumed_run_writes_the_rows_of_an_uninterrupted_one(tmp_path, small_corpus, run_config, preset):
    # as-posted has dropout: the masks' generator state must come back too.
    def cfg(steps):
        return run_config(preset, seed=3, steps=steps, log_every=5, eval_every=10, eval_max_windows=256,
                          eval_test=True, checkpoint=True, probe_every=10)

    train(cfg(30), tmp_path / "straight", corpus=small_corpus)
    first = train(cfg(10), tmp_path / "pieces", corpus=small_corpus)
    assert first.summary["steps"] == 10 and (tmp_path / "pieces" / "checkpoint" / "state.json").is_file()
    resumed = train(cfg(30), tmp_path / "pieces", corpus=small_corpus, resume=True)
    assert resumed.summary["resumed_from_step"] == 10 and resumed.summary["steps"] == 30
    straight = runrecord.read_metrics(tmp_path / "straight")
    pieces = runrecord.read_metrics(tmp_path / "pieces")
    assert list(pieces["step"]) == [0, 5, 10, 15, 20, 25, 30]
    assert list(pieces.columns) == list(straight.columns)
    np.testing.assert_array_equal(pieces.to_numpy(), straight.to_numpy())
    # Test-split columns at each validation, and in the summary.
    assert pieces["test_perplexity"].notna().sum() == 3
    assert resumed.summary["final"]["test_loss"] == pytest.approx(float(straight["test_loss"].iloc[-1]))


@pytest.mark.slow
def test_a_resumed_run_that_diverges_names_the_step_counted_from_the_start(tmp_path, small_corpus, run_config):
    def cfg(steps):
        return run_config("paper", seed=3, steps=steps, log_every=5, eval_every=10, eval_max_windows=256,
                          checkpoint=True)

    train(cfg(10), tmp_path / "run", corpus=small_corpus)
    state, arrays = read_checkpoint(tmp_path / "run")
    name = next(k for k in arrays if k.startswith("model_") and arrays[k].ndim == 2)
    arrays[name] = np.full_like(arrays[name], np.inf)  # weights that cannot give a finite loss
    write_checkpoint(tmp_path / "run", state, arrays)
    resumed = train(cfg(20), tmp_path / "run", corpus=small_corpus, resume=True)
    assert resumed.summary["status"] == "diverged"
    assert resumed.summary["diverged_at"]["step"] == 11  # the first step after the checkpoint at 10, not 1


def test_resume_refuses_another_config_or_a_run_without_checkpoint(tmp_path, small_corpus, run_config):
    from diagnose.errors import DiagnoseError

    base = run_config("paper", steps=10, log_every=5, eval_every=10, eval_max_windows=128, checkpoint=True)
    train(base, tmp_path / "run", corpus=small_corpus)
    before = (tmp_path / "run" / "metrics.csv").read_text()
    other = run_config("paper", model={"hops": 3}, steps=20, log_every=5, eval_every=10, eval_max_windows=128,
                       checkpoint=True)
    with pytest.raises(DiagnoseError, match="model.hops"):
        train(other, tmp_path / "run", corpus=small_corpus, resume=True)
    assert (tmp_path / "run" / "metrics.csv").read_text() == before  # nothing touched
    with pytest.raises(DiagnoseError, match="no checkpoint"):
        train(base, tmp_path / "empty", corpus=small_corpus, resume=True)


# -- learning ------------------------------------------------------------------------


def test_paper_preset_learns_topic_copy_small(tmp_path, small_corpus, run_config):
    cfg = run_config("paper", steps=400, log_every=100, eval_every=200)
    summary = train(cfg, tmp_path, corpus=small_corpus).summary
    base = summary["baselines"]
    assert summary["status"] == "completed"
    metrics = runrecord.read_metrics(tmp_path)
    # Starts at chance (ln V) and ends below the unigram entropy: it uses the memory.
    assert metrics["step"].iloc[0] == 0
    assert metrics["val_loss"].iloc[0] == pytest.approx(math.log(SMALL_V), abs=0.05)
    assert summary["final"]["val_loss"] < base["unigram_entropy"]
    assert summary["final"]["val_loss"] > base["bayes_floor"]  # no model beats the floor
    train_loss = metrics.loc[metrics["step"] > 0, "loss"].to_numpy()
    assert train_loss[-1] < train_loss[0] - 0.3


# -- gradients: dedupe and clipping --------------------------------------------------


def _embedding_gradient(rows: int = 20):
    """An embedding gradient with repeated ids: 10 lookups into a table of ``rows`` rows."""
    keras.utils.set_random_seed(0)
    emb = keras.layers.Embedding(rows, 4)
    emb.build((None, 5))
    ids = tf.constant([[3, 5, 3, 0, 9], [5, 7, 3, 3, 0]])
    weights = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 4)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(ids) * weights)
    (grad,) = tape.gradient(loss, [emb.embeddings.value])
    # Reference: the dense gradient, summed row by row in numpy.
    dense = np.zeros((rows, 4))
    for i, row in zip(ids.numpy().ravel(), weights.numpy().reshape(-1, 4)):
        dense[i] += row
    return grad, dense


@pytest.mark.parametrize("densify", [False, True])
def test_dedupe_slices_keeps_dense_gradient_and_fixes_norm(densify):
    rows = 20
    grad, dense = _embedding_gradient(rows)
    assert isinstance(grad, tf.IndexedSlices)
    deduped = dedupe_slices(grad, rows if densify else None)
    assert isinstance(deduped, tf.IndexedSlices) != densify
    np.testing.assert_allclose(tf.convert_to_tensor(grad).numpy(), dense, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(deduped).numpy(), dense, rtol=1e-6, atol=1e-6)
    norm = measures.gradient_norms([deduped])[0]  # what clipping and the instruments measure
    assert float(norm) == pytest.approx(np.linalg.norm(dense), rel=1e-6)
    # Without deduplication the repeated ids would give a different (wrong) norm.
    assert float(tf.norm(grad.values)) != pytest.approx(np.linalg.norm(dense), rel=1e-3)
    if isinstance(deduped, tf.IndexedSlices):  # an additive sparse update lands on the dense gradient
        table = tf.Variable(tf.zeros((rows, 4)))
        table.scatter_add(deduped)
        np.testing.assert_allclose(table.numpy(), dense, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("densify", [False, True])
def test_dedupe_slices_compiles_under_xla_and_passes_dense_through(densify):
    grad, dense = _embedding_gradient()
    compiled = tf.function(lambda v, i: tf.convert_to_tensor(
        dedupe_slices(tf.IndexedSlices(v, i, grad.dense_shape), 20 if densify else None)), jit_compile=True)
    np.testing.assert_allclose(compiled(grad.values, grad.indices).numpy(), dense, rtol=1e-6, atol=1e-6)
    t = tf.constant([[1.0, 2.0]])
    assert dedupe_slices(t) is t


def _grads():
    """float32 gradients, as training has them."""
    rng = np.random.default_rng(1)
    return [(rng.normal(size=s) * k).astype(np.float32) for s, k in (((3, 4), 10), ((5,), 1), ((2, 2), 3))]


@pytest.mark.parametrize("clip_norm", [1.0, 1e4])
def test_clip_global_rescales_only_above_the_norm(clip_norm):
    arrays = _grads()
    total = math.sqrt(sum((a.astype(np.float64) ** 2).sum() for a in arrays))
    clipped = [t.numpy() for t in clip_gradients([tf.constant(a) for a in arrays], "global", clip_norm)]
    scale = min(1.0, clip_norm / total)
    for got, a in zip(clipped, arrays):
        np.testing.assert_allclose(got, a * scale, rtol=1e-5)
    new_total = math.sqrt(sum((c.astype(np.float64) ** 2).sum() for c in clipped))
    assert new_total == pytest.approx(min(total, clip_norm), rel=1e-5)


def test_clip_per_tensor_clips_each_tensor_alone():
    arrays = _grads()
    norms = [np.linalg.norm(a.astype(np.float64)) for a in arrays]
    clip_norm = float(np.median(norms))  # one tensor above, one at, one below
    clipped = [t.numpy() for t in clip_gradients([tf.constant(a) for a in arrays], "per_tensor", clip_norm)]
    for got, a, n in zip(clipped, arrays, norms):
        np.testing.assert_allclose(got, a * min(1.0, clip_norm / n), rtol=1e-5)
        assert np.linalg.norm(got) <= clip_norm * (1 + 1e-5)
    assert np.linalg.norm(clipped[0]) == pytest.approx(clip_norm, rel=1e-5)  # the big one was cut to the limit


def test_clip_handles_indexed_slices_and_none_mode():
    grad, dense = _embedding_gradient()
    deduped = dedupe_slices(grad)
    (clipped,) = clip_gradients([deduped], "global", 1.0)
    assert isinstance(clipped, tf.IndexedSlices)
    np.testing.assert_allclose(tf.convert_to_tensor(clipped).numpy(), dense / np.linalg.norm(dense),
                               rtol=1e-5, atol=1e-6)
    arrays = [tf.constant(a) for a in _grads()]
    assert clip_gradients(arrays, "none", 1e-3) is arrays


# -- divergence ----------------------------------------------------------------------


def test_huge_learning_rate_ends_diverged_naming_the_step(tmp_path, small_corpus, run_config):
    cfg = run_config("paper", model={"learning_rate": 1e6, "clip": "none"}, steps=20, log_every=1,
                     eval_every=20)
    result = train(cfg, tmp_path, corpus=small_corpus)
    summary = runrecord.read_summary(tmp_path)
    assert summary["status"] == "diverged"
    match = re.search(r"step (\d+)", summary["error"] or "")
    assert match, summary["error"]
    bad = int(match.group(1))
    assert 1 <= bad <= 20
    # Logged every step, so training stops at the first bad step...
    assert summary["steps"] == bad
    metrics = runrecord.read_metrics(tmp_path)
    assert metrics["step"].iloc[-1] == bad
    # ...and every earlier step had a finite loss.
    earlier = metrics[(metrics["step"] > 0) & (metrics["step"] < bad)]
    assert np.isfinite(earlier["loss"]).all()
    assert result.summary == summary


@pytest.fixture(scope="module")
def blown_up_run(tmp_path_factory, small_corpus, run_config):
    """lr = 1e6 with the paper's global clipping: losses stay finite but huge."""
    cfg = run_config("paper", model={"learning_rate": 1e6}, steps=20, log_every=5, eval_every=20)
    out = tmp_path_factory.mktemp("blown_up")
    try:
        train(cfg, out, corpus=small_corpus)
        error = None
    except Exception as exc:  # noqa: BLE001 - recorded for the test below
        error = exc
    return out, error


def test_a_loss_too_large_for_exp_has_infinite_perplexity():
    from diagnose.memn2n.train import perplexity

    assert perplexity(800.0) == math.inf and math.isnan(perplexity(math.nan))
    assert perplexity(2.0) == pytest.approx(math.exp(2.0))


def test_blown_up_run_ends_diverged_with_a_whole_record(blown_up_run):
    # No NaN ever appears: the loss far beyond ln V is what ends it (diagnose.divergence).
    out, error = blown_up_run
    assert error is None, f"train raised {error!r}"
    summary = runrecord.read_summary(out)
    assert summary["status"] == "diverged" and summary["diverged_at"]["variable"] in ("loss", "grad_norm/global")
    assert summary["steps"] == summary["diverged_at"]["step"] < 20
    assert runrecord.record_problems(out) == []
    metrics = runrecord.read_metrics(out)
    assert np.isfinite(metrics["loss"].iloc[-1]) and metrics["step"].iloc[-1] == summary["steps"]


# -- evaluation in batches -----------------------------------------------------------


@pytest.mark.parametrize("context", ["stream", "line"])
def test_evaluate_in_uneven_batches_matches_one_batch_and_a_reference(context, small_corpus, run_config):
    from diagnose.memn2n.data import windows as cut_windows
    from diagnose.models import token_loss

    base = run_config("as-posted", model={"vocab_size": SMALL_V, "dropout": "none"})
    base = dataclasses.replace(base, data=dataclasses.replace(base.data, context=context))
    trainer = MemN2NSteps(base, small_corpus)
    total = small_corpus.num_windows("valid")
    results = {}
    for bs in (total, 300, 64):
        assert bs == total or total % bs != 0
        trainer.config = dataclasses.replace(base, train=dataclasses.replace(base.train, eval_batch_size=bs))
        results[bs] = trainer.evaluate("valid")
    # Independent reference: numpy windows, the model, mean token loss in float64.
    x, y = cut_windows(small_corpus.valid, base.model.memory_size, np.arange(total), context)
    outputs = trainer.model(x).numpy()
    per_example = np.asarray(token_loss(base.model, y, outputs), np.float64)
    assert np.isfinite(per_example).all()
    ref_loss = per_example.mean()
    ref_acc = np.mean(outputs.argmax(-1) == y)
    for bs, res in results.items():
        assert res["loss"] == pytest.approx(ref_loss, abs=1e-6), bs
        assert res["loss"] == pytest.approx(results[total]["loss"], abs=1e-6), bs
        assert res["accuracy"] == pytest.approx(ref_acc, abs=1e-12), bs
        assert res["perplexity"] == pytest.approx(math.exp(res["loss"]), rel=1e-12)
    # eval_max_windows: the first N windows only.
    trainer.config = dataclasses.replace(base, train=dataclasses.replace(base.train, eval_batch_size=64,
                                                                         eval_max_windows=100))
    assert trainer.evaluate("valid")["loss"] == pytest.approx(per_example[:100].mean(), abs=1e-6)

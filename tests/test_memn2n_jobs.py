"""Runs that share compiled steps: a run trained after others on one trainer writes the record it writes alone."""

import dataclasses

import pytest

from diagnose import runrecord
from diagnose.ablation.executors import batch_jobs
from diagnose.memn2n.jobs import group_of
from diagnose.memn2n.steps import graph_key
from diagnose.memn2n.train import MemN2NSteps, train


def _with(cfg, seed=None, **model):
    train_cfg = cfg.train if seed is None else dataclasses.replace(cfg.train, seed=seed)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model), train=train_cfg)


def _record(run_dir):
    return {name: (run_dir / name).read_bytes() for name in (runrecord.METRICS, runrecord.ATTENTION)}


def test_a_run_on_shared_steps_writes_the_record_it_writes_alone(tmp_path, small_corpus, run_config):
    # as-posted: dropout masks are drawn inside the step, from seed states the restart must reset.
    base = run_config("as-posted", steps=20, log_every=5, eval_every=10, probe_every=10, eval_max_windows=256)
    base = _with(base, vocab_size=small_corpus.vocab_size)
    # Another seed and another initialisation of the temporal table: the same graph.
    runs = [_with(base, seed=3), _with(base, seed=1, temporal_init="ones"), _with(base, seed=3)]
    assert len({graph_key(c) for c in runs}) == 1
    shared = MemN2NSteps(runs[0], small_corpus)
    for i, cfg in enumerate(runs):
        train(cfg, tmp_path / f"shared{i}", corpus=small_corpus, trainer=shared)
    train(runs[1], tmp_path / "alone1", corpus=small_corpus)
    assert _record(tmp_path / "shared1") == _record(tmp_path / "alone1")
    # The same config and seed after another run on the same steps: the same record again.
    assert _record(tmp_path / "shared0") == _record(tmp_path / "shared2")
    summary = runrecord.read_summary(tmp_path / "shared1")
    assert summary["seed"] == 1 and summary["steps"] == 20


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [{"loss_reduction": "mean", "clip": "per_tensor", "clip_norm": 0.5},
                                    {"clip": "none"}])
def test_the_recipe_read_when_the_step_runs_gives_the_record_of_its_own_trace(tmp_path, small_corpus, run_config,
                                                                             recipe):
    # The loss reduction and clipping are variables of the step: a run restarted on steps traced
    # for another recipe writes the record it writes alone, and the recipe changes that record.
    base = _with(run_config("paper", steps=20, log_every=5, eval_every=10, probe_every=10, eval_max_windows=256),
                 vocab_size=small_corpus.vocab_size, clip_norm=0.5)
    other = _with(base, seed=2, **recipe)
    assert graph_key(other) == graph_key(base)
    shared = MemN2NSteps(base, small_corpus)
    train(base, tmp_path / "first", corpus=small_corpus, trainer=shared)
    train(other, tmp_path / "restarted", corpus=small_corpus, trainer=shared)
    train(other, tmp_path / "alone", corpus=small_corpus)
    assert _record(tmp_path / "restarted") == _record(tmp_path / "alone")
    # The same seed under the first recipe: clipping at 0.5 fires on every step there, and not
    # without clipping or under the per-tensor threshold on every step.
    train(_with(base, seed=2), tmp_path / "seed2", corpus=small_corpus)
    fired = {d: [r["clip_fired"] for r in runrecord.read_rows(tmp_path / d)[0] if "clip_fired" in r]
             for d in ("seed2", "alone")}
    assert set(fired["seed2"]) == {1.0} and fired["alone"] != fired["seed2"]
    assert _record(tmp_path / "seed2") != _record(tmp_path / "alone")


def test_steps_are_shared_only_where_the_graph_is_the_same(small_corpus, run_config):
    cfg = _with(run_config("paper", steps=5), vocab_size=small_corpus.vocab_size)
    same = [_with(cfg, seed=7), _with(cfg, embedding_init="uniform"), _with(cfg, learning_rate=0.5),
            _with(cfg, loss_reduction="mean"), _with(cfg, clip="per_tensor", clip_norm=5.0)]
    other = [_with(cfg, output="relu"), _with(cfg, temporal="none"), _with(cfg, padding="encoded"),
             dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, instruments="off"))]
    assert {group_of(c) for c in same} == {group_of(cfg)}
    assert len({group_of(c) for c in [cfg, *other]}) == len(other) + 1
    trainer = MemN2NSteps(cfg, small_corpus)
    with pytest.raises(ValueError, match="graph_key"):
        trainer.restart(other[0])


def test_jobs_keep_a_group_together_unless_it_would_idle_the_other_workers():
    tasks = [{"run_id": f"a{i}", "group": "a"} for i in range(6)] + \
            [{"run_id": f"b{i}", "group": "b"} for i in range(2)] + [{"run_id": "c0", "group": None}]
    jobs = batch_jobs(tasks, workers=1)  # a round of 9 on one worker: every group whole
    assert [[t["run_id"] for t in job] for job in jobs] == [[f"a{i}" for i in range(6)], ["b0", "b1"], ["c0"]]
    jobs = batch_jobs(tasks, workers=2)  # at most ceil(9 / 4) = 3 runs a job
    assert sorted(len(job) for job in jobs) == [1, 2, 3, 3]
    assert all(len({t["group"] for t in job}) == 1 for job in jobs)
    assert sorted(t["run_id"] for job in jobs for t in job) == sorted(t["run_id"] for t in tasks)


@pytest.mark.slow
def test_a_worker_runs_tensorflow_on_its_share_of_the_cores():
    # TensorFlow takes its thread counts when its runtime starts and refuses them later:
    # a worker must set them before its first op, or it runs on every core beside the
    # other workers. Checked in a fresh process, as a worker starts.
    import subprocess
    import sys

    code = ("from diagnose.ablation.executors import _set_threads_before_import\n"
            "_set_threads_before_import(1)\n"
            "import tensorflow as tf\n"
            "from diagnose.memn2n.steps import set_determinism\n"
            "set_determinism(0, threads=1)\n"  # the run's own request, after: agrees, changes nothing
            "t = tf.config.threading\n"
            "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads(),\n"
            "      float(tf.constant(2.0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "2.0"]

"""One column, one formula: the built-in MemN2N trained by its own compiled steps and by instrument() + fit.

Both paths feed the instrument registry; on the same model, weights, batches and
optimizer, every column both write must carry the same numbers.
"""

import dataclasses

import numpy as np
import pytest

import diagnose
from diagnose import runrecord
from diagnose.memn2n.data import windows
from diagnose.instruments.registry import family_of
from diagnose.memn2n.train import train

pytestmark = pytest.mark.slow  # two short trainings of a tiny MemN2N

STEPS = 6


def test_the_memn2n_writes_the_same_columns_through_both_training_paths(run_config, small_corpus, tmp_path):
    import keras

    from diagnose.models import build_memn2n

    # The built-in path: a row every step (the chunk's weight norms are then the step's own).
    cfg = run_config("paper", model={"batch_size": 16}, steps=STEPS, log_every=1, probe_every=0,
                     eval_at_start=False)
    train(cfg, tmp_path / "builtin", corpus=small_corpus)
    builtin = runrecord.read_metrics(tmp_path / "builtin")

    # The same model, weights and batches through the Keras wrapper.
    model_cfg = dataclasses.replace(cfg.model, vocab_size=small_corpus.vocab_size)
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_memn2n(model_cfg)
    model.compile(optimizer=keras.optimizers.SGD(model_cfg.learning_rate, global_clipnorm=model_cfg.clip_norm),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"))
    n = small_corpus.num_windows("train")
    order = np.random.default_rng(cfg.train.seed).permutation(n)[: STEPS * 16]  # train()'s first epoch order
    x, y = windows(small_corpus.train, model_cfg.memory_size, order)
    wrapped = diagnose.instrument(model)
    wrapped.schedule.every = 1  # measure every step, as the built-in step does
    wrapped.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                callbacks=[diagnose.Monitor(tmp_path / "keras", log_every=1, probe_every=0)])
    ours = runrecord.read_metrics(tmp_path / "keras")

    shared = [c for c in builtin.columns if c in ours.columns and family_of(c) is not None]
    assert {"grad_norm/global", "grad_norm/W", "update_ratio/A/embedding", "weight_norm/H_0", "clip_fired",
            "target_prob", "max_prob", "loss_sd"} <= set(shared)
    assert len(builtin) == len(ours) == STEPS
    for column in shared + ["loss", "accuracy"]:
        np.testing.assert_allclose(ours[column].to_numpy(), builtin[column].to_numpy(), rtol=2e-4, atol=1e-7,
                                   err_msg=column)

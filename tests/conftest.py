"""Shared fixtures: quiet TensorFlow, the tiny synthetic corpus, tiny model and run configs.

Everything here is sized so that the model, training and run-record tests together
run in well under a minute on two CPU cores.
"""

import os

# Before any TensorFlow import (the test modules import it after this file loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402

import pytest  # noqa: E402

# The tiny corpus: V = 35 (PAD, UNK, <eos> and 4 topics x 8 words), ~20k train tokens.
SMALL_CORPUS = "topic-copy-small"
SMALL_V = 35

# Sizes for every tiny model: memory 8, D 16, 2 hops, batch 32.
TINY_SIZES = {"memory_size": 8, "embed_dim": 16, "hops": 2, "batch_size": 32}


@pytest.fixture(scope="session")
def small_corpus():
    """The topic-copy-small corpus (seed 0), shared by every test that trains."""
    from diagnose.memn2n.data import make_synthetic

    return make_synthetic(SMALL_CORPUS, seed=0)


def _tiny_model_config(preset_name: str = "paper", **overrides):
    """A MemN2NConfig from a preset at tiny size, vocab of the small corpus."""
    from diagnose.models import PRESETS, apply_overrides

    return apply_overrides(PRESETS[preset_name], {"vocab_size": SMALL_V, **TINY_SIZES, **overrides})


def _tiny_run_config(preset_name: str = "paper", model: dict | None = None, **train):
    """A RunConfig on topic-copy-small at tiny size; ``train`` overrides TrainConfig fields.

    XLA is off by default (compiling costs seconds per run on CPU); tests that are
    about the default compiled path turn it back on.
    """
    from diagnose.memn2n.config import DataConfig, TrainConfig, make_run_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # Quiet, fast defaults; optional extras (probes, TensorBoard) off where the config has them.
    defaults = {"jit_compile": False, "steps": 20, "log_every": 5, "probe_every": 0, "tensorboard": False}
    tcfg = TrainConfig(**{k: v for k, v in {**defaults, **train}.items() if k in fields or k in train})
    return make_run_config(preset_name, {**TINY_SIZES, **(model or {})},
                           data=DataConfig(synthetic=SMALL_CORPUS), train=tcfg)


@pytest.fixture(scope="session")
def model_config():
    """Factory: ``model_config(preset, **overrides)`` -> a tiny MemN2NConfig (V = 35)."""
    return _tiny_model_config


@pytest.fixture(scope="session")
def run_config():
    """Factory: ``run_config(preset, model={...}, **train_fields)`` -> a tiny RunConfig."""
    return _tiny_run_config


@pytest.fixture
def seeded():
    """Resets Python, NumPy and TF seeds so that weight initialisation is repeatable."""
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def random_windows():
    """Random (32, 8) windows of non-pad ids and (32,) targets from the small vocabulary."""
    import numpy as np

    rng = np.random.default_rng(0)
    windows = rng.integers(1, SMALL_V, size=(32, TINY_SIZES["memory_size"])).astype("int32")
    targets = rng.integers(1, SMALL_V, size=(32,)).astype("int32")
    return windows, targets

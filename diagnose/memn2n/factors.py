"""The built-in factors of a MemN2N study, their default levels, and the default study.

A factor is a named design choice; each of its levels names the config fields it
sets. :mod:`diagnose.memn2n.spec` turns a spec that names factors and levels into
runs; this module is the catalogue it reads.
"""

from __future__ import annotations

__all__ = ["FACTORS", "DEFAULT_LEVELS", "DEFAULT_SPEC", "LEVEL_LABELS"]

# Each factor: level name -> the config fields it sets. "hops" is relative to the
# spec's [sizes] hops: "full" runs them all, "one-fewer" is the posted loop's
# range(NUM_LAYERS - 1).
FACTORS: dict[str, dict[str, dict]] = {
    "output": {"softmax": {"output": "softmax"}, "relu": {"output": "relu"}},
    "temporal": {
        "none": {"temporal": "none"},
        "normal": {"temporal": "learned", "temporal_init": 0.05},  # N(0, 0.05), the paper
        "uniform": {"temporal": "learned", "temporal_init": "uniform"},  # U(-0.05, 0.05), Keras' template
        "ones": {"temporal": "learned", "temporal_init": "ones"},
        "sinusoidal": {"temporal": "sinusoidal"},
    },
    "dropout": {"none": {"dropout": "none"}, "memories": {"dropout": "memories"}, "hops": {"dropout": "hops"},
                "both": {"dropout": "both"}},
    "tying": {"layerwise": {"tying": "layerwise"}, "adjacent": {"tying": "adjacent"},
              "untied": {"tying": "untied"}},
    "h_wiring": {"state": {"h_wiring": "state"}, "scores": {"h_wiring": "scores"}},
    "loss_reduction": {"sum": {"loss_reduction": "sum"}, "mean": {"loss_reduction": "mean"}},
    "clip": {"global": {"clip": "global"}, "per_tensor": {"clip": "per_tensor"}, "none": {"clip": "none"}},
    "padding": {"masked": {"padding": "masked"}, "encoded": {"padding": "encoded"}},
    "hops": {"full": {"hops": 0}, "one-fewer": {"hops": -1}},  # relative to [sizes] hops
    "relu_units": {"half": {"relu_fraction": 0.5}, "none": {"relu_fraction": 0.0}},
    "embedding_init": {"normal": {"embedding_init": 0.05}, "uniform": {"embedding_init": "uniform"}},
}

# How a report names a level whose name alone does not say what it sets: the
# temporal encoding's and the embeddings' initial distributions.
LEVEL_LABELS: dict[str, dict[str, str]] = {
    "temporal": {"normal": "N(0, 0.05)", "uniform": "U(-0.05, 0.05)", "ones": "ones", "none": "none"},
    "embedding_init": {"normal": "N(0, 0.05)", "uniform": "U(-0.05, 0.05)"},
}

# Levels used when a spec names a factor without levels: the paper's and the
# question's settings, plus, for the temporal encoding, the init scales that
# explain the question, and adjacent tying (both presets tie layer-wise).
DEFAULT_LEVELS: dict[str, list[str]] = {
    "output": ["softmax", "relu"],
    "temporal": ["none", "normal", "uniform", "ones"],
    "dropout": ["none", "both"],
    "tying": ["layerwise", "adjacent"],
    "h_wiring": ["state", "scores"],
    "loss_reduction": ["sum", "mean"],
    "clip": ["global", "per_tensor"],
    "padding": ["masked", "encoded"],
    "hops": ["full", "one-fewer"],
    "relu_units": ["half", "none"],
    "embedding_init": ["normal", "uniform"],
}

# The default study: small enough that 3 seeds of every counterfactual, and the
# seeds and combinations its verdict then asks for, run in about a minute and a half on two
# cores. Sizes and budget are set in DEFAULT_SPEC below.
DEFAULT_SPEC: dict = {
    # 3 seeds to start (the fewest with an interval); adaptive seeding takes the
    # as-posted side, whose runs spread by ~0.8 nats between seeds, to 6-9 where it
    # matters (the cap, [study] max_seeds, is verdict_plan.DEFAULT_MAX_SEEDS).
    "study": {"name": "default", "bases": ["as-posted", "paper"], "seeds": 3},
    # Measured: at these sizes the paper model gets within ~0.5 nats of the small
    # corpus's Bayes floor (1.315) in 650 steps, the as-posted model sits at its
    # 10%-accuracy plateau, and a run trains in ~1.5 s on one core once its step is
    # traced (no XLA: compiling takes ~7 s a kind of run, more than its runs save).
    "budget": {"steps": 650},
    "corpus": {"synthetic": "topic-copy-small", "context": "stream"},
    "sizes": {"memory_size": 16, "embed_dim": 32, "hops": 3, "batch_size": 64},
    # Validated every 50 steps (13 points: curves to read, and the last 4 make a run's
    # outcome), annealed at most twice as before (every 325 steps).
    # The validation set (2,000 windows of 35 words) in one batch: 3.9 ms a validation against 5.2 ms in two.
    "train": {"log_every": 50, "probe_every": 325, "eval_every": 50, "anneal_every": 325, "eval_max_windows": 2048,
              "eval_batch_size": 2048, "tensorboard": False, "jit_compile": False},
    "factors": {name: [] for name in DEFAULT_LEVELS},
    # The question's contrast: with the step size fixed (summed loss), the as-posted
    # model learns without a temporal encoding and stalls with a unit-scale one.
    "combos": {
        "sum, no encoding": {"base": "as-posted", "loss_reduction": "sum", "temporal": "none"},
        "sum, ones encoding": {"base": "as-posted", "loss_reduction": "sum", "temporal": "ones"},
    },
}

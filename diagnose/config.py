"""Run configuration: what to train (model), on what (data), and how long (train).

A :class:`RunConfig` resolves fully (every default filled in, the vocabulary size
taken from the corpus) before training and is written as ``config.json``; the same
config and seed give the same metrics on CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diagnose.errors import ConfigError
from models.config import MemN2NConfig, apply_overrides, preset

__all__ = ["DataConfig", "TrainConfig", "RunConfig", "make_run_config"]


@dataclass(frozen=True)
class DataConfig:
    """Which corpus, and how windows are cut from it."""

    corpus: str | None = None  # a PTB-format file or directory; None means the synthetic corpus
    synthetic: str = "topic-copy"  # synthetic preset used when corpus is None
    synthetic_tokens: int | None = None  # training tokens of the synthetic corpus (None: the preset's)
    corpus_seed: int = 0  # the synthetic corpus is fixed across training seeds, so seeds vary only the run
    context: str = "stream"  # "stream": memory spans line breaks (paper LM); "line": memory restarts at each line
    max_vocab: int | None = None  # keep at most this many word types (PAD and UNK included); rest -> <unk>
    min_count: int = 1  # word types seen fewer times in training map to <unk>
    valid_fraction: float = 0.1  # for a single-file corpus: the tail held out for validation


@dataclass(frozen=True)
class TrainConfig:
    """How long to train, and how often to log and validate."""

    seed: int = 0  # weights, dropout and batch order
    epochs: float | None = 1.0  # training budget in passes over the training windows (ignored when steps is set)
    steps: int | None = None  # training budget in optimizer steps; overrides epochs
    log_every: int = 20  # steps per metrics.csv row; instruments still see every step
    eval_every: int | None = None  # steps between validation passes; None: at each epoch end (and at the end)
    eval_batch_size: int = 1024  # validation windows per batch; bounds memory at B x V logits
    eval_max_windows: int | None = None  # validate on the first N windows only (None: all)
    eval_at_start: bool = True  # validate before the first step (the loss at step 0)
    instruments: str = "full"  # "full": every instrument every step; "off": loss and accuracy only (for overhead benchmarks)
    probe_every: int = 200  # steps between "ignores input" probes (3 forward passes of one batch); 0 disables
    tensorboard: bool = True  # also write the logged rows as TensorBoard scalars under RUN_DIR/tb
    jit_compile: bool = True  # XLA-compile the train and eval steps
    threads: int | None = None  # TF intra-op threads (None: TF's default, all cores)
    eval_test: bool = False  # also evaluate the test split at each validation (test_* columns)
    checkpoint: bool = False  # save RUN_DIR/checkpoint after each validation, so train(resume=True) can continue


@dataclass(frozen=True)
class RunConfig:
    model: MemN2NConfig = field(default_factory=MemN2NConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data),
                "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return cls(model=MemN2NConfig(**d["model"]), data=DataConfig(**d["data"]),
                   train=TrainConfig(**d["train"]))


def make_run_config(preset_name: str = "paper", overrides: dict | None = None, *,
                    data: DataConfig | None = None, train: TrainConfig | None = None) -> RunConfig:
    """Builds a RunConfig from a model preset and ``KEY=VALUE`` overrides.

    Raises:
        ConfigError: unknown preset, key or value (the message lists the valid ones).
    """
    try:
        model = apply_overrides(preset(preset_name), overrides or {})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    train = train or TrainConfig()
    if train.steps is not None and train.steps < 1:
        raise ConfigError(f"--steps must be a positive integer, got {train.steps}")
    if train.steps is None and (train.epochs is None or train.epochs <= 0):
        raise ConfigError("give a positive --epochs or --steps budget")
    if train.log_every < 1:
        raise ConfigError(f"log_every must be >= 1, got {train.log_every}")
    data = data or DataConfig()
    if data.context not in ("stream", "line"):
        raise ConfigError(f"context={data.context!r} is not valid; choose stream or line")
    return RunConfig(model=model, data=data, train=train)

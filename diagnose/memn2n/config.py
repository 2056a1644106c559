"""Run configuration: what to train (model), on what (data), and how long (train).

A :class:`RunConfig` resolves fully (every default filled in, the vocabulary size
taken from the corpus) before training and is written as ``config.json``; the same
config and seed give the same metrics on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from diagnose.errors import ConfigError
from diagnose.limits import MAX_STEPS, check_seed
from diagnose.models.config import MemN2NConfig, apply_overrides, preset

__all__ = ["DataConfig", "TrainConfig", "RunConfig", "make_run_config", "resolve", "graph_key"]


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

    def validate(self) -> None:
        """Raises ConfigError naming the field and its valid values for an impossible value."""
        if self.corpus is not None and not isinstance(self.corpus, str):
            raise ConfigError(f"corpus={self.corpus!r} must be a path")
        if self.corpus is not None and not self.corpus.strip():
            raise ConfigError("corpus is empty; give the path of a PTB-format file or directory, or none for the "
                              "synthetic corpus")
        if not isinstance(self.synthetic, str) or not self.synthetic.strip():
            raise ConfigError(f"synthetic={self.synthetic!r} is empty; name a synthetic corpus (e.g. topic-copy), "
                              "or give none for the default")
        if self.context not in ("stream", "line"):
            raise ConfigError(f"context={self.context!r} is not valid; choose stream or line")
        _count("synthetic_tokens", self.synthetic_tokens, optional=True)
        _count("corpus_seed", self.corpus_seed, minimum=0)
        _count("max_vocab", self.max_vocab, optional=True, minimum=3)
        _count("min_count", self.min_count)
        if not _number(self.valid_fraction) or not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction must be a number in (0, 1), got {self.valid_fraction!r}")
        if self.corpus is None and (self.max_vocab is not None or self.min_count != 1):
            # The synthetic corpus's vocabulary is part of its definition (its entropy
            # floors are computed for it); trimming it would silently do nothing.
            raise ConfigError("max_vocab and min_count apply to a text corpus (--corpus PATH); the synthetic corpus "
                              "has a fixed vocabulary: drop them or give a corpus")
        if self.corpus is not None and self.synthetic_tokens is not None:
            raise ConfigError("synthetic_tokens (tokens) applies to the synthetic corpus, not to --corpus PATH")


@dataclass(frozen=True)
class TrainConfig:
    """How long to train, and how often to log and validate."""

    seed: int = 0  # weights, dropout and batch order
    epochs: float | None = 1.0  # training budget in passes over the training windows (ignored when steps is set)
    steps: int | None = None  # training budget in optimizer steps; overrides epochs
    log_every: int = 20  # steps per metrics.csv row; instruments still see every step
    eval_every: int | None = None  # steps between validation passes; None: at each epoch end (and at the end)
    # steps between checks that anneal the rate (at a validation); None: every validation
    anneal_every: int | None = None
    eval_batch_size: int = 1024  # validation windows per batch; bounds memory at B x V logits
    eval_max_windows: int | None = None  # validate on the first N windows only (None: all)
    eval_at_start: bool = True  # validate before the first step (the loss at step 0)
    instruments: str = "full"  # "full": every instrument every step; "off": loss and accuracy only (benchmarks)
    probe_every: int = 200  # steps between "ignores input" probes (3 forward passes of one batch); 0 disables
    tensorboard: bool = True  # also write the logged rows as TensorBoard scalars under RUN_DIR/tb
    jit_compile: bool = True  # XLA-compile the train and eval steps
    threads: int | None = None  # TF intra-op threads (None: TF's default, all cores)
    eval_test: bool = False  # also evaluate the test split at each validation (test_* columns)
    checkpoint: bool = False  # save RUN_DIR/checkpoint after each validation, so train(resume=True) can continue

    def validate(self) -> None:
        """Raises ConfigError naming the field and its valid values for an impossible value.

        As strict as ``--set`` is for the model: the right type (a bool is not a
        count), finite numbers, counts that are positive where zero means nothing.
        """
        _count("seed", self.seed, minimum=0)
        check_seed("seed", self.seed)
        _count("steps", self.steps, optional=True)
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ConfigError(f"steps={self.steps} is more than {MAX_STEPS:,} (a hundred times the paper's Penn "
                              "Treebank schedule, over a day at the fastest step): give a smaller budget")
        if self.steps is None and (not _number(self.epochs) or not 0 < self.epochs < math.inf):
            raise ConfigError(f"give a positive, finite epochs or a steps budget (epochs={self.epochs!r})")
        _count("log_every", self.log_every)
        _count("eval_every", self.eval_every, optional=True)
        _count("anneal_every", self.anneal_every, optional=True)
        _count("eval_batch_size", self.eval_batch_size)
        _count("eval_max_windows", self.eval_max_windows, optional=True)
        _count("probe_every", self.probe_every, minimum=0, why=" (0 turns the probes off)")
        _count("threads", self.threads, optional=True)
        for name in ("eval_at_start", "tensorboard", "jit_compile", "eval_test", "checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.instruments not in ("full", "off"):
            raise ConfigError(f"instruments={self.instruments!r} is not valid; choose full or off")


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
    train.validate()
    data = data or DataConfig()
    data.validate()
    return RunConfig(model=model, data=data, train=train)


def resolve(config: RunConfig, vocab_size: int, n_windows: int) -> tuple[RunConfig, list[str]]:
    """``config`` as a corpus resolves it, as config.json records it, and what that changed worth saying.

    The vocabulary is the corpus's; a batch is at most every training window (a
    larger ``batch_size`` trains on that many, and the record says so instead of
    the number asked for).
    """
    model = config.model
    notes = []
    if model.batch_size > n_windows:
        notes.append(f"batch_size {model.batch_size} is more than the corpus's {n_windows} training windows; each "
                     f"step trains on all {n_windows} (config.json records batch_size={n_windows})")
    model = dataclasses.replace(model, vocab_size=vocab_size, batch_size=min(model.batch_size, n_windows))
    return dataclasses.replace(config, model=model), notes


# Config fields that set only initial values, what the host loop does between calls,
# or the recipe's numbers the step reads from variables when it runs (the loss
# reduction as a scale on the summed loss, the clipping mode and threshold):
# runs that differ in nothing else share one traced step (:meth:`diagnose.memn2n.steps.MemN2NSteps.restart`).
# Everything else (sizes, the model's factors, the corpus, the instruments, XLA) is
# read while the step is traced.
_VALUE_FIELDS = {"model": ("temporal_init", "embedding_init", "init_std", "learning_rate", "lr_anneal",
                           "loss_reduction", "clip", "clip_norm"),
                 "train": ("seed", "steps", "epochs", "log_every", "eval_every", "anneal_every", "eval_at_start",
                           "probe_every", "tensorboard", "eval_test", "checkpoint")}


def graph_key(config: RunConfig) -> str:
    """What the traced steps of a built-in MemN2N run depend on: equal keys, one trace for both runs.

    Here, not beside the steps, so that a sweep's driver groups runs without loading TensorFlow.
    """
    d = config.to_dict()
    for part, names in _VALUE_FIELDS.items():
        for name in names:
            d[part].pop(name, None)
    return json.dumps(d, sort_keys=True, default=str)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _count(name: str, value, *, optional: bool = False, minimum: int = 1, why: str = "") -> None:
    """An integer of at least ``minimum`` (None allowed when ``optional``), else ConfigError."""
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {kind}{' or unset' if optional else ''}{why}, got {value!r}")

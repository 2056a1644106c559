"""How a worker trains the built-in MemN2N's runs: one corpus and one set of compiled steps per kind of run.

Runs of a study that differ only in their seed, initial values or the recipe's
numbers the step reads when it runs (the
:func:`~diagnose.memn2n.config.graph_key` of their configs is equal) share one
traced train step: the first traces it, the others restart it with their own
weights (:meth:`~diagnose.memn2n.steps.MemN2NSteps.restart`). Tracing the
instrumented step is ~1.3 s of a default-study run that trains in ~1.5 s, so the
sweep sends such runs to a worker together (their ``group``) and the worker keeps
the steps for later rounds of the same study. A run's record is the one it writes
alone (tested).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

from diagnose.memn2n.config import RunConfig, graph_key
from diagnose.memn2n.data.load import load_corpus

__all__ = ["group_of", "train_task", "MemN2NTrainer", "TRAINER"]

# Compiled steps kept per worker process: every kind of run of the default study
# (26) fits, so the seeds a later round adds find their steps traced; each holds a
# small model, its optimizer and three traced functions (a few MB at the default
# study's sizes).
_MAX_TRAINERS = 48

_CORPORA: dict = {}  # one corpus per data config and memory size per worker process
_TRAINERS: OrderedDict = OrderedDict()  # graph key -> MemN2NSteps, least recently used first


def group_of(config) -> str:
    """16 hex digits naming the compiled steps a RunConfig trains with (equal: shareable)."""
    return hashlib.sha256(graph_key(config).encode("utf-8")).hexdigest()[:16]


def train_task(config_dict: dict, run_dir: Path, reuse: bool = True) -> dict:
    """Trains one run into ``run_dir`` on this process's cached corpus and steps; returns its summary.

    ``reuse=False`` traces the steps afresh and keeps nothing (each run alone, as
    bench/ablation_time.py times it against the shared steps).

    Raises:
        Exception: whatever :func:`diagnose.memn2n.train.train` raises (the run is then
            recorded as failed there).
    """
    # Deferred: these load TensorFlow, which the driver that only plans a study never needs.
    from diagnose.memn2n.steps import MemN2NSteps
    from diagnose.memn2n.train import train

    config = RunConfig.from_dict(config_dict)
    corpus_key = repr(config.data) + str(config.model.memory_size)
    if corpus_key not in _CORPORA:
        _CORPORA[corpus_key] = load_corpus(config.data, memory_size=config.model.memory_size)
    corpus = _CORPORA[corpus_key]
    key = corpus_key + graph_key(config)
    trainer = _TRAINERS.pop(key, None) if reuse else None
    if trainer is None or trainer.corpus is not corpus:
        trainer = MemN2NSteps(config, corpus)
    summary = train(config, run_dir, corpus=corpus, trainer=trainer).summary  # a crash drops these steps
    if not reuse:
        return summary
    _TRAINERS[key] = trainer  # most recently used last
    while len(_TRAINERS) > _MAX_TRAINERS:
        _TRAINERS.popitem(last=False)
    return summary


class MemN2NTrainer:
    """The built-in MemN2N's :class:`~diagnose.ablation.trainer.Trainer`: :func:`train_task` in a worker."""

    def run(self, config: dict, run_dir: Path, reuse: bool = True) -> dict:
        return train_task(config, run_dir, reuse=reuse)


TRAINER = MemN2NTrainer()  # what the built-in study's runs carry (pickled by reference to the class)

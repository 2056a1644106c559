"""The one plug point between the study harness and a model: a :class:`Trainer` trains one run.

The sweep knows nothing of the model a study trains. Each kind of study hands its
runs a trainer object (:attr:`RunTask.trainer <diagnose.ablation.variants.RunTask>`):
the built-in MemN2N's (:class:`diagnose.memn2n.jobs.MemN2NTrainer`) and a user's
Keras model's (:class:`diagnose.userstudy.spec.KerasTrainer`). The executors call
``trainer.run(config, run_dir, reuse=...)`` in whichever process trains the run, so a
trainer must pickle by reference: an instance of a class defined at the top of an
importable module, with no state of its own (what it keeps, it keeps per process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

__all__ = ["Trainer"]


class Trainer(Protocol):
    """Trains one run of a study; what a sweep's workers call."""

    def run(self, config: dict, run_dir: Path, reuse: bool = True) -> dict:
        """Trains the run ``config`` describes (its ``to_dict()``) into ``run_dir``; returns its summary.

        ``reuse``: the process may keep what it traced for the study's next runs
        (False: trace afresh and keep nothing). A crash may raise; the worker records
        it as a failed run.
        """
        ...

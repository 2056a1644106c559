"""The kinds of study, in one place: a spec names its kind, the kind builds the study.

A spec whose ``[study]`` names a ``builder`` studies the user's own Keras model
(:mod:`diagnose.userstudy.spec`); any other is a study of the built-in MemN2N
(:mod:`diagnose.memn2n.spec`). Both give a spec the harness runs alike
(:mod:`diagnose.ablation.study`): its variants, its seeds, ``prepare(plan)`` for the
runs, each run carrying its kind's :class:`~diagnose.ablation.trainer.Trainer`.
"""

from __future__ import annotations

from pathlib import Path

from diagnose.ablation.schema import read_spec
from diagnose.memn2n.spec import load_spec
from diagnose.userstudy.spec import is_keras_spec, load_keras_spec

__all__ = ["load_study_spec"]


def load_study_spec(path: str | Path | None, overrides: dict | None = None, *, raw: dict | None = None):
    """A spec from TOML (or ``raw``, else the default study), ``overrides`` applied.

    A user study's :class:`~diagnose.userstudy.spec.KerasSpec` when it names a builder,
    else a built-in study's :class:`~diagnose.memn2n.spec.Spec`.

    Raises:
        ConfigError: unreadable TOML, or anything the kind's spec refuses, in one line.
    """
    data = read_spec(path, raw)
    if is_keras_spec(data):
        return load_keras_spec(data, overrides)
    return load_spec(None, overrides, raw=data)

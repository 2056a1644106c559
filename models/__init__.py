"""Keras models for `diagnose`: the MemN2N language model with every suspect choice a factor.

Knows nothing about diagnosis; `diagnose` trains and measures these models. The
configuration imports without Keras; the model classes load Keras on first use.
"""

from models.config import PRESETS, MemN2NConfig, apply_overrides, field_choices, preset

__all__ = ["MemN2N", "MemN2NConfig", "PRESETS", "apply_overrides", "build_memn2n", "field_choices", "preset",
           "token_loss"]

_LAZY = {"MemN2N", "build_memn2n", "token_loss"}


def __getattr__(name):
    if name in _LAZY:
        from models import memn2n

        return getattr(memn2n, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")

"""Keras models for `diagnose`: the MemN2N language model with every suspect choice a factor.

Knows nothing about diagnosis; `diagnose` trains and measures these models.
"""

from models.config import PRESETS, MemN2NConfig, apply_overrides, field_choices, preset
from models.memn2n import MemN2N, build_memn2n, token_loss

__all__ = ["MemN2N", "MemN2NConfig", "PRESETS", "apply_overrides", "build_memn2n", "field_choices", "preset", "token_loss"]

"""Keras models for `diagnose`: the MemN2N language model with every suspect choice a factor.

Knows nothing about diagnosis; `diagnose` trains and measures these models. The
configuration imports without Keras; the model classes load Keras on first use.

Imported as ``diagnose.models`` (never top-level ``models``): this folder stays at the
repository's root, and ``diagnose/models`` is a symlink to it, so the wheel, an editable
install and the checkout itself all give the same name, and no installed ``models``
shadows a user's own package of that name (setup.cfg says why this and not a
``package_dir`` mapping). Modules here import each other relatively and import nothing
from the rest of ``diagnose``.
"""

from .config import PRESETS, MemN2NConfig, apply_overrides, field_choices, preset

__all__ = ["MemN2N", "MemN2NConfig", "PRESETS", "apply_overrides", "build_memn2n", "field_choices", "preset",
           "token_loss"]

_LAZY = {"MemN2N", "build_memn2n", "token_loss"}


def __getattr__(name):
    if name in _LAZY:
        from . import memn2n

        return getattr(memn2n, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

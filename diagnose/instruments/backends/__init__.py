"""The instrumented train step on each Keras backend, the one Keras picked at import (``KERAS_BACKEND``).

Each is written the way Keras' own trainer for that backend writes its step
(:mod:`.tensorflow`, :mod:`.jax`, :mod:`.torch`), with the instruments they share in
:mod:`.common`; the wrapper (:mod:`diagnose.instruments.wrapper`) calls the running one.
"""

from __future__ import annotations

import importlib

from diagnose._tf import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["BACKEND", "backend_step"]

BACKEND = keras.backend.backend()


def backend_step():
    """The module of the running backend's train step: :mod:`.tensorflow`, :mod:`.jax` or :mod:`.torch` (each
    imports its library, loaded only where Keras runs on it)."""
    return importlib.import_module(f"diagnose.instruments.backends.{BACKEND}")

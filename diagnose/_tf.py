"""Imports TensorFlow without its start-up chatter on the terminal.

TF 2.21 prints absl/oneDNN/CUDA notices from C++ at import time whatever
TF_CPP_MIN_LOG_LEVEL says. The CLI hides them by pointing file descriptor 2 at
/dev/null for the duration of the import only; errors raised by the import itself
still propagate as exceptions.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    """Imports tensorflow and keras with stderr silenced; returns the tensorflow module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (imports tensorflow as its backend)
        import tensorflow as tf

        tf.constant(0)  # the CUDA probe runs at first use, not at import
        tf.get_logger().setLevel("ERROR")  # retracing notices and the like are not for users
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf

"""Imports TensorFlow without its start-up chatter on the terminal.

TF 2.21 prints absl/oneDNN/CUDA notices from C++ at import time whatever
TF_CPP_MIN_LOG_LEVEL says. The CLI hides them by pointing file descriptor 2 at
/dev/null for the duration of the import only; errors raised by the import itself
still propagate as exceptions.

TensorFlow takes its thread pools' sizes once, when its runtime starts (the first
op), and refuses them later. A process that wants its own (a sweep's worker: one
core of the machine's) passes ``threads`` to the call that imports it.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly(threads: int | None = None):
    """Imports tensorflow and keras with stderr silenced; returns the tensorflow module.

    Args:
        threads: TensorFlow's intra-op threads for this process (and one inter-op
            thread), set before its runtime starts. Where it has started already, what
            it has stays: see :func:`set_threads`.
    """
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        if threads:
            set_threads(tf, threads)
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (imports tensorflow as its backend)
        import tensorflow as tf

        if threads:
            set_threads(tf, threads)
        tf.constant(0)  # the CUDA probe runs at first use, not at import
        tf.get_logger().setLevel("ERROR")  # retracing notices and the like are not for users
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def set_threads(tf, threads: int) -> bool:
    """Sets TensorFlow's intra-op threads to ``threads`` and its inter-op threads to one.

    Returns:
        True when the process runs with those: set now, before the runtime started, or
        set so earlier. False when the runtime started with others (TensorFlow cannot
        change them then).
    """
    config = tf.config.threading
    try:
        config.set_intra_op_parallelism_threads(threads)
        config.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime has started
        return config.get_intra_op_parallelism_threads() == threads and config.get_inter_op_parallelism_threads() == 1
    return True

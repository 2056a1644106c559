"""Which of a wrapped model's steps measure the sampled instrument families.

The per-variable figures (norms, update ratios), attention, branch balance, inputs
and output health cost about as much as a small model's own step would: measured on
one step in :data:`SAMPLE_EVERY`, and on the first step of every logged interval, they
cost a few percent. They change slowly from step to step, so an interval's mean over
its sampled steps reads the same trend as a mean over all of them. The loss, accuracy,
loss noise, the checks for non-finite values and the target statistics are taken on
every step.

The rule is kept on the host when each call of the train function runs one step
(:meth:`Schedule.next_due`): the wrapper then calls one of two compiled steps, and a
step that measures nothing carries none of the sampled families' ops, not even as an
untaken branch. So it is on JAX with several steps per call too (Keras runs them one by one
from the host); on TensorFlow, where they are one graph, it is kept in-graph (:meth:`Schedule.due`).
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

__all__ = ["Schedule", "SAMPLE_EVERY"]

# One step in eight: at the default row of 20 steps, three sampled steps per row.
SAMPLE_EVERY = 8


class Schedule:
    """A step counter that says which steps to measure fully, on the host or in-graph."""

    def __init__(self, every: int = SAMPLE_EVERY):
        self.every = every
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._fresh = tf.Variable(True, trainable=False)  # no sampled step since the last read
        self._host_step, self._host_fresh = 0, True  # the same, for steps dispatched from the host
        self._in_graph = False  # whether a traced step reads the variables (due() was called)

    def next_due(self) -> bool:
        """Host side, before a step: whether it is sampled (the first after a read, or every ``every``-th)."""
        self._host_step += 1
        due = self._host_fresh or self._host_step % self.every == 0
        self._host_fresh = False
        return due

    def due(self):
        """In-graph: True (a bool tensor) on the first step after a read and on every ``every``-th; counts the step."""
        self._in_graph = True
        step = self._step.assign_add(1)
        return tf.logical_or(self._fresh, tf.equal(step % self.every, 0))

    def measured(self) -> None:
        """In-graph: a sampled step has been taken in this interval."""
        self._fresh.assign(False)

    def reset(self) -> None:
        """Host side, at each read of the accumulators: the next step is sampled."""
        if self._in_graph:
            self._fresh.assign(True)
        self._host_fresh = True

    def restart(self) -> None:
        """Host side: a new run (the step count from zero)."""
        self._step.assign(0)
        self._fresh.assign(True)
        self._host_step, self._host_fresh = 0, True

"""A row's probe columns: the data loss on the probe batch with real, shuffled and zeroed inputs, and the task's
error on it (each output's, for a model with several), as the ``Monitor`` records them.

The losses come from the wrapper's compiled probe (``Instrumented.probe_losses``), the
task error from the outputs that pass kept and the targets the model-task contract
read (:mod:`~diagnose.instruments.contract`). A probe draws nothing training would
draw: a model's seed generators are put back after any pass the probe runs on the
model's variables (:mod:`~diagnose.instruments.rng`).
"""

from __future__ import annotations

from diagnose._tf import import_tensorflow_quietly
from diagnose.instruments.backends.inference import sync_state
from diagnose.instruments.contract import target_of
from diagnose.instruments.rng import random_state_kept
from diagnose.instruments.task_error import task_error

import_tensorflow_quietly()
import keras  # noqa: E402

__all__ = ["ProbeRow"]


class ProbeRow:
    """Takes the probe of an instrumented model on one batch.

    Args:
        model: the instrumented model (``diagnose.instrument``'s), its user model built.
        seed_states: the user model's seed-generator variables (:func:`~diagnose.instruments.rng.seed_states`).
    """

    def __init__(self, model, seed_states: list):
        self.model = model
        self.seed_states = seed_states

    def take(self, x, y, contract: dict):
        """A call giving the probe's columns for ``(x, y)``, the task's error by ``contract``'s facts. On JAX
        the passes run now on the state fit holds, behind the steps, and are read when the call is made, with
        the row (see ``Instrumented.probe_losses``); elsewhere the model's variables hold the weights, and the
        probe is read now."""
        if self.model.reads_behind:
            losses = self.model.probe_losses(x, y, unread=True)
            return lambda: self._row(x, y, contract, losses())
        with random_state_kept(self.model.user_model, self.seed_states):
            row = self._row(x, y, contract, self.model.probe_losses(x, y))
        return lambda: row

    def _row(self, x, y, contract: dict, losses) -> dict:
        real, shuffled, zeroed = losses
        row = {"probe_loss_real": real, "probe_loss_shuffled": shuffled, "probe_loss_zeroed": zeroed}
        if "targets" in contract:
            try:
                error = task_error(self._outputs(x), y, contract)
            except Exception:  # noqa: BLE001 - a measure, never a reason for fit to fail
                error = None
            if error is not None:
                row["probe_task_error"] = error
        elif contract.get("outputs"):  # several outputs: each output's task error
            row.update(self._output_task_errors(x, y, contract))
        return row

    def _outputs(self, x):
        """The model's outputs on the probe batch: those the probe's compiled pass kept, else a forward pass."""
        kept = self.model.probe_outputs
        if kept is not None:
            return kept
        sync_state(self.model)  # on JAX, fit's state into the variables the forward pass reads
        with random_state_kept(self.model.user_model, self.seed_states):
            return self.model.user_model(x, training=False)

    def _output_task_errors(self, x, y, contract: dict) -> dict:
        """``probe_task_error/NAME`` for each output whose targets the contract read."""
        try:
            predicted = keras.tree.flatten(self._outputs(x))
        except Exception:  # noqa: BLE001 - a measure, never a reason for fit to fail
            return {}
        names = [name for name, _, _ in self.model.outputs]
        row = {}
        for facts in contract["outputs"]:
            name = facts.get("name")
            index = names.index(name) if name in names else None
            target = target_of(y, name, index) if index is not None else None
            if target is None or "targets" not in facts or index >= len(predicted):
                continue
            try:
                error = task_error(predicted[index], target, facts)
            except Exception:  # noqa: BLE001
                error = None
            if error is not None:
                row[f"probe_task_error/{name}"] = error
        return row

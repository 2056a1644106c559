"""What an epoch's end adds to its last row, read from the logs Keras hands the ``Monitor``: the validation loss
and accuracy in the training rows' units, each output's, and the other metrics the model compiled under the names
Keras gives them in ``History``."""

from __future__ import annotations

import numpy as np

__all__ = ["epoch_columns"]

# Validation metrics Keras may log for accuracy, by the name the user compiled.
VALID_ACCURACY = ("val_accuracy", "val_acc", "val_sparse_categorical_accuracy", "val_categorical_accuracy",
                  "val_binary_accuracy")


def epoch_columns(logs: dict, row: dict, loss_info, outputs: list, validation_batch_size) -> dict:
    """The columns the epoch's last ``row`` gets from Keras' ``logs``.

    Args:
        loss_info: the model's loss (:class:`~diagnose.instruments.targets.LossInfo`).
        outputs: the model's outputs as ``(name, LossInfo or None, loss weight)`` (several outputs), else empty.
        validation_batch_size: the batch size fit validates with (None: fit validates nothing).
    """
    def per_example(value: float, info) -> float:
        # Keras' val_loss per example, the training rows' unit: divided by the validation batch size where the
        # loss sums over the batch (exact when every batch is full)
        return value / float(validation_batch_size or 1) if info is not None and info.summed else value

    found = {}
    if "val_loss" in logs:
        found["val_loss"] = per_example(float(logs["val_loss"]), loss_info)
    accuracy = next((k for k in VALID_ACCURACY if k in logs), None)
    if accuracy is not None:
        found["val_accuracy"] = float(logs[accuracy])
    weighted = []
    for name, info, weight in outputs:  # several outputs: Keras' val_NAME_loss, val_NAME_accuracy
        if f"val_{name}_loss" in logs:
            found[f"val_loss/{name}"] = per_example(float(logs[f"val_{name}_loss"]), info)
            weighted.append(weight * found[f"val_loss/{name}"])
        elif info is not None:
            weighted.append(None)
        accuracy = next((f"val_{name}_{k[4:]}" for k in VALID_ACCURACY if f"val_{name}_{k[4:]}" in logs), None)
        if accuracy is not None:
            found[f"val_accuracy/{name}"] = float(logs[accuracy])
    if weighted and None not in weighted:  # per example, without the penalties, as the training rows
        found["val_loss"] = sum(weighted)
    found.update(compiled_metrics(logs, [name for name, _, _ in outputs], {**row, **found}))
    return found


def compiled_metrics(logs: dict, outputs: list[str], row: dict) -> dict:
    """The metrics the model compiled, under the names Keras logs them in ``History`` (``mae``, ``val_auc``,
    ``val_NAME_mae``), that the row does not hold already: the losses and accuracies, its own columns
    (``loss``, ``val_loss/NAME``, ``accuracy``...), and any column of that name."""
    accuracies = {k[4:] for k in VALID_ACCURACY}
    own = {"loss", *accuracies}
    for name in outputs:
        own |= {f"{name}_loss", *(f"{name}_{k}" for k in accuracies)}
    own |= {f"val_{k}" for k in own}
    return {k: float(v) for k, v in logs.items()
            if k not in own and k not in row and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}

"""Executors for sweep tests: one that writes whole records without training, one that trains in this process."""

import csv
import io
import json


def record_files(config: dict, status: str = "completed", loss: float = 2.0, steps: int | None = None) -> dict:
    """The bytes of a small, whole run record: config.json, metrics.csv (rows to ``steps``), summary.json."""
    steps = steps or config["train"]["steps"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "epoch", "loss", "accuracy", "learning_rate", "val_loss", "val_accuracy",
                     "val_perplexity"])
    for step in sorted({steps // 2, steps}):
        writer.writerow([step, step / 100, loss + 0.5, 0.3, 0.01, loss, 0.3, 7.0])
    summary = {"schema": 1, "status": status, "error": None, "steps": steps,
               "final": {"train_loss": loss + 0.5, "val_loss": loss}, "baselines": {"ln_vocab": 3.555},
               "wall_time_s": 0.01}
    return {"config.json": json.dumps({"schema": 1, **config}).encode(), "metrics.csv": buf.getvalue().encode(),
            "summary.json": json.dumps(summary).encode()}


class InstantExecutor:
    """Answers every task at once with a whole record (loss from the run id), or the result ``answer`` gives.

    Args:
        answer: optional ``answer(task) -> dict | None`` overriding a task's result.
    """

    def __init__(self, answer=None):
        self.answer = answer
        self.seen: list[str] = []

    def run(self, tasks):
        for task in tasks:
            self.seen.append(task["run_id"])
            result = self.answer(task) if self.answer else None
            if result is None:
                loss = 1.5 + int(task["run_id"][:4], 16) / 65536
                result = {"run_id": task["run_id"], "status": "completed", "error": None, "wall_time_s": 0.01,
                          "files": record_files(task["config"], loss=loss)}
            yield result


class InProcessExecutor:
    """Trains each task in this process (TensorFlow is loaded here already): no worker start-up."""

    def __init__(self):
        self.seen: list[str] = []

    def run(self, tasks):
        from diagnose.ablation.executors import run_one

        for task in tasks:
            self.seen.append(task["run_id"])
            yield run_one(task)

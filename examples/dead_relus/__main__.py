"""Train the faulty MLP as a user would, check it, and prove its findings over seeds.

    python -m examples.dead_relus [OUT]        # default OUT: runs/dead_relus

The run is trained with ``diagnose.instrument`` and a ``diagnose.Monitor`` told how to
rebuild it, so ``diagnose.prove_run`` can train each finding's mechanical fix over 3
seeds. The same from the command line, once the run exists:
``diagnose check runs/dead_relus --prove``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras

import diagnose
from diagnose.findings import check_run
from diagnose.findings.proof import findings_with_proof
from examples.dead_relus.model import build, data

SETTINGS = {"learning_rate": 0.3}  # the fault
FIT = {"epochs": 6, "batch_size": 32}  # 384 steps


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/dead_relus")
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    (x, y), valid = data(SETTINGS)
    model = diagnose.instrument(build(SETTINGS))
    monitor = diagnose.Monitor(run, overwrite=True, tensorboard=False,
                               rebuild={"builder": build, "data": data, "settings": SETTINGS, "fit": FIT})
    model.fit(x, y, validation_data=valid, verbose=0, callbacks=[monitor], **FIT)
    trained = time.perf_counter() - start
    proof = diagnose.prove_run(run)
    text, _ = findings_with_proof(check_run(run), proof.proof)
    print(text)
    print(f"\none run trained in {trained:.0f} s; the proof ({len(proof.findings)} findings, 3 seeds) took "
          f"{time.perf_counter() - start - trained:.0f} s -> {proof.dir}")


if __name__ == "__main__":
    main()

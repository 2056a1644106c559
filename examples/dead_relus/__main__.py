"""Train the faulty MLP as a user would, check it, and prove its findings over seeds.

    python -m examples.dead_relus [OUT]        # default OUT: runs/dead_relus

The run is trained with ``diagnose.instrument`` and a ``diagnose.Monitor`` told how to
rebuild it, so ``diagnose.prove_run`` can train each finding's mechanical fix over 3
seeds. Besides what the rules found, the proof tests ``tiny-steps``, the reading a
dead network invites (its update ratios are zero, as a rate far too small would give
them): the proof should confirm the step size too large and refute the one too small.
The same from the command line, once the run exists:
``diagnose check runs/dead_relus --prove --also tiny-steps``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras

import diagnose
from examples.dead_relus.model import build, data

SETTINGS = {"learning_rate": 0.3}  # the fault: Adam at 0.3 (1e-3 trains it)
FIT = {"epochs": 6, "batch_size": 32}  # 384 steps
RIGHT, WRONG = "huge-steps", "tiny-steps"  # the cause, and the misreading the proof should refute


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
    found = diagnose.check(run, prove=True, also=(WRONG,))  # the rules' findings, each fix over 3 seeds
    print(found)
    print(f"\n{RIGHT} (the cause): {found.status(RIGHT)}; {WRONG} (a wrong reading): {found.status(WRONG)}")
    print(f"one run trained in {trained:.0f} s; the proof ({len(found.proof['findings'])} findings, 3 seeds) "
          f"took {time.perf_counter() - start - trained:.0f} s -> {run / 'proof'}")


if __name__ == "__main__":
    main()

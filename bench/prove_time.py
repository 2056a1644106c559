"""How long a proof takes: three fixes over three seeds on a small model, against one run.

The model is examples/dead_relus (an MLP, 20 features, 384 steps of 32). One run is
trained as a user trains it (``instrument`` + ``Monitor``, TensorFlow already
imported); then ``diagnose.prove_run`` proves its findings over 3 seeds. The rules
find huge-steps and dead-network, which share one fix (the rate lowered), and
ignores-input, which has none; ``exploding-gradients`` and ``tiny-steps`` are added
so that three distinct fixes are tested: the base and 3 fixes x 3 seeds = 12 runs,
in worker processes (one per core) as ``diagnose check --prove`` runs them. Prints
the wall times and their ratio (the machine is shared, so the ratio is the figure
that travels); writes bench/results/prove_time.json.

    python bench/prove_time.py [--jobs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import write_result  # puts this checkout first on the import path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None, help="concurrent runs (default: one per core)")
    args = ap.parse_args()

    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    import diagnose
    from examples.dead_relus.__main__ import FIT, SETTINGS
    from examples.dead_relus.model import build, data

    with tempfile.TemporaryDirectory(prefix="prove-time-") as scratch:
        run = Path(scratch) / "run"
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        (x, y), valid = data(SETTINGS)
        model = diagnose.instrument(build(SETTINGS))
        model.fit(x, y, validation_data=valid, verbose=0, **FIT, callbacks=[diagnose.Monitor(
            run, tensorboard=False, rebuild={"builder": build, "data": data, "settings": SETTINGS, "fit": FIT})])
        one_run = time.perf_counter() - start
        start = time.perf_counter()
        proof = diagnose.prove_run(run, seeds=3, jobs=args.jobs, also=("exploding-gradients", "tiny-steps"))
        proving = time.perf_counter() - start
    tested = [f for f in proof.findings if f["status"] != "untested"]
    fixes = len({f["variant"] for f in tested})
    runs = len({r for f in tested for r in f.get("runs", [])}) + 3  # the fixes' runs and the base's
    result = {"one_run_s": one_run, "proof_s": proving, "ratio": proving / one_run, "findings_tested": len(tested),
              "fixes": fixes, "runs": runs, "statuses": {f["id"]: f["status"] for f in proof.findings}}
    print(f"one run: {one_run:.1f} s; proof of {len(tested)} findings ({fixes} fixes) over 3 seeds ({runs} runs): "
          f"{proving:.1f} s ({proving / one_run:.1f}x one run); {result['statuses']}")
    print(f"-> {write_result('prove_time', result)}")


if __name__ == "__main__":
    main()

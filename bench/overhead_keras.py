"""What instrument() + Monitor cost on ordinary models: the fault suite's healthy convnet and Transformer (and,
with --models, any case of it: so_listings_healthy and so_captcha_batchnorm have several outputs).

For each model two copies are built from the same seed: one trained with plain
``model.fit``, one wrapped as the README says (``diagnose.instrument`` and
``diagnose.Monitor(run_dir, probe=(x[:64], y[:64]), overwrite=True)``: each fit replaces the
last one's record; ``--probe-rows 0`` hands it no probe batch, so that it picks its own of up to
256 examples from the data, as in a user's fit). Each round fits both once over the case's full budget (its epochs and
batch size, no validation), in turn, the order alternating between rounds (AB, BA, ...) so
that neither always runs first; the first call of each is a warm-up that traces and compiles.
The figure is the median over rounds of the two fits' time ratio (a round's two fits run
back to back, so drifts in the machine's speed between rounds cancel), with its
interquartile range; beside it the same for the median epoch of each fit, which leaves out
what happens once per fit (Monitor's start, the run record's last writes). With
``--noise-floor`` a second copy of the plain fit joins the rotation, and the ratio of the two
plain fits, which nothing but the machine moves, is reported beside (two copies of one model
are two sets of weights in memory, which can run at different speeds).
Each model is timed at the case's own length (240 steps, a fit of 0.2-1 s: what happens
once a fit, the contract, the probes, the record's writes, weighs most there) and, with
``--lengths 1 10``, at ten times its epochs (2,400 steps: closer to a fit people wait
for, where the per-step cost shows).
Goal: at most 1.05x. Writes bench/results/overhead_keras.json; on Keras' other backends, chosen the
Keras way, overhead_keras_jax.json and overhead_keras_torch.json.

    python bench/overhead_keras.py                  # both models, 5 rounds, the cases' own length
    python bench/overhead_keras.py --lengths 1 10   # and ten times as many epochs
    python bench/overhead_keras.py --models conv_healthy --rounds 9
    python bench/overhead_keras.py --models tfm_base conv_base --out overhead_keras_base  # 20-40 ms a step
    KERAS_BACKEND=jax python bench/overhead_keras.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import alternate, write_result  # puts this checkout first on the import path

from diagnose._tf import import_tensorflow_quietly

MODELS = ("conv_healthy", "tfm_healthy")
SEED = 0
PROBE_SIZE = 64


def _epoch_timer():
    """A callback that records each epoch's wall time (the same one rides on both paths)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def _runner(case, run_dir: Path | None, epoch_medians: list, length: int = 1, probe_rows: int = PROBE_SIZE):
    """A call that fits one copy of the case once (``length`` times its epochs) and returns its seconds.

    ``probe_rows``: the probe batch handed to the Monitor (the first examples); 0: none, the Monitor picks
    its own from the data, as in a user's fit (up to 256 examples)."""
    import keras

    import diagnose
    from bench.faults import take

    keras.utils.set_random_seed(SEED)
    setup = case.build()
    setup.epochs *= length
    model, callbacks = setup.model, [_epoch_timer()]
    if run_dir is not None:
        model = diagnose.instrument(setup.model)
        # One Monitor for every round: each fit replaces the last one's record (overwrite=True, as a notebook's
        # fit run again would), which a Monitor refuses without it.
        probe = (take(setup.x, probe_rows), take(setup.y, probe_rows)) if probe_rows else None
        callbacks.append(diagnose.Monitor(run_dir, probe=probe, overwrite=True))

    def run() -> float:
        start = time.perf_counter()
        model.fit(setup.x, setup.y, epochs=setup.epochs, batch_size=setup.batch_size, verbose=0, callbacks=callbacks,
                  sample_weight=setup.sample_weight, class_weight=setup.class_weight)
        seconds = time.perf_counter() - start
        epoch_medians.append(statistics.median(callbacks[0].seconds))
        return seconds

    return run, setup


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]] if values else [float("nan")] * 2
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


def measure(case, rounds: int, scratch: Path, length: int = 1, probe_rows: int = PROBE_SIZE,
            noise_floor: bool = False) -> dict:
    """``noise_floor``: a second copy of the plain fit timed in the same rotation; the ratio of the two plain
    copies is what the machine alone moves a ratio by (the same model, seed and data)."""
    import keras

    epochs = {"plain": [], "instrumented": [], "plain again": []}
    plain, setup = _runner(case, None, epochs["plain"], length)
    ours, _ = _runner(case, scratch / f"{case.name}-{length}", epochs["instrumented"], length, probe_rows)
    runners = {"plain": plain, "instrumented": ours}
    if noise_floor:
        runners["plain again"] = _runner(case, None, epochs["plain again"], length)[0]
    times = alternate(runners, rounds)
    for key in epochs:  # drop the warm-up call's
        epochs[key] = epochs[key][1:]
    ratios = [o / p for o, p in zip(times["instrumented"], times["plain"])]
    epoch_ratios = [o / p for o, p in zip(epochs["instrumented"], epochs["plain"])]
    rows = len(keras.tree.flatten(setup.y)[0])  # (targets per output, for a model with several)
    steps = setup.epochs * -(-rows // setup.batch_size)
    return {"model": case.name, "length": length, "steps_per_fit": steps, "rounds": rounds,
            "probe_rows": probe_rows or "the Monitor's own pick",
            "fit_s_plain": statistics.median(times["plain"]),
            "fit_s_instrumented": statistics.median(times["instrumented"]),
            "step_ms_plain": 1e3 * statistics.median(times["plain"]) / steps,
            "step_ms_instrumented": 1e3 * statistics.median(times["instrumented"]) / steps,
            "ratio": statistics.median(ratios), "ratio_iqr": _quartiles(ratios),
            "epoch_ratio": statistics.median(epoch_ratios), "epoch_ratio_iqr": _quartiles(epoch_ratios),
            "ratios": ratios, "epoch_ratios": epoch_ratios,
            **({"noise_ratio": statistics.median(noise), "noise_ratio_iqr": _quartiles(noise), "noise_ratios": noise}
               if (noise := [a / p for a, p in zip(times.get("plain again", []), times["plain"])]) else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS),
                    help="fault-suite cases to time, or bench/larger_models.py's tfm_base and conv_base")
    ap.add_argument("--rounds", type=int, default=5, help="timed fits per path, alternating")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1], metavar="N",
                    help="time each model at N times its case's epochs (one run per N)")
    ap.add_argument("--probe-rows", type=int, default=PROBE_SIZE, metavar="N",
                    help=f"examples in the probe batch handed to the Monitor (default {PROBE_SIZE}); 0: none handed, "
                         "the Monitor picks its own from the data as in a user's fit (up to 256)")
    ap.add_argument("--noise-floor", action="store_true",
                    help="also time a second copy of the plain fit in the same rotation: the ratio of the two plain "
                         "fits is how far the machine alone moves a ratio")
    ap.add_argument("--out", help="result name under bench/results/ (default overhead_keras, on JAX and PyTorch "
                                  "overhead_keras_jax and overhead_keras_torch)")
    args = ap.parse_args()
    import_tensorflow_quietly()
    import keras

    from bench.faults import load_cases
    from bench.larger_models import LARGER

    backend = keras.backend.backend()

    cases = {**load_cases(), **LARGER}
    results = []
    with tempfile.TemporaryDirectory(prefix="overhead-keras-") as scratch:
        for length in args.lengths:
            for name in args.models:
                try:
                    results.append(measure(cases[name], args.rounds, Path(scratch), length, args.probe_rows,
                                           args.noise_floor))
                except Exception as error:  # noqa: BLE001  (a model instrument() cannot take is a result too)
                    message = (str(error).strip().splitlines() or [""])[0][:200]
                    results.append({"model": name, "length": length, "error": f"{type(error).__name__}: {message}"})
    print(f"Keras backend: {backend}")
    floor = " plain again / plain (IQR) |" if args.noise_floor else ""
    print(f"| model | steps per fit | plain ms/step | instrumented ms/step | ratio (IQR) | median-epoch ratio (IQR) |"
          f"{floor}")
    print("|---|---|---|---|---|---|" + ("---|" if floor else ""))
    for r in results:
        if "error" in r:
            print(f"| {r['model']} | crashed: {r['error']} | | | | |" + (" |" if floor else ""))
            continue
        whole, epoch = r["ratio_iqr"], r["epoch_ratio_iqr"]
        noise = (f" {r['noise_ratio']:.3f} ({r['noise_ratio_iqr'][0]:.3f}-{r['noise_ratio_iqr'][1]:.3f}) |"
                 if "noise_ratio" in r else "")
        print(f"| {r['model']} | {r['steps_per_fit']} | {r['step_ms_plain']:.1f} | {r['step_ms_instrumented']:.1f} "
              f"| {r['ratio']:.3f} ({whole[0]:.3f}-{whole[1]:.3f}) "
              f"| {r['epoch_ratio']:.3f} ({epoch[0]:.3f}-{epoch[1]:.3f}) |{noise}")
    print("ratio: median over rounds of (instrumented fit / plain fit), timed back to back; goal <= 1.05")
    name = args.out or ("overhead_keras" if backend == "tensorflow" else f"overhead_keras_{backend}")
    print(f"-> {write_result(name, {'goal': 1.05, 'backend': backend, 'results': results})}")


if __name__ == "__main__":
    main()

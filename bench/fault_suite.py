"""Scores diagnose on the fault suite (bench/faults/): does it name the right cause, and train as fit does?

For each case, with the same seed, data and op determinism, the model is trained
twice: once with plain ``model.fit``, once as the README says
(``diagnose.instrument(model)`` and ``diagnose.Monitor(run_dir)``, which picks its own held-out probe);
then ``diagnose.findings.check_run(run_dir)`` is timed. Recorded per case: crashes
(with their one-line error) of either path and of check, whether the two paths'
per-epoch training losses and final weights agree, the findings in order, whether the
first is the expected cause, the share of expected ids found, and on healthy cases any
root cause or oscillating-loss. Prints markdown tables (per case and the summary) and
writes bench/results/fault_suite.json.

    python bench/fault_suite.py                     # both parts (about an hour on 2 cores)
    python bench/fault_suite.py --part test         # the test part alone, never tuned on
    python bench/fault_suite.py --family rnn --only mlp_healthy
    python bench/fault_suite.py --list              # the cases, their twins and expectations
    KERAS_BACKEND=jax python bench/fault_suite.py --part test   # on JAX: fault_suite_test_jax.json

On Keras' other backends (chosen the Keras way, KERAS_BACKEND) the result's name ends
in the backend's, and the few cases only TensorFlow runs (raw strings into the model)
are listed with their reason; bench/fault_suite_backends.py compares the backends'.

The same seed gives each backend other initial weights, another data order and other
dropout masks (each draws from its own generator), so two backends train two different
runs of a case. ``--same-start DIR`` takes those apart from the rules: every backend
starts each case from the same initial weights (the first backend to run a case writes
them to DIR/CASE.npz, the others load them) and reads its training examples in the same
order (permuted once by numpy with the seed, then ``shuffle=False``); only the random
layers' masks still differ, and each case lists its random layers. Run instrumented
only; the result is named fault_suite_test_same_start (with the backend's suffix):

    python bench/fault_suite.py --part test --skip-plain --same-start starts
    KERAS_BACKEND=jax python bench/fault_suite.py --part test --skip-plain --same-start starts
    python bench/fault_suite_backends.py --name fault_suite_test_same_start
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from common import write_result  # puts this checkout first on the import path

from diagnose._tf import import_tensorflow_quietly

SEED = 0
# Agreement with plain fit. Float32 sums taken in another order differ by ~1e-7 per
# step; a stable run of a few hundred steps keeps that far below these bounds, while a
# step computed differently (another loss reduction, a dropped weight) moves losses by
# 1e-3 or more within an epoch.
LOSS_RTOL = 1e-4  # per-epoch training loss, relative
WEIGHT_RTOL = 1e-3  # all final weights as one vector, ||w_instrumented - w_plain|| / ||w_plain||


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _permuted(data, order: np.ndarray):
    """``data`` (a numpy array, or a list, tuple or dict of them) with its examples in ``order``."""
    import keras

    def permute(a):
        if not isinstance(a, np.ndarray):  # a tensor of strings, a dataset: left in its own order
            raise TypeError(f"not a numpy array: {type(a).__name__}")
        return a[order]

    return keras.tree.map_structure(permute, data)


def _same_start(case, setup, starts: Path) -> tuple[dict, dict]:
    """Gives the case's model the initial weights every backend shares (written by the first to run it) and its
    training examples one fixed order: the fit's keyword arguments, and what to record about it."""
    import keras

    path = starts / f"{case.name}.npz"
    if path.is_file():
        with np.load(path) as saved:
            setup.model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        facts = {"weights": "loaded"}
    else:
        starts.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(path.name + ".part.npz")
        np.savez(aside, *setup.model.get_weights())
        aside.replace(path)
        facts = {"weights": "written"}
    kwargs = setup.fit_kwargs() | {"shuffle": False}
    try:
        rows = len(keras.tree.flatten(setup.y)[0])
        order = np.random.RandomState(SEED).permutation(rows)
        setup.x, setup.y = _permuted(setup.x, order), _permuted(setup.y, order)
        if setup.sample_weight is not None:
            kwargs["sample_weight"] = _permuted(setup.sample_weight, order)
        facts["order"] = "permuted once"
    except (TypeError, IndexError, ValueError):  # not arrays (a dataset, a generator): its own order
        facts["order"] = "the data's own"
    # Layers that draw at random while training (dropout, noise, augmentation): their draws still differ.
    facts["random_layers"] = sorted({type(layer).__name__ for layer in setup.model._flatten_layers()
                                     if getattr(layer, "seed_generator", None) is not None})
    return kwargs, facts


def _train(case, run_dir: Path | None, starts: Path | None = None) -> dict:
    """Builds the case and fits it, plain (``run_dir`` None) or instrumented, from the shared start when
    ``starts`` is given (see ``--same-start``); never raises."""
    import keras

    import diagnose

    keras.backend.clear_session()  # fresh layer names and graphs for each path
    keras.utils.set_random_seed(SEED)
    try:
        setup = case.build()
        kwargs, facts = _same_start(case, setup, starts) if starts is not None else (setup.fit_kwargs(), {})
    except Exception as error:  # noqa: BLE001  (a case that cannot build is reported, not fatal)
        return {"error": "build: " + _one_line(error)}
    model, callbacks = setup.model, []
    start = time.perf_counter()
    try:
        if run_dir is not None:
            model = diagnose.instrument(setup.model)
            callbacks = [diagnose.Monitor(run_dir)]  # as the README shows: it picks its own probe batch
        keras.utils.set_random_seed(SEED)  # the same shuffles and dropout masks on both paths
        history = model.fit(setup.x, setup.y, verbose=0, callbacks=callbacks, **kwargs)
    except Exception as error:  # noqa: BLE001
        return {"error": _one_line(error), "fit_s": time.perf_counter() - start, "same_start": facts}
    return {"history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "weights": [np.array(w) for w in setup.model.get_weights()], "fit_s": time.perf_counter() - start,
            "same_start": facts}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a||, 0 where both are the same non-finite values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_nonfinite = ~np.isfinite(a) & ~np.isfinite(b) & ((a == b) | (np.isnan(a) & np.isnan(b)))
    if (~np.isfinite(a) | ~np.isfinite(b))[~same_nonfinite].any():
        return float("inf")
    diff = np.where(same_nonfinite, 0.0, a - b)
    return float(np.linalg.norm(diff) / max(np.linalg.norm(np.where(same_nonfinite, 0.0, a)), 1e-30))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise |a - b| over entries finite in both; inf if only one side is finite somewhere."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if (np.isfinite(a) != np.isfinite(b)).any():
        return float("inf")
    finite = np.isfinite(a)
    return float(np.abs(a - b)[finite].max()) if finite.any() else 0.0


def compare(plain: dict, ours: dict) -> dict:
    """How far the instrumented run's losses and weights are from plain fit's."""
    p_loss, o_loss = plain["history"].get("loss", []), ours["history"].get("loss", [])
    out = {"epochs": [len(p_loss), len(o_loss)]}
    n = min(len(p_loss), len(o_loss))
    rel = [_relative(np.array([p]), np.array([o])) for p, o in zip(p_loss[:n], o_loss[:n])]
    diffs = [abs(p - o) for p, o in zip(p_loss[:n], o_loss[:n]) if np.isfinite(p) and np.isfinite(o)]
    out["loss_max_abs"] = max(diffs, default=0.0)
    out["loss_max_rel"] = max(rel, default=0.0)
    if len(plain["weights"]) == len(ours["weights"]):
        pairs = list(zip(plain["weights"], ours["weights"]))
        # All variables as one vector: a near-zero bias cannot inflate the figure.
        out["weights_rel"] = _relative(np.concatenate([a.ravel() for a, _ in pairs]),
                                       np.concatenate([b.ravel() for _, b in pairs]))
        out["weights_max_var_rel"] = max((_relative(a, b) for a, b in pairs), default=0.0)
        out["weights_max_abs"] = max((_max_abs(a, b) for a, b in pairs), default=0.0)
    else:
        out["weights_rel"] = out["weights_max_var_rel"] = out["weights_max_abs"] = float("inf")
    p_val, o_val = plain["history"].get("val_loss", []), ours["history"].get("val_loss", [])
    out["val_loss_max_rel"] = max((_relative(np.array([p]), np.array([o])) for p, o in zip(p_val, o_val)), default=None)
    # What History shows the user: keys plain fit has that the instrumented fit lacks, and back.
    out["history_missing"] = sorted(set(plain["history"]) - set(ours["history"]))
    out["history_extra"] = sorted(set(ours["history"]) - set(plain["history"]))
    # The validation accuracy the user compiled (whatever its name) against the one the wrapper reports.
    p_acc = next((v for k, v in plain["history"].items() if k.startswith("val_") and k.endswith("accuracy")), None)
    o_acc = ours["history"].get("val_accuracy")
    out["val_accuracy_max_abs"] = (None if p_acc is None or o_acc is None or len(p_acc) != len(o_acc)
                                   else max((abs(p - o) for p, o in zip(p_acc, o_acc)), default=0.0))
    out["losses_equal"] = len(p_loss) == len(o_loss) and out["loss_max_rel"] <= LOSS_RTOL
    out["weights_equal"] = out["weights_rel"] <= WEIGHT_RTOL
    return out


def score_case(case, runs: Path, plain_fit: bool = True, starts: Path | None = None) -> dict:
    """Trains one case both ways (or instrumented only), checks the instrumented run and scores the findings;
    from the start every backend shares when ``starts`` is given (``--same-start``)."""
    from diagnose.findings import check_run

    row = {"case": case.name, "family": case.family, "expect": list(case.expect), "twin": case.twin,
           "healthy": case.healthy, "part": case.part, "report": case.report, "batch": case.batch}
    plain = _train(case, None, starts) if plain_fit else {"skipped": True}
    run_dir = runs / case.name
    ours = _train(case, run_dir, starts)
    if starts is not None:
        row["same_start"] = ours.get("same_start")
    row["plain_error"], row["instrumented_error"] = plain.get("error"), ours.get("error")
    row["contract_s"] = _contract_seconds(run_dir)
    row["plain_fit_s"], row["instrumented_fit_s"] = plain.get("fit_s"), ours.get("fit_s")
    row["plain_history"], row["instrumented_history"] = plain.get("history"), ours.get("history")
    if "history" in plain and "history" in ours:
        row["agreement"] = compare(plain, ours)
    findings, row["check_error"] = None, None
    if (run_dir / "config.json").is_file():  # even a crashed run: what does check say about it?
        start = time.perf_counter()
        try:
            findings = check_run(run_dir)
        except Exception as error:  # noqa: BLE001
            row["check_error"] = _one_line(error)
        row["check_s"] = time.perf_counter() - start
    row["findings"] = [{"id": f.id, "kind": f.kind, "severity": f.severity, "title": f.title} for f in findings or []]
    ids = [f["id"] for f in row["findings"]]
    trained = row["instrumented_error"] is None and findings is not None
    if case.healthy:
        # A healthy model named as failing, by a root cause or as an unexplained failure, is a false alarm.
        row["root_causes"] = [f["id"] for f in row["findings"] if f["kind"] in ("root-cause", "unexplained")]
        row["oscillating"] = "oscillating-loss" in ids
    else:
        row["top1"] = bool(trained and ids and ids[0] == case.expect[0])
        row["found"] = [i for i in case.expect if trained and i in ids]
        row["recall"] = len(row["found"]) / len(case.expect)
        first = row["findings"][0] if trained and row["findings"] else None
        # The worst outcome: a root cause named first that is not the fault.
        row["wrong_cause_first"] = bool(first and first["kind"] == "root-cause" and first["id"] != case.expect[0])
    return row


def _contract_seconds(run_dir: Path) -> float | None:
    """How long the model-task contract took before the first step (summary.json), where recorded."""
    import json

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    seconds = (summary.get("contract") or {}).get("seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def summarise(rows: list[dict]) -> dict:
    faulty = [r for r in rows if not r["healthy"]]
    healthy = [r for r in rows if r["healthy"]]
    agreed = [r for r in rows if "agreement" in r]
    checks = [r["check_s"] for r in rows if r.get("check_s") is not None]
    contracts = [r["contract_s"] for r in rows if r.get("contract_s") is not None]
    expected = sum(len(r["expect"]) for r in faulty)
    no_id = [r for r in faulty if r["expect"][0] == "unexplained"]
    reported = [r for r in faulty if r.get("report")]
    return {
        "wrong_cause_first": [r["case"] for r in faulty if r.get("wrong_cause_first")],
        "no_id": len(no_id), "no_id_unexplained_first": sum(r["top1"] for r in no_id),
        "reported": len(reported), "reported_top1": sum(r["top1"] for r in reported),
        "contract_s_mean": statistics.fmean(contracts) if contracts else None,
        "contract_s_max": max(contracts, default=None),
        "cases": len(rows), "families": len({r["family"] for r in rows}),
        "healthy": len(healthy), "faulty": len(faulty),
        "plain_crashes": sum(r["plain_error"] is not None for r in rows),
        "instrumented_crashes": sum(r["instrumented_error"] is not None for r in rows),
        "check_crashes": sum(r["check_error"] is not None for r in rows),
        "losses_equal": sum(r["agreement"]["losses_equal"] for r in agreed),
        "weights_equal": sum(r["agreement"]["weights_equal"] for r in agreed),
        "compared": len(agreed),
        "top1": sum(r["top1"] for r in faulty), "top1_accuracy": _share(sum(r["top1"] for r in faulty), len(faulty)),
        "recall": _share(sum(len(r["found"]) for r in faulty), expected),
        "mean_case_recall": _share(sum(r["recall"] for r in faulty), len(faulty)),
        "healthy_with_root_cause": [r["case"] for r in healthy if r["root_causes"]],
        "healthy_with_oscillating_loss": [r["case"] for r in healthy if r["oscillating"]],
        "check_s_mean": statistics.fmean(checks) if checks else None, "check_s_max": max(checks, default=None),
    }


def _share(numerator, denominator):
    return numerator / denominator if denominator else None


def _findings_cell(row: dict) -> str:
    # The table keeps an error's head; the JSON has the whole first line.
    if row["instrumented_error"]:
        return f"**crash**: {row['instrumented_error'][:90]}"
    if row.get("check_error"):
        return f"**check crash**: {row['check_error'][:90]}"
    ids = [f["id"] + ("*" if f["kind"] in ("root-cause", "unexplained") else "") for f in row["findings"]]
    return ", ".join(ids) or "none"


def _agreement_cell(row: dict) -> str:
    if row["plain_error"]:
        return f"plain fit crashed: {row['plain_error']}"
    agreement = row.get("agreement")
    if agreement is None:
        return "-"
    epochs = agreement["epochs"]
    if agreement["losses_equal"]:
        loss = "yes"
    elif epochs[0] != epochs[1]:
        loss = f"no ({epochs[1]} of {epochs[0]} epochs)"
    else:
        loss = f"no ({agreement['loss_max_rel']:.0e})"
    weights = "yes" if agreement["weights_equal"] else f"no ({agreement['weights_rel']:.0e})"
    return f"loss {loss}, weights {weights}"


def _verdict_cell(row: dict) -> str:
    if row["instrumented_error"] or row.get("check_error"):
        return "crash" if row["healthy"] else f"no (0/{len(row['expect'])})"
    if row["healthy"]:
        bad = row["root_causes"] + (["oscillating-loss"] if row["oscillating"] else [])
        return "ok" if not bad else "false: " + ", ".join(bad)
    return f"{'yes' if row['top1'] else 'no'} ({len(row['found'])}/{len(row['expect'])})"


def tables(rows: list[dict], summary: dict) -> str:
    """The per-case and summary tables, in markdown."""
    header = ("| case | family | expected | findings (* root cause) | top-1 (recall) / healthy "
              "| as plain fit: History loss, final weights (rel. diff) | check s |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        check = f"{r['check_s']:.2f}" if r.get("check_s") is not None else "-"
        lines.append(f"| {r['case']} | {r['family']} | {', '.join(r['expect']) or '(healthy)'} | {_findings_cell(r)} "
                     f"| {_verdict_cell(r)} | {_agreement_cell(r)} | {check} |")
    s = summary

    def pct(v):
        return "-" if v is None else f"{v:.0%}"

    def secs(v):
        return "-" if v is None else f"{v:.2f}"

    crashes = f"{s['plain_crashes']} / {s['instrumented_crashes']} / {s['check_crashes']}"
    false_causes, swings = s["healthy_with_root_cause"], s["healthy_with_oscillating_loss"]
    measures = [
        ("cases (families)", f"{s['cases']} ({s['families']}): {s['faulty']} faulty, {s['healthy']} healthy"),
        ("crashes: plain fit / instrumented / check", crashes),
        ("as plain fit: History losses equal / final weights equal",
         f"{s['losses_equal']} / {s['weights_equal']} of {s['compared']}"),
        ("top-1 right, faulty cases", f"{s['top1']} of {s['faulty']} ({pct(s['top1_accuracy'])})"),
        ("... of them ports of real bug reports", f"{s['reported_top1']} of {s['reported']}"),
        ("... faults with no id: 'unexplained' first", f"{s['no_id_unexplained_first']} of {s['no_id']}"),
        ("faulty cases with a wrong root cause first",
         f"{len(s['wrong_cause_first'])}: {', '.join(s['wrong_cause_first']) or '-'}"),
        ("recall of expected ids (mean per case)", f"{pct(s['recall'])} ({pct(s['mean_case_recall'])})"),
        ("healthy cases with a root cause or 'unexplained'", f"{len(false_causes)}: {', '.join(false_causes) or '-'}"),
        ("healthy cases with oscillating-loss", f"{len(swings)}: {', '.join(swings) or '-'}"),
        ("check time, mean / max (s)", f"{secs(s['check_s_mean'])} / {secs(s['check_s_max'])}"),
        ("contract checks before the first step, mean / max (s)",
         f"{secs(s['contract_s_mean'])} / {secs(s['contract_s_max'])}"),
    ]
    lines += ["", "| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in measures]
    return "\n".join(lines)


def case_list(cases) -> str:
    """The suite's cases as a markdown table: what each is, its twin and its expectation."""
    lines = ["| case | family | twin | expected | what |", "|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c.name} | {c.family} | {c.twin or '-'} | {', '.join(c.expect) or '(healthy)'} "
                     f"| {c.summary} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run these cases")
    ap.add_argument("--family", nargs="+", default=None, metavar="F", help="run these families")
    ap.add_argument("--runs", default=None, help="keep the instrumented run records in this directory")
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    ap.add_argument("--out", default=None, help="result name under bench/results/ (default fault_suite, "
                                                "fault_suite_test for --part test)")
    ap.add_argument("--part", choices=("tuning", "test", "all"), default="all",
                    help="the tuning part (rules developed on it), the test part (never tuned on), or both")
    ap.add_argument("--batch", type=int, default=None, help="only the test part's cases of this batch")
    ap.add_argument("--skip-plain", action="store_true",
                    help="train each case instrumented only (findings without the comparison with plain fit)")
    ap.add_argument("--same-start", default=None, metavar="DIR",
                    help="start every backend from the same initial weights (kept in DIR) and data order")
    args = ap.parse_args()

    tf = import_tensorflow_quietly()
    # Keras' warnings (from_logits on a softmax output...) are what some cases are about; not for the table.
    warnings.filterwarnings("ignore", category=UserWarning)
    from bench.faults import load_cases

    cases = list(load_cases(None if args.part == "all" else args.part, args.batch).values())
    if args.only or args.family:
        cases = [c for c in cases if (args.only and c.name in args.only) or (args.family and c.family in args.family)]
    if args.list:
        print(case_list(cases))
        return
    tf.config.experimental.enable_op_determinism()
    import keras

    backend = keras.backend.backend()
    # A case only TensorFlow can run (raw strings into the model) is listed with its reason on the others.
    not_run = [{"case": c.name, "family": c.family, "part": c.part, "not_run": c.tensorflow_only}
               for c in cases if backend != "tensorflow" and c.tensorflow_only]
    cases = [c for c in cases if backend == "tensorflow" or not c.tensorflow_only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fault-suite-") as scratch:
        runs = Path(args.runs) if args.runs else Path(scratch)
        for case in cases:
            start = time.perf_counter()
            rows.append(score_case(case, runs, plain_fit=not args.skip_plain,
                                   starts=Path(args.same_start) if args.same_start else None))
            row = rows[-1]
            print(f"{case.name}: {_findings_cell(row)} | {_verdict_cell(row)} | {_agreement_cell(row)} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    parts = {part: [r for r in rows if r["part"] == part] for part in ("tuning", "test")}
    summaries = {part: summarise(part_rows) for part, part_rows in parts.items() if part_rows}
    for part, summary in summaries.items():
        print(f"\n## The {part} part (Keras backend: {backend})\n")
        print(tables(parts[part], summary))
    for row in not_run:
        print(f"not run on {backend}: {row['case']} ({row['not_run']})")
    name = args.out or (("fault_suite_test" if args.part == "test" else "fault_suite")
                        + ("_same_start" if args.same_start else ""))
    if backend != "tensorflow" and not args.out:
        name += f"_{backend}"
    path = write_result(name, {"backend": backend, "not_run": not_run,
                               "seed": SEED, "loss_rtol": LOSS_RTOL, "weight_rtol": WEIGHT_RTOL,
                               "plain_fit": not args.skip_plain, "part": args.part,
                               "same_start": bool(args.same_start),
                               "summary": summaries.get("tuning") or summaries.get("test"),
                               "summaries": summaries, "cases": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

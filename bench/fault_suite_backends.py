"""The fault suite on each Keras backend: does diagnose name the same findings on JAX and PyTorch as on
TensorFlow?

Reads the results bench/fault_suite.py wrote on each backend (run it under each,
chosen the Keras way, e.g. ``KERAS_BACKEND=jax python bench/fault_suite.py --part test``:
fault_suite_test.json, fault_suite_test_jax.json, fault_suite_test_torch.json), and prints,
per backend, the suite's figures beside TensorFlow's and every case whose findings
differ from TensorFlow's: the same findings in the same order, the same first finding
(the cause the verdict names), or neither. A case only TensorFlow runs is listed with
its reason. Writes bench/results/fault_suite_backends.json (with --name, NAME_backends.json).

    python bench/fault_suite_backends.py                       # the test part, jax and torch
    python bench/fault_suite_backends.py --name fault_suite    # both parts
    python bench/fault_suite_backends.py --name fault_suite_test_same_start   # runs from one start

On results of ``fault_suite.py --same-start`` (every backend from the same initial
weights and data order) each differing case also lists the random layers whose draws
still differ between backends, and whether the two backends started from the same file.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, write_result

BACKENDS = ("jax", "torch")


def _ids(row: dict) -> list[str]:
    """The findings in order; a run whose fit raised leads with "(fit raised)" (check still reads its record:
    the contract's findings come before the first step)."""
    if row.get("check_error"):
        return ["(check raised)"]
    ids = [f["id"] for f in row.get("findings", [])]
    return ["(fit raised)", *ids] if row.get("instrumented_error") else ids


def compare(reference: dict, other: dict) -> dict:
    """Case by case, ``other``'s findings against ``reference``'s (the cases both ran)."""
    theirs = {r["case"]: r for r in other["cases"]}
    same, same_first, differ = [], [], []
    for row in reference["cases"]:
        if row["case"] not in theirs:
            continue
        a, b = _ids(row), _ids(theirs[row["case"]])
        entry = {"case": row["case"], "expect": row["expect"], "tensorflow": a, "backend": b,
                 "error": theirs[row["case"]].get("instrumented_error"),
                 "plain_error": theirs[row["case"]].get("plain_error") if other.get("plain_fit", True) else "not run"}
        start, their_start = row.get("same_start") or {}, theirs[row["case"]].get("same_start") or {}
        if start:
            entry["random_layers"] = start.get("random_layers", [])
            # both wrote their own weights: they ran at once and did not share the start
            entry["shared_start"] = not (start.get("weights") == their_start.get("weights") == "written")
        if a == b:
            same.append(row["case"])
        elif a[:1] == b[:1]:
            same_first.append(entry)
        else:
            differ.append(entry)
    compared = len(same) + len(same_first) + len(differ)
    return {"compared": compared, "same": len(same), "same_first_only": same_first, "different_first": differ,
            "not_run": other.get("not_run", [])}


def _figures(summary: dict) -> dict:
    return {"top-1 right": f"{summary['top1']} of {summary['faulty']}",
            "'unexplained' first (no id)": f"{summary['no_id_unexplained_first']} of {summary['no_id']}",
            "wrong root cause first": ", ".join(summary["wrong_cause_first"]) or "-",
            "healthy with a root cause": ", ".join(summary["healthy_with_root_cause"]) or "-",
            "crashes (plain / instrumented / check)":
                f"{summary['plain_crashes']} / {summary['instrumented_crashes']} / {summary['check_crashes']}",
            "as plain fit: losses / weights equal":
                f"{summary['losses_equal']} / {summary['weights_equal']} of {summary['compared']}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="fault_suite_test", help="the TensorFlow result's name under bench/results/")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    args = ap.parse_args()
    reference = json.loads((RESULTS / f"{args.name}.json").read_text())
    found = {}
    for backend in args.backends:
        path = RESULTS / f"{args.name}_{backend}.json"
        if not path.is_file():
            raise SystemExit(f"error: no {path.name}; run KERAS_BACKEND={backend} python bench/fault_suite.py "
                             f"(with the options that wrote {args.name}.json) first")
        found[backend] = json.loads(path.read_text())
    out = {"reference": args.name, "backends": {}}
    for part, summary in reference["summaries"].items():
        print(f"\n## The {part} part\n")
        print("| measure | tensorflow | " + " | ".join(found) + " |")
        print("|---|---|" + "---|" * len(found))
        columns = [_figures(summary)] + [_figures(each["summaries"][part]) for each in found.values()]
        for measure in columns[0]:
            print(f"| {measure} | " + " | ".join(c[measure] for c in columns) + " |")
    for backend, each in found.items():
        result = compare(reference, each)
        out["backends"][backend] = result | {"summaries": each["summaries"], "plain_fit": each.get("plain_fit")}
        print(f"\n## {backend}: {result['same']} of {result['compared']} cases name the same findings in the same "
              f"order as on TensorFlow, {len(result['same_first_only'])} the same first finding only, "
              f"{len(result['different_first'])} another first finding\n")
        if result["same_first_only"] or result["different_first"]:
            started = any("random_layers" in e for e in result["different_first"] + result["same_first_only"])
            print(f"| case | expected | tensorflow | {backend} | {backend}: fit raised (plain fit too?) |"
                  + (" random layers |" if started else "") + "\n|---|---|---|---|---|" + ("---|" if started else ""))
            for entry in result["different_first"] + result["same_first_only"]:
                plain = {None: "plain trained", "not run": "plain not run"}.get(entry["plain_error"], "plain too")
                raised = f"{entry['error'][:70]} ({plain})" if entry["error"] else "-"
                print(f"| {entry['case']} | {', '.join(entry['expect']) or '(healthy)'} | "
                      f"{', '.join(entry['tensorflow']) or 'none'} | {', '.join(entry['backend']) or 'none'} "
                      f"| {raised} |" + (f" {', '.join(entry.get('random_layers', [])) or '-'}"
                                        f"{'' if entry.get('shared_start', True) else ' (not the same start)'} |"
                                        if started else ""))
        for row in result["not_run"]:
            print(f"- not run on {backend}: {row['case']} ({row['not_run']})")
    name = "fault_suite_backends" if args.name == "fault_suite_test" else f"{args.name}_backends"
    print(f"-> {write_result(name, out)}")


if __name__ == "__main__":
    main()

"""The proof on the fault suite: where a rule ranks a wrong cause first, does the proof refute it?

For each faulty case of bench/faults/, ``diagnose.prove`` trains the case's model as
it is over seeds (the case's own fit settings), reads the findings of its seed-0 run,
trains each finding's mechanical fix over the same seeds and marks the finding
proven, refuted, inconclusive or untested. Recorded per case: the findings in order,
each one's status and effect, whether the first is the expected cause, and the
status of the expected cause. The summary counts the cases where a wrong cause came
first and how many of those the proof refuted (and how many of the expected causes
it proved). Prints a markdown table; writes bench/results/prove_suite.json with the
commit it measured.

    python bench/prove_suite.py                          # the tuning part's faulty cases (about 15 minutes)
    python bench/prove_suite.py --part test              # the test part's, never tuned on
    python bench/prove_suite.py --only mlp_adam_blowup --seeds 3 --jobs 2
    python bench/prove_suite.py --family mlp --runs DIR  # keep the proof studies in DIR

The case's model and data reach the proof's workers by reference, through
:func:`build` and :func:`data` here, with the case's name as the only setting.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from common import ROOT, write_result  # puts this checkout first on the import path

__all__ = ["build", "data"]


def _case(settings: dict):
    from bench.faults import load_cases

    cases = load_cases()
    if settings.get("case") not in cases:
        raise ValueError(f"no fault case {settings.get('case')!r}")
    return cases[settings["case"]].build()


def build(settings: dict):
    """The case's compiled model (the builder a proof rebuilds it with)."""
    warnings.filterwarnings("ignore", category=UserWarning)  # Keras' from_logits notices are some cases' point
    return _case(settings).model


def data(settings: dict) -> dict:
    """The case's data and fit settings as ``model.fit`` arguments."""
    setup = _case(settings)
    kwargs = {"x": setup.x, "y": setup.y, "validation_data": setup.validation_data, "epochs": setup.epochs,
              "batch_size": setup.batch_size}
    if setup.sample_weight is not None:
        kwargs["sample_weight"] = setup.sample_weight
    if setup.class_weight is not None:
        kwargs["class_weight"] = setup.class_weight
    return kwargs


def prove_case(case, out: Path, seeds: int, jobs: int, max_seeds: int) -> dict:
    """Proves one case's findings; never raises (a crash is the row's error)."""
    import diagnose

    row = {"case": case.name, "family": case.family, "expect": list(case.expect)}
    start = time.perf_counter()
    try:
        proof = diagnose.prove("bench.prove_suite:build", "bench.prove_suite:data", {"case": case.name},
                               seeds=seeds, max_seeds=max_seeds, out=out / case.name, jobs=jobs)
    except Exception as error:  # noqa: BLE001 - one case's failure is reported, not fatal
        row.update(error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                   wall_s=time.perf_counter() - start)
        return row
    found = [f for f in proof.findings if f["title"] != "not found by the rules; tested on request"]
    row["findings"] = [{k: f.get(k) for k in ("id", "kind", "status", "fix", "effect", "ci", "n", "measure",
                                              "untested")} for f in found]
    # Root causes the case does not expect, wherever the rules ranked them: what the
    # proof should refute (or leave open), never prove.
    row["wrong_causes"] = [{"id": f["id"], "status": f["status"]} for f in found
                           if f["kind"] == "root-cause" and f["id"] not in case.expect]
    row["base_loss"], row["margin"] = proof.proof["base_loss"], proof.proof["margin"]
    top = found[0] if found else None
    row["top"] = top["id"] if top else None
    row["top_right"] = bool(top and top["id"] == case.expect[0])
    row["wrong_first"] = bool(top and not row["top_right"])
    row["top_status"] = top["status"] if top else None
    expected = next((f for f in found if f["id"] == case.expect[0]), None)
    row["expected_status"] = expected["status"] if expected else "not found"
    row["wall_s"] = time.perf_counter() - start
    return row


def summarise(rows: list[dict]) -> dict:
    wrong = [r for r in rows if r.get("wrong_first")]
    proved = [r for r in rows if r.get("expected_status") not in (None, "not found")]
    return {
        "faulty_cases": len(rows), "errors": [r["case"] for r in rows if r.get("error")],
        "no_findings": [r["case"] for r in rows if not r.get("error") and r.get("top") is None],
        "wrong_first": len(wrong),
        "wrong_first_refuted": sum(r["top_status"] == "refuted" for r in wrong),
        "wrong_first_by_status": {s: [r["case"] for r in wrong if r["top_status"] == s]
                                  for s in ("refuted", "inconclusive", "proven", "untested", "failed")},
        "wrong_causes": sum(len(r.get("wrong_causes") or []) for r in rows),
        "wrong_causes_by_status": {s: [f"{r['case']}:{w['id']}" for r in rows for w in r.get("wrong_causes") or []
                                       if w["status"] == s]
                                   for s in ("refuted", "inconclusive", "proven", "untested", "failed")},
        "combined_by_status": {s: [r["case"] for r in rows for f in r.get("findings") or []
                                   if f["kind"] == "combined" and f["status"] == s]
                               for s in ("proven", "inconclusive", "refuted", "untested", "failed")},
        "right_first": sum(bool(r.get("top_right")) for r in rows),
        "expected_found": len(proved),
        "expected_by_status": {s: [r["case"] for r in proved if r["expected_status"] == s]
                               for s in ("proven", "inconclusive", "refuted", "untested", "failed")},
        "wall_s": sum(r.get("wall_s") or 0 for r in rows),
    }


def table(rows: list[dict], summary: dict) -> str:
    lines = ["| case | expected | findings: proof (* first) | first wrong? | its proof | expected cause's proof |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['case']} | {r['expect'][0]} | **error**: {r['error']} | - | - | - |")
            continue
        cells = ", ".join(f"{'*' if i == 0 else ''}{f['id']}: {f['status']}" for i, f in enumerate(r["findings"]))
        lines.append(f"| {r['case']} | {r['expect'][0]} | {cells or 'none'} | "
                     f"{'yes' if r['wrong_first'] else 'no'} | {r['top_status'] if r['wrong_first'] else '-'} | "
                     f"{r['expected_status']} |")
    s = summary
    lines += ["", f"wrong cause first: {s['wrong_first']} of {s['faulty_cases']} faulty cases; refuted by the proof: "
              f"{s['wrong_first_refuted']} of {s['wrong_first']} ({s['wrong_first_by_status']}); expected cause found "
              f"in {s['expected_found']}, by the proof: {s['expected_by_status']}; root causes not expected, anywhere: "
              f"{s['wrong_causes']} ({s['wrong_causes_by_status']})"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="prove these cases")
    ap.add_argument("--family", nargs="+", default=None, metavar="F", help="prove these families")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per variant to start (default 3)")
    ap.add_argument("--max-seeds", type=int, default=8, help="most seeds an inconclusive finding gets (default 8)")
    ap.add_argument("--jobs", type=int, default=None, help="concurrent runs (default: one per core)")
    ap.add_argument("--runs", default=None, help="keep the proof studies in this directory (resumable)")
    ap.add_argument("--out", default=None, help="result name under bench/results/ (default prove_suite, "
                                                "prove_suite_test for --part test)")
    ap.add_argument("--part", choices=("tuning", "test", "all"), default="tuning",
                    help="the fault suite's tuning part (default), its test part, or both")
    args = ap.parse_args()

    from diagnose._tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    from bench.faults import load_cases

    cases = [c for c in load_cases(None if args.part == "all" else args.part).values() if not c.healthy]
    if args.only or args.family:
        cases = [c for c in cases if (args.only and c.name in args.only) or (args.family and c.family in args.family)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prove-suite-") as scratch:
        runs = Path(args.runs) if args.runs else Path(scratch)
        for case in cases:
            rows.append(prove_case(case, runs, args.seeds, args.jobs, args.max_seeds))
            r = rows[-1]
            what = r.get("error") or ", ".join(f"{f['id']}: {f['status']}" for f in r["findings"]) or "no findings"
            print(f"{case.name}: {what} ({r['wall_s']:.0f} s)", flush=True)
    summary = summarise(rows)
    print()
    print(table(rows, summary))
    name = args.out or ("prove_suite_test" if args.part == "test" else "prove_suite")
    path = write_result(name, {"commit": commit, "part": args.part, "seeds": args.seeds, "max_seeds": args.max_seeds,
                                   "summary": summary, "cases": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

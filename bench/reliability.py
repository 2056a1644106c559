"""Faults a user (or an attacker) can cause, done to the command line as a user would: is anything lost,
written outside, left running, or silently wrong?

Five classes, a module each (tiny studies: faults, not figures, are measured):

1. studies and runs being written (reliability_records): kill -9 of ``run-ablation``
   mid-sweep then the same command again; two ``run-ablation`` on one ``--out`` at once;
   a finished study's records and manifest damaged; ``train --force`` killed before,
   just after and well after the new record replaces the old.
2. data that would be replaced (reliability_outputs): ``report`` and ``compare`` with
   ``--out`` at a study, a run, a directory or file of the user's; one Monitor given a
   second fit (the Python API); report and compare into read-only places.
3. links planted where a command writes, pointing outside (reliability_links): a
   study's .lock, .scratch, runs/, a run's record being moved in, its report/,
   compare's figure, a run's metrics.csv; a file where a study keeps a directory, or
   a directory where it keeps a file.
4. processes left behind (reliability_processes): kill -9 of ``run-ablation`` as its
   workers start and of ``report`` as it draws; then a report again, which must clear
   what the killed one left aside.
5. bad values (reliability_values): steps, epochs, hops, sizes and seeds past what the
   machine takes, on the command line and in a spec (--seeds 10**11 too); empty
   --synthetic and --out; names too long for a file; a batch larger than the corpus;
   --jobs past the cores; compare on a cut-off record or with --out under a file.

A refusal survives when it exits 2 with one line naming the problem and the fix, and
nothing under the bench's directory was written or changed (every file hashed before
and after). Prints one line per fault and ``faults survived M of M, data lost: no`` (or
what was lost); writes bench/results/reliability.json.

    python bench/reliability.py [--only outputs,links,...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (the checkout first on the import path, for the commands too)
from diagnose import runrecord  # noqa: E402
from reliability_common import SPEC, Ledger, cli
from reliability_links import planted_links
from reliability_outputs import monitor_twice, outputs_refused, read_only_places
from reliability_processes import report_killed, sweep_killed_at_start
from reliability_records import corrupt_finished_study, force_interrupted, kill_mid_sweep, two_sweeps_at_once
from reliability_values import bad_values

CLASSES = ("records", "outputs", "links", "processes", "values")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reliability.json"))
    ap.add_argument("--only", default=",".join(CLASSES), help=f"some of {', '.join(CLASSES)} (comma-separated)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ledger = Ledger(root)
        spec = root / "spec.toml"
        spec.write_text(SPEC)
        if "records" in only:
            study = kill_mid_sweep(root, spec, ledger)
            two_sweeps_at_once(root, spec, ledger)
            corrupt_finished_study(root, spec, study, ledger)
            force_interrupted(root, ledger)
        else:  # the finished study the other classes report on
            study = root / "killed"
            cli("run-ablation", spec, "--out", study, "--jobs", "2", "--quiet", "--no-report")
        if "outputs" in only:
            outputs_refused(root, study, ledger)
            monitor_twice(root, ledger)
            read_only_places(root, study, ledger)
        if "links" in only:
            planted_links(root, spec, study, ledger)
        if "processes" in only:
            sweep_killed_at_start(root, ledger)
            report_killed(root, study, ledger)
        if "values" in only:
            bad_values(root, study, ledger)
        for fault in ledger.faults:  # the temporary directory's path says nothing once it is gone
            fault["detail"] = fault["detail"].replace(str(root), "TMP")
        ledger.lost = [x.replace(str(root), "TMP") for x in ledger.lost]
    survived = sum(f["survived"] for f in ledger.faults)
    line = (f"faults survived {survived} of {len(ledger.faults)}, data lost: "
            f"{'no' if not ledger.lost else '; '.join(ledger.lost)}")
    print(line)
    runrecord.write_json(args.out, {"date": time.strftime("%Y-%m-%d"), "wall_time_s": time.perf_counter() - t0,
                                    "classes": sorted(only), "faults": ledger.faults, "survived": survived,
                                    "total": len(ledger.faults), "data_lost": ledger.lost, "line": line})


if __name__ == "__main__":
    main()

"""Faults done to studies and runs being written: a sweep killed, two at once, records damaged, a forced
train killed. Each is done to the command line as a user would do it (see reliability.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from diagnose import runrecord, studydir
from reliability_common import TRAIN, Ledger, cli, finished_runs, kill, study_whole, wait_for

def kill_mid_sweep(root: Path, spec: Path, ledger: Ledger) -> Path:
    study = root / "killed"
    proc = cli("run-ablation", spec, "--out", study, "--jobs", "1", "--quiet", "--no-report", wait=False)
    started = wait_for(lambda: len(finished_runs(study)) >= 2, proc)
    if not started:
        ledger.fault("kill -9 mid-sweep", False, "the sweep ended before it could be killed")
        return study
    kill(proc)
    before = finished_runs(study)
    code, out, err = cli("run-ablation", spec, "--out", study, "--jobs", "2", "--quiet", "--no-report")
    ledger.compare(before, finished_runs(study), "kill -9 mid-sweep")
    wrong = study_whole(study) + ([f"resume exited {code}: {err.strip()}"] if code else [])
    ledger.fault("kill -9 mid-sweep, then resume", not wrong,
                 f"{len(before)} runs done before the kill kept, {len(studydir.read_manifest(study)['runs'])} in all"
                 if not wrong else "; ".join(wrong))
    return study


def two_sweeps_at_once(root: Path, spec: Path, ledger: Ledger) -> None:
    study = root / "concurrent"
    first = cli("run-ablation", spec, "--out", study, "--jobs", "1", "--quiet", "--no-report", wait=False)
    second = cli("run-ablation", spec, "--out", study, "--jobs", "1", "--quiet", "--no-report", wait=False)
    results = sorted((p.wait(timeout=900), p.stderr.read()) for p in (first, second))
    codes = [c for c, _ in results]
    refused = results[1][1].strip() if codes == [0, 2] else ""
    wrong = study_whole(study) if studydir.is_study_dir(study) else ["no study written"]
    ok = codes == [0, 2] and "pid" in refused and len(refused.splitlines()) == 1 and not wrong
    ledger.fault("two run-ablation on one --out at once", ok,
                 f"exit statuses {codes}; the second said: {refused[:140]}" if ok else f"{codes} {wrong} {refused}")


def corrupt_finished_study(root: Path, spec: Path, source: Path, ledger: Ledger) -> None:
    study = root / "corrupted"
    shutil.copytree(source, study)
    before = finished_runs(study)
    ids = list(before)
    damage = {
        "truncated metrics.csv": (ids[0], lambda p: p.joinpath("metrics.csv").write_bytes(
            p.joinpath("metrics.csv").read_bytes()[:-40])),
        "missing metrics.csv": (ids[1], lambda p: p.joinpath("metrics.csv").unlink()),
        "all-NaN metrics.csv": (ids[2], _all_nan),
        "summary.json not JSON": (ids[3], lambda p: p.joinpath("summary.json").write_text('{"status": "compl')),
    }
    for rid, hurt in damage.values():
        hurt(study / studydir.RUNS / rid)
    check_runs = {name: cli("check", study / studydir.RUNS / rid) for name, (rid, _) in damage.items()}
    code, text, _ = cli("check", study)
    study_note = code == 0 and f"{len(damage)} damaged" in text
    code, _, err = cli("run-ablation", spec, "--out", study, "--jobs", "2", "--quiet", "--no-report")
    after = finished_runs(study)
    ledger.compare(before, after, "corruption")  # redone runs must give the same metrics, byte for byte
    for name, (rid, _) in damage.items():
        c, _, e = check_runs[name]
        named = c == 2 and len(e.strip().splitlines()) == 1 and "incomplete" in e
        problem = e.split("incomplete: ", 1)[-1].split(";")[0]
        ledger.fault(f"corruption: {name}", named and study_note and code == 0 and after.get(rid) == before[rid],
                     f"check says '{problem}'; run-ablation redid it, to the same metrics" if named
                     else f"check exit {c}: {e}")
    summaries = {rid: (study / studydir.RUNS / rid / runrecord.SUMMARY).read_bytes() for rid in after}
    (study / studydir.MANIFEST).write_text('{"runs": [')
    c1, _, e1 = cli("check", study)
    c2, _, e2 = cli("run-ablation", spec, "--out", study, "--quiet", "--no-report")
    c3, _, e3 = cli("run-ablation", spec, "--out", study, "--quiet", "--no-report", "--force")
    ledger.compare(before, finished_runs(study), "damaged manifest")
    retrained = [rid for rid, data in summaries.items()
                 if (study / studydir.RUNS / rid / runrecord.SUMMARY).read_bytes() != data]
    ok = (c1 == 2 and studydir.MANIFEST in e1 and c2 == 2 and "--force" in e2 and c3 == 0 and not study_whole(study)
          and not retrained)
    ledger.fault(f"corruption: {studydir.MANIFEST} not JSON", ok,
                 "check and run-ablation exit 2 naming it; --force rebuilt it from the records, nothing retrained"
                 if ok else f"{c1} {e1} | {c2} {e2} | {c3} {e3}")


def _all_nan(run: Path) -> None:
    lines = (run / "metrics.csv").read_text().splitlines()
    col = lines[0].split(",").index("loss")
    rows = [r.split(",") for r in lines[1:]]
    for r in rows:
        r[col] = "nan"
    (run / "metrics.csv").write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")


def force_interrupted(root: Path, ledger: Ledger) -> None:
    for when in ("before the swap", "just after the swap", "mid-run"):
        run = root / f"forced-{when.replace(' ', '-')}"
        code, _, err = cli("train", *TRAIN, "--out", run)
        old = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        # Long enough to be killed while it trains on any machine (400 steps took under a second on a quiet one).
        proc = cli("train", *TRAIN, "--steps", "100000", "--set", "learning_rate=0.02", "--force", "--out", run,
                   wait=False)
        if when == "before the swap":
            time.sleep(0.3)  # still importing: nothing written yet
        elif when == "just after the swap":
            wait_for(lambda run=run: has_new_config(run), proc, 120)
        else:
            wait_for(lambda run=run: has_new_config(run) and (run / "metrics.csv").is_file(), proc, 120)
        kill(proc)
        now = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        status = runrecord.read_summary(run).get("status")
        is_old = now == old
        is_new = has_new_config(run) and status == "running" and now.get("metrics.csv") != old.get("metrics.csv")
        c, text, _ = cli("check", run)
        said = is_old or (c == 0 and runrecord.NEVER_FINISHED in text)
        ledger.fault(f"train --force killed {when}", code == 0 and (is_old or is_new) and said,
                     "the old record, byte for byte" if is_old else
                     "the new config, status running, no old metrics; check says it never finished" if is_new else
                     f"neither: status {status}, files {sorted(now)}")


def has_new_config(run: Path) -> bool:
    """The forced run's record is in place: its config has the new learning rate."""
    return runrecord.is_run_dir(run) and b'"learning_rate": 0.02' in (run / runrecord.CONFIG).read_bytes()

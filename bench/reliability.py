"""Faults a user can cause, replayed on a small study: is anything lost, or silently wrong?

Each fault is done to the command line as a user would do it, then checked:

1. kill -9 of ``run-ablation`` mid-sweep, then the same command again: every run
   once, the runs finished before the kill untouched, nothing half-moved left.
2. two ``run-ablation`` on one ``--out`` at once: one runs, the other exits 2 naming
   it; every record in the study is whole.
3. a finished study damaged: one run's metrics.csv truncated, one's deleted, one's
   losses all NaN, one's summary.json not JSON, then the manifest not JSON. ``check``
   names each damaged run (exit 2) and the study's damage (``check STUDY``);
   ``run-ablation`` redoes exactly the damaged runs, to the same metrics, and a
   damaged manifest is refused until ``--force`` rebuilds it from the records.
4. ``train --force`` killed (kill -9) before, just after and well after the new
   record replaces the old: the run directory holds the old record byte for byte,
   or the new config with a summary saying running, never the one beside the
   other's metrics; ``check`` says the run never finished.

Prints one line per fault and ``faults survived M of M, data lost: no`` (or what
was lost); writes bench/results/reliability.json.

    python bench/reliability.py
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (the checkout first on the import path, for the commands too)
from diagnose import runrecord, studydir  # noqa: E402

SPEC = """
[study]
name = "faults"
bases = ["as-posted", "paper"]
seeds = 2

[budget]
steps = 60

[corpus]
synthetic = "topic-copy-small"

[sizes]
memory_size = 6
embed_dim = 8
hops = 2
batch_size = 16

[train]
log_every = 10
eval_every = 30
probe_every = 30
eval_max_windows = 512
eval_at_start = false
tensorboard = false
jit_compile = false

[factors]
output = []
"""
TRAIN = ["--synthetic", "topic-copy-small", "--steps", "400", "--log-every", "20", "--eval-every", "200",
         "--set", "memory_size=8", "--set", "embed_dim=16", "--set", "hops=2", "--set", "batch_size=32", "--no-jit",
         "--quiet"]


def cli(*args, wait=True, timeout=900):
    """`diagnose ARGS` in a new process: (exit status, stdout, stderr), or the process when not waiting."""
    cmd = [sys.executable, "-m", "diagnose.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def wait_for(condition, proc=None, timeout=300.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(2.0)  # its workers notice the driver is gone within a second


def finished_runs(study: Path) -> dict[str, bytes]:
    """run id -> metrics.csv bytes of every whole, ended run in the study."""
    runs = study / studydir.RUNS
    out = {}
    for path in sorted(runs.iterdir()) if runs.is_dir() else []:
        if path.is_dir() and not path.name.endswith(studydir.PARTIAL) and not runrecord.record_problems(path):
            if runrecord.read_summary(path).get("status") in ("completed", "diverged"):
                out[path.name] = (path / runrecord.METRICS).read_bytes()
    return out


def study_whole(study: Path) -> list[str]:
    """What is wrong with a finished study: runs not whole, not finished, leftovers."""
    wrong = []
    manifest = studydir.read_manifest(study)
    for entry in manifest["runs"]:
        path = studydir.run_path(study, entry["id"])
        problems = runrecord.record_problems(path) if path.is_dir() else ["missing"]
        if problems or entry["status"] not in ("completed", "diverged"):
            wrong.append(f"{entry['id']}: {entry['status']} {problems}")
    leftovers = [p.name for p in (study / studydir.RUNS).iterdir() if p.name not in {e["id"] for e in manifest["runs"]}]
    if leftovers or (study / studydir.SCRATCH).exists():
        wrong.append(f"leftovers: {leftovers}")
    return wrong


class Ledger:
    """Faults survived, and data lost, as the scenarios find them."""

    def __init__(self):
        self.faults, self.lost = [], []

    def fault(self, name: str, survived: bool, detail: str = "") -> None:
        self.faults.append({"fault": name, "survived": bool(survived), "detail": detail})
        print(f"{'survived' if survived else 'FAILED  '}  {name}{': ' + detail if detail else ''}", flush=True)

    def compare(self, before: dict[str, bytes], after: dict[str, bytes], what: str) -> None:
        for rid, data in before.items():
            if after.get(rid) != data:
                self.lost.append(f"{what}: run {rid} {'changed' if rid in after else 'gone'}")


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
        proc = cli("train", *TRAIN, "--set", "learning_rate=0.02", "--force", "--out", run, wait=False)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reliability.json"))
    args = ap.parse_args()
    ledger = Ledger()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "spec.toml"
        spec.write_text(SPEC)
        finished = kill_mid_sweep(root, spec, ledger)
        two_sweeps_at_once(root, spec, ledger)
        corrupt_finished_study(root, spec, finished, ledger)
        force_interrupted(root, ledger)
        for fault in ledger.faults:  # the temporary directory's path says nothing once it is gone
            fault["detail"] = fault["detail"].replace(str(root), "TMP")
    survived = sum(f["survived"] for f in ledger.faults)
    line = (f"faults survived {survived} of {len(ledger.faults)}, data lost: "
            f"{'no' if not ledger.lost else '; '.join(ledger.lost)}")
    print(line)
    runrecord.write_json(args.out, {"date": time.strftime("%Y-%m-%d"), "wall_time_s": time.perf_counter() - t0,
                                    "faults": ledger.faults, "survived": survived, "total": len(ledger.faults),
                                    "data_lost": ledger.lost, "line": line})


if __name__ == "__main__":
    main()

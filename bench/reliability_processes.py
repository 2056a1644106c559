"""Commands killed (SIGKILL) with processes of their own running: a sweep as its workers start, a report as
its figure processes draw. Nothing they started may outlive them (read from /proc), and a report killed half
way may leave nothing the next report does not clear."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from reliability_common import SPEC, Ledger, changes, cli, descendants, gone_within, snapshot

# Seconds the processes a killed command started may take to notice (they look every half second).
GRACE_S = 10.0


def _kill_with_children(args, count: int, timeout: float = 300.0) -> tuple[dict[int, str], int | None]:
    """Starts ``diagnose ARGS``, SIGKILLs it once ``count`` processes run under it; (those processes, the
    exit status when it ended by itself first)."""
    proc = subprocess.Popen([sys.executable, "-m", "diagnose.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # no pipe: the children would hold it open
    under: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        under.update(descendants(proc.pid))
        if len(under) >= count:
            break
        time.sleep(0.02)
    ended = proc.poll()
    under.update(descendants(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return under, ended


def _left_behind(name: str, under: dict[int, str], ended: int | None, count: int, ledger: Ledger) -> None:
    """Survived when none of the processes ``under`` the killed command is alive within :data:`GRACE_S`."""
    if ended is not None or len(under) < count:
        ledger.fault(name, False, f"not exercised: it ended (exit {ended}) with {len(under)} processes seen")
        return
    left, took = gone_within(under, GRACE_S)
    ledger.fault(name, not left, f"{len(under)} processes under it, none alive {took:.1f} s after the kill"
                 if not left else f"{len(left)} of {len(under)} processes alive {GRACE_S:.0f} s after (killed by "
                 "the bench)")


def sweep_killed_at_start(root: Path, ledger: Ledger) -> None:
    spec = root / "four-seeds.toml"
    spec.write_text(SPEC.replace("seeds = 2", "seeds = 4"))
    args = ["run-ablation", spec, "--out", root / "killed-at-start", "--jobs", "2", "--quiet", "--no-report",
            "--no-follow-up"]
    under, ended = _kill_with_children(args, count=3)  # two workers and multiprocessing's resource tracker
    _left_behind("kill -9 of run-ablation as its workers start", under, ended, 3, ledger)


def report_killed(root: Path, study: Path, ledger: Ledger) -> None:
    """A report killed while it draws: no figure process left, the study untouched; then the next report
    leaves no directory of the killed one behind."""
    out = root / "killed-report"
    before = snapshot(study)
    under, ended = _kill_with_children(["report", study, "--out", out], count=2)
    _left_behind("kill -9 of report as it draws", under, ended, 2, ledger)
    lost, written = changes(before, snapshot(study))
    ledger.lost += [f"report killed: the study's {x}" for x in lost]
    aside = sorted(p.name for p in root.iterdir() if p.name.startswith(f".{out.name}."))
    code, _, err = cli("report", study, "--out", out)
    left = sorted(p.name for p in root.iterdir() if p.name.startswith(f".{out.name}."))
    ok = code == 0 and not left and (out / "index.html").is_file() and not lost and not written
    ledger.fault("report again after a report killed half way", ok,
                 f"the killed one left {len(aside)} directory aside; the next report removed it, its own whole"
                 if ok else f"exit {code} {err.strip()[-200:]}; left aside: {left}; study changed: {lost + written}")

"""Where a :class:`~diagnose.Monitor` puts a record it was given no place for, and the line it prints at the end."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from diagnose.errors import DiagnoseError

__all__ = ["RUNS_ROOT", "new_run_dir", "end_line"]

# Where a Monitor given no run_dir puts its records, under the working directory (as TensorBoard's
# runs/ and W&B's wandb/): runs/<model name>-<n>, n one past the highest there.
RUNS_ROOT = "runs"


def end_line(summary: dict, run_dir: Path) -> str:
    """The line printed at the end of a fit: what happened, where the record is, and what to run next."""
    status = summary["status"] + (f" ({summary['error']})" if summary.get("error") else "")
    return (f"diagnose: {status} after {summary['steps']} steps; run record in {run_dir}; "
            f"findings: diagnose check {shlex.quote(str(run_dir))}")


def new_run_dir(root: Path, name: str) -> Path:
    """Makes and returns ``root/<name>-<n>``, n one past the highest there, so that runs sort by when they began.

    The directory is made here (exist_ok=False), so two processes naming one at once get one each.
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "run"
    if root.exists() and not root.is_dir():
        raise DiagnoseError(f"diagnose.Monitor: {root} is a file, so no run directory can be named in it; "
                            "pass diagnose.Monitor(run_dir) a directory")
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(re.escape(stem) + r"-(\d+)", p.name))]
    n = max(taken, default=0)
    while True:
        n += 1
        try:
            (root / f"{stem}-{n}").mkdir()
            return root / f"{stem}-{n}"
        except FileExistsError:
            continue


"""A run's checkpoint (``checkpoint/`` in its record): what ``train --resume`` goes on from.

Part of the run record's contract (:mod:`diagnose.runrecord` names the folder); kept
with the built-in model because only its training path writes and reads it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from diagnose.errors import RecordError
from diagnose.files import make_temp_dir, read_json, write_json
from diagnose.runrecord import CHECKPOINT

__all__ = ["write_checkpoint", "read_checkpoint"]

def write_checkpoint(run_dir: str | os.PathLike, state: dict, arrays: dict) -> None:
    """Writes ``checkpoint/`` (state.json and arrays.npz) and swaps it in by rename."""
    import numpy as np

    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT
    tmp = make_temp_dir(run_dir, prefix=f".{CHECKPOINT}.")
    try:
        with open(tmp / "arrays.npz", "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        write_json(tmp / "state.json", state)
        old = None
        if final.exists():
            old = run_dir / f".{CHECKPOINT}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checkpoint(run_dir: str | os.PathLike) -> tuple[dict, dict] | None:
    """``(state, arrays)`` from ``checkpoint/``, or None when the run has none.

    Raises:
        RecordError: the checkpoint is there but damaged (unreadable arrays or state).
    """
    import zipfile

    import numpy as np

    folder = Path(run_dir) / CHECKPOINT
    if not (folder / "state.json").is_file():
        old = Path(run_dir) / f".{CHECKPOINT}.old"  # a swap cut off between its two renames
        if not (old / "state.json").is_file():
            return None
        folder = old
    try:
        with np.load(folder / "arrays.npz") as data:
            arrays = {k: data[k] for k in data.files}
        state = read_json(folder / "state.json")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecordError) as exc:
        raise RecordError(f"the checkpoint in {run_dir} is damaged ({str(exc).splitlines()[0] or type(exc).__name__}"
                          "); train again without --resume (--force replaces the run)") from None
    return state, arrays

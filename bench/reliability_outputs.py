"""Outputs that would replace what is there: report and compare pointed at a study, a run, a directory of
the user's files; a Monitor given a second fit; places that cannot be written. Each is refused in one line
(exit 2, or the Monitor's error) and nothing under the bench's root changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from diagnose import studydir
from reliability_common import Ledger, snapshot

# One Monitor, two fits: the second must be refused and the first fit's record kept. The record's
# files are hashed between the two (stdin says when), as the bench hashes everything else.
MONITOR_TWICE = """
import sys
import numpy as np
import keras
import diagnose

keras.utils.set_random_seed(0)
inputs = keras.Input((8,))
model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(keras.layers.Dense(16)(inputs)))
model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(256, 8)).astype("float32"), rng.integers(0, 5, 256)
wrapped = diagnose.instrument(model)
monitor = diagnose.Monitor(sys.argv[1], log_every=4, tensorboard=False)
wrapped.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
print("first fit recorded", flush=True)
sys.stdin.readline()
try:
    wrapped.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[monitor])
    print("second fit accepted")
except diagnose.errors.DiagnoseError as exc:
    print(f"refused: {exc}")
"""


def outputs_refused(root: Path, study: Path, ledger: Ledger) -> None:
    """report and compare at a study, a run, a directory of the user's files, a file: refused, nothing changed."""
    target = root / "another-study"
    shutil.copytree(study, target)
    run = next(p for p in sorted((study / studydir.RUNS).iterdir()) if p.is_dir())
    mine = root / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own notes\n")
    (root / "my-figure.png").write_bytes(b"\x89PNG\r\n\x1a\nthe user's own figure")
    ledger.refused("report --out at another study", ["report", study, "--out", target], "is a study")
    ledger.refused("report --out at the study it reports", ["report", study, "--out", study], "is a study")
    ledger.refused("report --out at a run directory", ["report", study, "--out", target / studydir.RUNS / run.name],
                   "is a run record")
    ledger.refused("report --out at a non-empty directory", ["report", study, "--out", mine], "did not write",
                   "--force")
    ledger.refused("report --force --out at a study", ["report", study, "--out", target, "--force"], "is a study")
    ledger.refused("compare --out at a study", ["compare", run, "--out", target], "is a directory")
    ledger.refused("compare --out inside a run directory", ["compare", run, "--out", run / "compare.png"],
                   "inside a run record")
    ledger.refused("compare --out at a file compare did not write", ["compare", run, "--out", root / "my-figure.png"],
                   "--force")


def monitor_twice(root: Path, ledger: Ledger) -> None:
    """One Monitor given a second fit, through the Python API: refused, the first fit's record whole."""
    run = root / "keras-run"
    proc = subprocess.Popen([sys.executable, "-c", MONITOR_TWICE, str(run)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    before = snapshot(root)
    out, err = proc.communicate("go\n", timeout=600)
    said = out.strip().splitlines()[-1] if out.strip() else err.strip()[-300:]
    wrong = None if first == "first fit recorded" and said.startswith("refused: ") and "\n" not in said else said
    ledger.outcome("a Monitor given a second fit", before, wrong, said,
                   done=f"the first fit's record kept, the second {said[:150]}")


def read_only_places(root: Path, study: Path, ledger: Ledger) -> None:
    """report and compare into a read-only directory, report on a read-only study: exit 2 and the fix."""
    place = root / "read-only"
    place.mkdir()
    run = next(p for p in sorted((study / studydir.RUNS).iterdir()) if p.is_dir())
    ledger.refused("report into a read-only directory", ["report", study, "--out", place / "report"],
                   str(place), "choose a directory you can write", read_only=place)
    ledger.refused("report on a read-only study", ["report", study], str(study / studydir.REPORT),
                   "give --out a directory you can write", read_only=study)
    ledger.refused("compare into a read-only directory", ["compare", run, "--out", place / "c.png"], str(place),
                   read_only=place)

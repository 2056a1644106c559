"""Links planted where a command writes, pointing outside: a study's .lock, its .scratch, its runs/, a run's
record being moved in (runs/ID.partial), a study's report, compare's figure, a file of a run record; and a file
where a study keeps a directory or back. Each command is refused in one line (exit 2), and neither what a link
points at nor anything else under the bench's root changes."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from diagnose import runrecord, studydir
from diagnose.memn2n.spec import build_spec
from reliability_common import TRAIN, Ledger


def planted_links(root: Path, spec: Path, study: Path, ledger: Ledger) -> None:
    outside = root / "outside"
    outside.mkdir()
    (outside / "precious").write_text("a file outside every study\n")
    first_run = build_spec(tomllib.loads(spec.read_text())).prepare()[0][0].run_id
    places = {"a study's .lock linked to a file outside": (studydir.LOCK, outside / "precious"),
              "a study's .scratch linked outside": (studydir.SCRATCH, outside),
              "a study's runs/ linked outside": (studydir.RUNS, outside),
              "a run's partial record (runs/ID.partial) linked outside":
                  (f"{studydir.RUNS}/{first_run}{studydir.PARTIAL}", outside)}
    for i, (name, (place, target)) in enumerate(places.items()):
        link = root / f"linked-{i}" / place
        link.parent.mkdir(parents=True)
        link.symlink_to(target, target_is_directory=target.is_dir())
        ledger.refused(f"run-ablation into {name}",
                       ["run-ablation", spec, "--out", root / f"linked-{i}", "--jobs", "1", "--quiet", "--no-report"],
                       str(link), "symbolic link")
    study = shutil.copytree(study, root / "linked-study")
    (study / studydir.REPORT).symlink_to(outside, target_is_directory=True)
    ledger.refused("report of a study whose report/ is linked outside", ["report", study],
                   str(study / studydir.REPORT), "symbolic link")
    squatted = {"a directory at a study's .lock": studydir.LOCK, "a file at a study's runs/": studydir.RUNS,
                "a file at a study's .scratch": studydir.SCRATCH}
    for i, (name, place) in enumerate(squatted.items()):
        path = root / f"squatted-{i}" / place
        path.parent.mkdir()
        path.mkdir() if place == studydir.LOCK else path.write_text("the user's file\n")
        ledger.refused(f"run-ablation into {name}",
                       ["run-ablation", spec, "--out", path.parent, "--jobs", "1", "--quiet", "--no-report"],
                       str(path), "give another --out")
    figure = root / "linked-figure.png"
    figure.symlink_to(outside / "precious")
    ledger.refused("compare --out a link to a file outside", ["compare", next((study / studydir.RUNS).iterdir()),
                                                                "--out", figure], "symbolic link")
    run = root / "linked-run"
    run.mkdir()
    (run / runrecord.METRICS).symlink_to(outside / "precious")
    ledger.refused("train into a run directory whose metrics.csv is linked outside",
                   ["train", *TRAIN, "--out", run], str(run / runrecord.METRICS), "symbolic link")

"""How long the report of a study takes to build, and what its first screen shows.

Builds the report of a finished study (default: ``ablations/default``, what
``diagnose run-ablation`` writes) into a temporary directory twice: fresh (every
figure drawn) and again over the first (run figures taken from it, as a rerun of
``run-ablation`` on the same records does). Wall and CPU seconds of each, in a fresh
process as a user runs ``diagnose report``. Then, where Chromium is installed, a
screenshot of the first screen at 1400x900 to bench/results/first_screen.png.

    python bench/report_time.py [STUDY_DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from diagnose import studydir  # noqa: E402


def _build(study: Path, out: Path) -> dict:
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "diagnose.cli", "report", str(study), "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"diagnose report failed: {proc.stderr.strip()}")
    return {"wall_s": wall, "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}


def _screenshot(index: Path, png: Path) -> bool:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1400,900", f"--user-data-dir={profile}", f"--screenshot={png}",
                        index.as_uri()], capture_output=True, timeout=120)
    return png.is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", nargs="?", default="ablations/default", help="a finished study directory")
    args = ap.parse_args()
    study = Path(args.study)
    if not studydir.is_study_dir(study):
        sys.exit(f"error: {study} is no study directory; run `diagnose run-ablation` first")
    manifest = studydir.read_manifest(study)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        fresh = _build(study, out)
        again = _build(study, out)
        files = sorted(p.name for p in out.iterdir())
        shot = common.RESULTS / "first_screen.png"
        shot_taken = _screenshot(out / "index.html", shot)
    result = {"study": manifest.get("study"), "runs": len(manifest["runs"]),
              "variants": len({e["variant"] for e in manifest["runs"]}), "fresh": fresh, "rebuild": again,
              "files": len(files), "run_pages": sum(f.startswith("run-") and f.endswith(".html") for f in files),
              "screenshot": "bench/results/first_screen.png" if shot_taken else None}
    print(f"report of {result['runs']} runs ({result['variants']} variants): fresh {fresh['wall_s']:.1f} s wall, "
          f"{fresh['cpu_s']:.1f} CPU s; rebuilt {again['wall_s']:.1f} s wall, {again['cpu_s']:.1f} CPU s; "
          f"{result['run_pages']} run pages" + (f"; first screen -> {shot}" if shot_taken else ""))
    print(f"-> {common.write_result('report_time', result)}")


if __name__ == "__main__":
    main()

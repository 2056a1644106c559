"""Screenshots at 1400x900 of what a person sees first: a study's report, a user study's, a run page.

Renders the reports of the given studies (or of fresh ones: the default study and the
question's plain-Keras study, a few minutes on 2 cores), then takes each page's first
screen with headless Chromium and saves it under bench/results/ (screen_*.png), and
measures whether any page scrolls sideways at 1400 px (its document wider than the
window). Needs Selenium (the test extra) and Chromium with its driver (Debian:
apt-get install chromium chromium-driver).

    python bench/screens.py [--default DIR] [--user DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import common

WIDTH, HEIGHT = 1400, 900


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "diagnose.cli", *args], check=True, stdout=subprocess.DEVNULL)


def _browser():
    """Headless Chromium through Selenium (the test extra) at the window size."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit('error: selenium is missing; pip install ".[test]" (and Chromium with its driver)')
    driver_bin = shutil.which("chromedriver")
    if driver_bin is None:
        sys.exit("error: no chromedriver on the PATH; install Chromium's driver (Debian: chromium-driver)")
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium sends no usage statistics anywhere
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_bin))  # the driver found, not a download
    driver.set_window_size(WIDTH, HEIGHT)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    driver.set_window_size(2 * WIDTH - inner[0], 2 * HEIGHT - inner[1])  # the viewport, not the window, at size
    return driver


def screenshot(driver, page: Path, out: Path) -> int:
    """Saves the first screen of ``page`` to ``out``; returns the document's width in CSS pixels."""
    driver.get(page.resolve().as_uri())
    driver.save_screenshot(str(out))
    return int(driver.execute_script("return document.documentElement.scrollWidth;"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", help="an existing default study (else one is run)")
    parser.add_argument("--user", help="an existing user study (else the question's Keras study is run)")
    parser.add_argument("--keep", help="where to run the studies (default: a temporary directory)")
    args = parser.parse_args()
    scratch = Path(args.keep or tempfile.mkdtemp())
    default = Path(args.default) if args.default else scratch / "default"
    user = Path(args.user) if args.user else scratch / "question-keras"
    if not args.default:
        _run("run-ablation", "--out", str(default))
    if not args.user:
        _run("run-ablation", str(common.ROOT / "examples" / "question" / "study.toml"), "--out", str(user))
    for study in (default, user):  # drawn by this checkout's code, whoever ran the study
        _run("report", str(study))
    first_run = sorted((default / "report").glob("runs/*.html")) or sorted((default / "report").rglob("run*.html"))
    pages = {"default_study": default / "report" / "index.html", "user_study": user / "report" / "index.html",
             "run_page": first_run[0]}
    results = {}
    driver = _browser()
    for name, page in pages.items():
        out = common.RESULTS / f"screen_{name}.png"
        width = screenshot(driver, page, out)
        results[name] = {"page": str(page.relative_to(scratch)) if page.is_relative_to(scratch) else page.name,
                         "document_width": width, "scrolls_sideways": width > WIDTH}
        print(f"{name:14s} -> {out.relative_to(common.ROOT)}; document {width} px wide at {WIDTH} px"
              f"{' (scrolls sideways)' if width > WIDTH else ''}")
    driver.quit()
    print(f"-> {common.write_result('screens', {'window': [WIDTH, HEIGHT], 'pages': results})}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

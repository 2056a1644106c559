"""The HTML report: self-contained, escaped, every image present; and in a real headless Chromium."""

import math
import re
import shutil

import pytest

from diagnose import runrecord, studydir
from reports.html import build_report

EVIL = "<script>alert(1)</script>"


def _study(tmp_path):
    """A hand-built ablation: two bases and a variant whose name is a script tag."""
    runs = []
    for variant, slope in (("as-posted", 0.0), ("paper", 0.004), (f"paper | {EVIL}", 0.002)):
        for seed in range(2):
            rid = f"{abs(hash((variant, seed))) % 10**10:010d}"
            rows = []
            for step in (0, 50, 100):
                rows.append({"step": step, "epoch": step / 100, "loss": 3.5 - slope * step + 0.01 * seed,
                             "valid_loss": 3.5 - slope * step, "grad_norm/global": 1.0 + step / 100,
                             "grad_norm/W": 0.5, "update_ratio/W": 1e-3, "attn_entropy/hop1": 0.9,
                             "rms/A_word": 0.05, "rms/A_temporal": 0.05, "out_zero_frac": 0.0,
                             "target_at_floor": 0.0, "max_prob": 0.2})
            run = tmp_path / "runs" / rid
            runrecord.write_metrics(run, rows)
            runrecord.write_config(run, model={"output": "softmax"}, data={}, train={})
            runrecord.write_summary(run, {"status": "completed", "final": {"valid_loss": 3.5 - slope * 100},
                                          "baselines": {"ln_vocab": math.log(35), "unigram_entropy": 3.2,
                                                        "bayes_floor": 1.3}})
            runrecord.write_attention(run, [{"step": s, "hop": 1, "pos0": 3, "pos1": 5} for s in (50, 100)])
            runs.append({"id": rid, "variant": variant, "base": variant.split(" | ")[0], "seed": seed,
                         "status": "completed"})
    studydir.write_manifest(tmp_path, {"study": "hand-built", "runs": runs,
                                                     "corpus": {"name": "synthetic:tiny"}, "totals": {}})
    studydir.write_verdict(tmp_path, {
        "faulty": "as-posted", "reference": "paper", "outcome": "final validation loss", "test": "paired t",
        "gap": {"effect": 0.4, "ci": [0.1, 0.7]},
        "root_causes": [{"factor": EVIL, "share_closed": 0.9, "share_opened": None, "runs": ["a", "b"]}],
        "smallest_fix": {"switches": [f"{EVIL}=1"], "share_closed": 0.9}})
    return tmp_path


def test_report_is_self_contained_and_escaped(tmp_path):
    index = build_report([_study(tmp_path / "study")], tmp_path / "report")
    html = index.read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 6
    for src in images:
        assert (index.parent / src).is_file() and "/" not in src
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    for anchor in re.findall(r'href="#([^"]+)"', html):
        assert f'id="{anchor}"' in html


def test_chromium_loads_every_image_without_console_errors(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    if not chromium or not driver_bin:
        pytest.skip("chromium and chromedriver are not installed")
    index = build_report([_study(tmp_path / "study")], tmp_path / "report")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    browser = webdriver.Chrome(options=options, service=Service(driver_bin))
    try:
        browser.get(index.as_uri())
        widths = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);")
        assert widths and all(w > 0 for w in widths)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        assert browser.execute_script("return window.__pwned === undefined;")
        browser.set_window_size(1200, 2000)
        browser.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        browser.quit()


def test_verdict_shows_when_a_fix_diverged(tmp_path):
    from reports.html import _verdict_view

    verdict = {
        "faulty": "as-posted", "reference": "paper", "outcome": "final validation loss", "test": "paired t",
        "gap": {"effect": 2.7, "ci": [0.2, 5.2]},
        "factors": [{"factor": "loss_reduction", "best_fix": "as-posted | loss_reduction=sum", "share_closed": 0.83,
                     "fix": [{"variant": "as-posted | loss_reduction=sum", "diverged": 2, "runs": ["a", "b", "c"]}]}],
        "root_causes": [{"factor": "loss_reduction", "share_closed": 0.83, "share_opened": None, "runs": ["a"]}],
        "smallest_fix": {"switches": ["loss_reduction=sum", "output=softmax"], "share_closed": 0.9, "diverged": 0,
                         "runs": ["d", "e", "f"], "unstable_alone": ["loss_reduction=sum"]}}
    view = _verdict_view(verdict)
    assert "2 of 3 seeds diverged later" in view["causes"][0]["text"]
    assert view["fix"].endswith("No single one of them does without diverging on some seed")
    verdict["smallest_fix"] = {"switches": ["loss_reduction=sum"], "share_closed": 0.83, "diverged": 2,
                               "runs": ["a", "b", "c"], "unstable_alone": []}
    assert "diverged later on 2 of 3 seeds" in _verdict_view(verdict)["fix"]
    assert "not yet a stable fix" in _verdict_view(verdict)["fix"]


def test_a_one_base_study_shows_each_switchs_effect(tmp_path):
    from diagnose.findings.verdict import compute_verdict

    study = _study(tmp_path / "study")
    # Only the paper base and its switch: no as-posted/paper gap; the page says so and lists effects.
    manifest = studydir.read_manifest(study)
    manifest["runs"] = [r for r in manifest["runs"] if r["base"] == "paper"]
    for r in manifest["runs"]:
        r.update(factor=None if r["variant"] == "paper" else "mine", level=None, level_of=None, switches=[])
    studydir.write_manifest(study, manifest)
    studydir.write_verdict(study, compute_verdict(study))
    html = build_report([study], tmp_path / "report").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "no faulty/reference pair" in text and "Best switch:" in text
    # The switch ends 0.2 nats above the paper base on both seeds (slopes 0.002 vs 0.004 over 100 steps).
    assert "+0.200 nats against paper (95% CI +0.200 to +0.200, 2 seeds): raises the loss" in text  # both seeds

"""The HTML report: its first screen, run pages, escaping and self-containment; and in a real headless Chromium."""

import html as html_lib
import os
import re
import shutil

import pytest
from report_fakes import DEFAULT_LIKE, default_like_study, noise, write_run

from diagnose import studydir
from diagnose.reports import figures_run
from diagnose.reports.html import build_report

EVIL = "<script>alert(1)</script>"
TINY = {"as-posted": 4.5, "paper": 1.8, "as-posted | output=softmax": 2.0}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a study of the default study's shape (2 seeds), with a variant named like a script.

    Built once for the module: a report draws a figure per run.
    """
    root = tmp_path_factory.mktemp("default-like")
    study = default_like_study(root / "study", variants={**DEFAULT_LIKE, f"paper | {EVIL}=x": 2.5})
    return study, build_report([study], root / "report")


def _text(page: str) -> str:
    """What a reader sees: tags dropped, entities decoded, white space collapsed."""
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _self_contained(page, html: str) -> None:
    images = re.findall(r"<img [^>]*>", html)
    assert images
    for tag in images:
        src = re.search(r'src="([^"]+)"', tag).group(1)
        alt = re.search(r'alt="([^"]*)"', tag)
        assert (page.parent / src).is_file() and "/" not in src, src
        assert alt and len(alt.group(1)) > 10, tag  # every image says what it shows
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "<script" not in html
    for anchor in re.findall(r'href="#([^"]+)"', html):
        assert f'id="{anchor}"' in html, anchor
    for target in re.findall(r'href="([^"#][^"]*)"', html):
        assert (page.parent / target).is_file(), target


def test_every_page_is_self_contained_and_escaped(report):
    study, index = report
    pages = sorted(index.parent.glob("*.html"))
    assert len(pages) == 1 + len(studydir.read_manifest(study)["runs"])  # the index and one page per run
    for page in pages:
        html = page.read_text()
        _self_contained(page, html)
        assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index.read_text()
    assert sorted(p.name for p in index.parent.parent.iterdir()) == ["report", "study"]  # no working copy left


def test_the_first_screen_answers_before_anything_else(report):
    study, index = report
    html = index.read_text()
    verdict, curves, findings = (html.index(s) for s in ('id="fig-verdict"', 'id="fig-loss"', 'id="findings"'))
    assert html.index('id="verdict"') < verdict < curves < findings
    answer = _text(html[html.index('id="verdict"'):verdict])
    assert "What to change" in answer and "loss_reduction=sum and output=softmax together" in answer
    assert "How sure" in answer and "as-posted ends" in answer and "What causes it" in answer
    # Findings follow, one line each until opened (no script: <details>).
    details = re.findall(r"<details class=\"finding[^\"]*\"( open)?>", html[findings:])
    assert details and not any(details)
    first = _text(html[findings:html.index("</summary>", findings)])
    assert "(2 of 2 seeds)" in first


def test_each_suspect_has_a_section_and_the_temporal_one_shows_its_contrast(report):
    _, index = report
    text = _text(index.read_text())
    for factor in ("output", "loss_reduction", "temporal"):
        assert re.search(rf'<h3 id="suspect-\d+">{factor}</h3>', index.read_text())
    assert ("The strongest contrast is on as-posted + loss_reduction=sum: temporal=none ends at" in text
            and "temporal=ones at" in text)
    assert "Found with temporal=ones and not with none:" in text and "temporal-encoding-dominates" in text
    assert "Root cause 1: switching it alone" in text  # the verdict's own sentence for its first cause
    assert "Interactions: why no single switch works" in text


def test_every_run_has_its_page_linked_from_the_table(report):
    study, index = report
    html = index.read_text()
    runs = studydir.read_manifest(study)["runs"]
    assert len(runs) == 2 * (len(DEFAULT_LIKE) + 1)
    for e in runs:
        page = index.parent / f"run-{e['id']}.html"
        assert f'href="run-{e["id"]}.html"' in html
        run_html = page.read_text()
        assert f"{e['variant']}, seed {e['seed']}" in _text(run_html)
        _self_contained(page, run_html)
    ones = next(e for e in runs if e["variant"] == "paper | temporal=ones")
    assert "temporal-encoding-dominates" in (index.parent / f"run-{ones['id']}.html").read_text()


def test_a_failed_build_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    study = default_like_study(tmp_path / "study", variants=TINY, seeds=1)
    index = build_report([study], tmp_path / "report")
    before = {p.name: p.read_bytes() for p in index.parent.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("diagnose.reports.figures_study.interactions_figure", broken)
    monkeypatch.setattr("diagnose.reports.figures_headline.headline_curves", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        build_report([study], tmp_path / "report")
    assert {p.name: p.read_bytes() for p in index.parent.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "study"]


def test_a_second_build_redraws_only_the_runs_that_changed(tmp_path, monkeypatch):
    for name in ("_study_figures", "_diagnostics"):  # run figures only: the study's own are drawn every time
        monkeypatch.setattr(f"diagnose.reports.html.{name}", lambda *a: [])
    study = default_like_study(tmp_path / "study", variants=TINY, seeds=1)
    build_report([study], tmp_path / "report")
    drawn = []
    real = figures_run.run_figure
    monkeypatch.setattr(figures_run, "run_figure", lambda run, *a, **k: drawn.append(run.id) or real(run, *a, **k))
    build_report([study], tmp_path / "report")
    assert drawn == []
    first = studydir.read_manifest(study)["runs"][0]["id"]
    write_run(study / "runs" / first, 3.0, steps=100)  # a rerun: another record
    index = build_report([study], tmp_path / "report")
    assert drawn == [first]
    assert len(list(index.parent.glob("run-*.svg"))) == len(TINY)  # the old figure went with the old report


def test_the_verdict_reads_as_the_cli_prints_it(report):
    from diagnose.findings.verdict import format_verdict
    from diagnose.findings.verdict_text import verdict_parts
    from diagnose.findings.verdict_types import read_verdict

    study, index = report
    verdict = read_verdict(study)
    text = _text(index.read_text())
    cli = format_verdict(verdict)
    headline = cli.splitlines()[0].split(": ", 1)[1]
    assert headline in text
    fix = next(line for line in cli.splitlines() if "smallest fix:" in line).split("smallest fix: ", 1)[1]
    assert fix in text  # the whole sentence, one click away
    parts = verdict_parts(verdict)
    assert f"Smallest fix: {parts['fix_short']}" in text  # its short form first
    for cause in parts["causes"]:
        assert f"{cause['factor']} : {cause['short']}" in text and cause["text"] in text


def test_a_one_base_study_shows_each_switchs_effect(tmp_path):
    from diagnose.findings.verdict import compute_verdict
    from diagnose.findings.verdict_types import write_verdict

    study = default_like_study(tmp_path / "study", variants={"paper": 1.8, "paper | output=relu": 2.0},
                               verdict=False)
    manifest = studydir.read_manifest(study)
    for r in manifest["runs"]:
        r["level_of"] = []
    studydir.write_manifest(study, manifest)
    write_verdict(study, compute_verdict(study))
    html = build_report([study], tmp_path / "report").read_text()
    text = _text(html)
    assert "no faulty/reference pair here" in text and "Best switch:" in text
    effect = sum(0.2 + noise("paper | output=relu", s) - noise("paper", s) for s in range(2)) / 2
    assert f"paper | output=relu : {effect:+.3f} nats: raises the loss" in text  # the short form first
    assert f"{effect:+.3f} nats against paper (95% CI " in text  # then the CLI's sentence
    assert 'id="fig-verdict"' in html


def test_runs_outside_a_study_are_named_by_their_directory_and_keep_their_findings(tmp_path):
    for name, final in (("a", 2.0), ("b", 3.0)):
        write_run(tmp_path / name, final, position=1.0)
    index = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "report")
    html = index.read_text()
    assert "runs: a, b" in _text(html) and "temporal-encoding-dominates" in html
    _self_contained(index, html)


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium sends no usage statistics anywhere
    webdriver = pytest.importorskip("selenium.webdriver")
    if not chromium or not driver_bin:
        pytest.skip("chromium and chromedriver are not installed")
    return webdriver, chromium, driver_bin


def test_in_chromium_the_headline_fits_the_first_screen(report, tmp_path):
    webdriver, chromium, driver_bin = _chromium()
    _, index = report
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # A closed network: Chromium's background connections would be refused and logged.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    browser = webdriver.Chrome(options=options, service=Service(driver_bin))
    try:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        browser.get(index.as_uri())
        assert browser.execute_script("return [window.innerWidth, window.innerHeight];") == [1400, 900]
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete ? i.naturalWidth : 0, i.alt]);")
        assert images and all(w > 0 and len(alt) > 10 for w, alt in images)
        for fig in ("fig-verdict", "fig-loss"):  # the verdict and the curves, whole, without scrolling
            box = browser.execute_script(
                f"const r = document.querySelector('#{fig} img').getBoundingClientRect();"
                "return [r.left, r.top, r.right, r.bottom];")
            assert box[0] >= 0 and box[1] >= 0 and box[2] <= 1400 and box[3] <= 900, (fig, box)
        answer = browser.execute_script("return document.getElementById('verdict').getBoundingClientRect().top;")
        assert 0 <= answer < 200
        assert browser.execute_script("return document.documentElement.scrollWidth;") <= 1400  # no sideways scroll
        # Self-contained: no script, styles inline, every address a file of the report directory.
        assert browser.execute_script("return document.scripts.length;") == 0
        assert browser.execute_script(
            "return Array.from(document.styleSheets).every(s => s.ownerNode.tagName === 'STYLE');")
        urls = browser.execute_script(
            "return Array.from(document.querySelectorAll('[src], [href]')).map(e => e.src || e.href);")
        assert urls and all(u.startswith(index.parent.as_uri() + "/") for u in urls), urls
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        browser.save_screenshot(str(tmp_path / "first_screen.png"))
        assert (tmp_path / "first_screen.png").stat().st_size > 10_000
    finally:
        browser.quit()

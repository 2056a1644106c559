"""The report's figures drawn from hand-written run records: shapes, the seed band, labels people read."""

import math
from xml.etree import ElementTree

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from diagnose import runrecord, studydir
from diagnose.reports import figures_run, figures_study, plots

SVG = "{http://www.w3.org/2000/svg}"


def _runs(tmp_path, variants: int, seeds: int = 2) -> dict:
    out = {}
    for v in range(variants):
        for s in range(seeds):
            run = tmp_path / "runs" / f"v{v}s{s}"
            rows = [{"step": step, "epoch": step / 100, "loss": 3.0 - 0.001 * step * (v + 1) + 0.01 * s,
                     "val_loss": 3.0 - 0.001 * step * (v + 1) if step % 50 == 0 else None}
                    for step in range(0, 101, 10)]
            runrecord.write_metrics(run, rows)
            out.setdefault(f"variant {v}", []).append(run)
    return out


@pytest.mark.parametrize("variants, rows", [(3, 1), (5, 1), (9, 2)])
def test_every_variant_is_a_panel_on_a_grid_of_five_columns(tmp_path, variants, rows):
    out = figures_study.every_variant(_runs(tmp_path, variants), tmp_path / "out" / "loss.svg",
                                      {"ln_vocab": math.log(35), "bayes_floor": 1.3})
    root = ElementTree.parse(out).getroot()  # well-formed SVG
    assert float(root.get("height")) == 18 + 210 * rows  # a legend line, then 210 px a row
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert all(f"variant {v}" in texts for v in range(variants))
    assert len(list(root.iter(f"{SVG}polygon"))) == variants  # each variant's two seeds: one shaded range
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["loss.svg"]  # no temporary file left


def test_nothing_to_plot_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no run"):
        figures_study.every_variant({"a": []}, tmp_path / "x.svg", {})
    assert not list(tmp_path.iterdir())


def test_a_run_figure_has_the_panels_its_run_recorded_and_escapes_what_it_reads(tmp_path):
    from diagnose.report_data import RunInfo

    run = tmp_path / "run"
    runrecord.write_metrics(run, [{"step": s, "loss": 3.0 - 0.01 * s, "val_loss": 3.0 - 0.01 * s if s % 50 == 0
                                   else None, "grad_norm/<b>&x": 0.1 * (s + 1)} for s in range(0, 101, 10)])
    out = figures_run.run_figure(RunInfo("r", run, "paper", 0, "completed", 2.0), {"ln_vocab": 3.5},
                                 tmp_path / "r.svg")
    text = out.read_text()
    root = ElementTree.fromstring(text)
    titles = [t.text for t in root.iter(f"{SVG}text")]
    for title in ("Loss", "Gradient norms"):
        assert title in titles
    for title in ("Update-to-weight ratios", "Output health", "Attention entropy", "Branch balance"):
        assert title not in titles  # not recorded in this run: no empty panel for it
    assert not [t for t in titles if t and "attention" in t] and "not recorded in this run" not in titles
    assert "<b>&x" in titles and "<b>" not in text  # the column's name, escaped
    assert len(list(root.iter(f"{SVG}polyline"))) >= 3  # training, validation, the gradient column


def test_the_seed_band_spans_the_seeds_around_their_mean(tmp_path):
    runs = _runs(tmp_path, 1, seeds=3)["variant 0"]
    fig, ax = plt.subplots()
    line = plots.seed_band(ax, runs, "loss", color="tab:blue")
    steps, mean = line.get_data()
    assert list(steps) == list(range(0, 101, 10))
    np.testing.assert_allclose(mean, [3.0 - 0.001 * s + 0.01 for s in steps])  # seeds 0, 1, 2: mean offset 0.01
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(3.0 - 0.1) and band[:, 1].max() == pytest.approx(3.0 + 0.02)
    # Validation rows are sparse: only the passes are drawn, as points.
    valid = plots.seed_band(ax, runs, "val_loss", color="k", band=False)
    assert list(valid.get_xdata()) == [0, 50, 100] and valid.get_marker() == "o"
    plt.close(fig)


def test_compare_labels_runs_of_a_study_by_variant_and_seed(tmp_path, monkeypatch):
    runs = []
    for name, seed, slope, lr in (("as-posted", 0, 0.01, 0.1), ("as-posted", 1, 0.012, 0.1), ("paper", 0, 0.001, 0.5)):
        rid = f"{name}-{seed}-0123456789"
        run = tmp_path / "runs" / rid
        runrecord.write_config(run, model={"learning_rate": lr}, data={}, train={"seed": seed})
        runrecord.write_metrics(run, [{"step": s, "epoch": 0, "loss": 3 - slope * s} for s in (0, 10, 20)])
        runs.append({"id": rid, "variant": name, "base": name, "seed": seed, "status": "completed"})
    studydir.write_manifest(tmp_path, {"study": "s", "runs": runs})
    legends = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, *a, **k: legends.append(
        [t.get_text() for t in fig.legends[0].get_texts()]) or real(fig, *a, **k))  # the figure's: under the axes
    png = plots.compare([tmp_path / "runs" / r["id"] for r in runs], tmp_path / "cmp.png")
    assert mpimg.imread(png).shape[0] > 100
    assert legends == [["as-posted (2 seeds)", "paper, seed 0"]]
    plots.compare([tmp_path / "runs" / runs[1]["id"]], tmp_path / "one.png")
    assert legends[-1] == ["as-posted, seed 1"]
    with pytest.raises(ValueError, match="try one of: .*loss"):
        plots.compare([tmp_path / "runs" / runs[0]["id"]], tmp_path / "x.png", metric="nope")
    assert plt.get_fignums() == []  # no figure leaked


def test_compare_names_runs_outside_a_study_by_their_directory(tmp_path, monkeypatch):
    for name in ("a", "b"):
        runrecord.write_config(tmp_path / name, model={"x": name}, data={}, train={"seed": 0})
        runrecord.write_metrics(tmp_path / name, [{"step": s, "loss": 3 - 0.01 * s} for s in (0, 10)])
    legends = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, *a, **k: legends.append(
        [t.get_text() for t in fig.legends[0].get_texts()]) or real(fig, *a, **k))
    plots.compare([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp.png")
    assert legends == [["a", "b"]]


def test_a_verdict_of_the_default_studys_size_fits_under_the_first_screens_answer():
    from types import SimpleNamespace

    from diagnose.report_data import Headline
    from diagnose.reports.figures_headline import verdict_height

    def row(base: str, k: int):
        return SimpleNamespace(base=SimpleNamespace(name=base), effect=SimpleNamespace(effect=SimpleNamespace(mean=k)))

    # The default study: 15 switches and combinations on as-posted, 10 on paper, two group titles.
    head = Headline("gap", [row("as-posted", k) for k in range(15)] + [row("paper", k) for k in range(10)],
                    faulty=SimpleNamespace(name="as-posted"), reference=SimpleNamespace(name="paper"))
    # 100 dpi: under 900 px less the title and the three-line answer above it (~200 px).
    assert 100 * verdict_height(head) <= 690
    assert 100 * verdict_height(Headline("gap", head.rows[:3], faulty=head.faulty, reference=head.reference)) >= 200


@pytest.mark.parametrize("apart", [0.0, 0.05, 3.0])
def test_the_two_bases_labels_never_overlap_however_close_the_bases_end(tmp_path, monkeypatch, apart):
    import dataclasses
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    from report_fakes import default_like_study

    from diagnose.report_data import load
    from diagnose.reports import figures_headline

    head = load([default_like_study(tmp_path / "study")]).headline
    # The faulty base ending `apart` above the reference (a stand-in with the base's name and loss).
    loss = dataclasses.replace(head.reference.loss, mean=head.reference.loss.mean + apart)
    head = dataclasses.replace(head, faulty=SimpleNamespace(name=head.faulty.name, loss=loss))
    shown = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, *a, **k: shown.setdefault("fig", fig))
    figures_headline.verdict_figure(head, {}, tmp_path / "v.png")
    fig = shown["fig"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_text().strip().startswith((head.faulty.name, head.reference.name))]
    assert len(labels) == 2
    a, b = sorted((t.get_window_extent(renderer) for t in labels), key=lambda box: box.x0)
    assert a.x1 <= b.x0 + 1e-6  # side by side (each label padded by a space), or apart

"""The report's figures drawn from hand-written run records: shapes, the seed band, labels people read."""

import math

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from diagnose import runrecord, studydir
from reports import plots


def _runs(tmp_path, variants: int, seeds: int = 2) -> dict:
    out = {}
    for v in range(variants):
        for s in range(seeds):
            run = tmp_path / "runs" / f"v{v}s{s}"
            rows = [{"step": step, "epoch": step / 100, "loss": 3.0 - 0.001 * step * (v + 1) + 0.01 * s,
                     "valid_loss": 3.0 - 0.001 * step * (v + 1) if step % 50 == 0 else None}
                    for step in range(0, 101, 10)]
            runrecord.write_metrics(run, rows)
            out.setdefault(f"variant {v}", []).append(run)
    return out


@pytest.mark.parametrize("variants, rows", [(3, 1), (5, 2), (9, 3)])
def test_one_panel_per_variant_on_a_grid_of_four_columns(tmp_path, variants, rows):
    png = plots.small_multiples(_runs(tmp_path, variants), tmp_path / "out" / "loss.png",
                                {"ln_vocab": math.log(35), "bayes_floor": 1.3})
    image = mpimg.imread(png)
    # 3.2 x 2.4 inches per panel at 90 dpi: the grid's shape shows in the image's.
    assert image.shape[1] == round(4 * 3.2 * 90)
    assert image.shape[0] == round(rows * 2.4 * 90)
    assert not (tmp_path / "out" / ".loss.png.tmp.png").exists()
    # Something was drawn in the top-left panel (not a blank page).
    panel = image[: image.shape[0] // rows, : image.shape[1] // 4, :3]
    assert (panel < 0.5).mean() > 0.01


def test_nothing_to_plot_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no run"):
        plots.small_multiples({"a": []}, tmp_path / "x.png", {})
    assert not list(tmp_path.iterdir())


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
    valid = plots.seed_band(ax, runs, "valid_loss", color="k", band=False)
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
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or real(fig, *a, **k))
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
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or real(fig, *a, **k))
    plots.compare([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp.png")
    assert legends == [["a", "b"]]

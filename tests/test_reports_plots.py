"""Loss-curve small multiples drawn from a hand-built ablation directory."""

import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from diagnose import runrecord, studydir
from reports.plots import loss_curves


def _ablation(tmp_path, variants: int, seeds: int = 2):
    runs = []
    for v in range(variants):
        for s in range(seeds):
            rid = f"v{v}s{s}"
            rows = [{"step": step, "epoch": step / 100, "loss": 3.0 - 0.001 * step * (v + 1) + 0.01 * s,
                     "valid_loss": 3.0 - 0.001 * step * (v + 1)} for step in (0, 50, 100)]
            runrecord.write_metrics(tmp_path / "runs" / rid, rows)
            runrecord.write_config(tmp_path / "runs" / rid, model={}, data={}, train={})  # a whole record
            runrecord.write_summary(tmp_path / "runs" / rid, {
                "status": "completed", "baselines": {"ln_vocab": math.log(35), "bayes_floor": 1.3}})
            runs.append({"id": rid, "variant": f"variant {v}", "seed": s, "status": "completed"})
    studydir.write_manifest(tmp_path, {"runs": runs})
    return tmp_path


@pytest.mark.parametrize("variants, rows", [(3, 1), (5, 2), (9, 3)])
def test_one_panel_per_variant_on_a_grid_of_four_columns(tmp_path, variants, rows):
    png = loss_curves(_ablation(tmp_path, variants), tmp_path / "out" / "loss.png", metric="loss")
    image = mpimg.imread(png)
    # 3.2 x 2.4 inches per panel at 90 dpi: the grid's shape shows in the image's.
    assert image.shape[1] == round(4 * 3.2 * 90)
    assert image.shape[0] == round(rows * 2.4 * 90)
    assert not (tmp_path / "out" / ".loss.png.tmp.png").exists()
    # Something was drawn in the top-left panel (not a blank page).
    panel = image[: image.shape[0] // rows, : image.shape[1] // 4, :3]
    assert (panel < 0.5).mean() > 0.01


def test_nothing_to_plot_is_an_error(tmp_path):
    studydir.write_manifest(tmp_path, {"runs": []})
    with pytest.raises(ValueError, match="no run"):
        loss_curves(tmp_path, tmp_path / "x.png")
    assert not np.any([p.suffix == ".png" for p in tmp_path.iterdir()])


def test_compare_bands_seeds_of_the_same_config(tmp_path):
    from reports.plots import compare

    for name, seed, slope, lr in (("a0", 0, 0.01, 0.1), ("a1", 1, 0.012, 0.1), ("b0", 0, 0.001, 0.5)):
        run = tmp_path / name
        runrecord.write_config(run, model={"learning_rate": lr}, data={}, train={"seed": seed})
        runrecord.write_metrics(run, [{"step": s, "epoch": 0, "loss": 3 - slope * s} for s in (0, 10, 20)])
    png = compare([tmp_path / n for n in ("a0", "a1", "b0")], tmp_path / "cmp.png")
    assert mpimg.imread(png).shape[0] > 100
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError, match="try one of: .*loss"):
        compare([tmp_path / "a0"], tmp_path / "x.png", metric="nope")
    assert plt.get_fignums() == []  # no figure leaked

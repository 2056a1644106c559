"""The figures' layout (issue 30): limits from the data shown, legends off the data, a compare of 33 runs
readable, zeros on log axes shown as such, the fix told from the reference, the proof on a run's first screen."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np

from diagnose import runrecord
from diagnose.reports import panels, plots, svg
from report_fakes import write_run


def _runs(tmp_path, n):
    runs = []
    for i in range(n):
        run = tmp_path / f"run{i:02d}"
        write_run(run, 1.5 + 0.1 * i)
        runrecord.write_config(run, model={"variant": i}, data={}, train={"seed": 0})
        runs.append(run)
    return runs


def test_a_compare_of_33_runs_shows_every_entry_in_a_legend_off_the_axes_and_no_style_twice(tmp_path, monkeypatch):
    seen = {}
    real = plots.save

    def keep(fig, *a, **k):
        fig.canvas.draw()
        ax, legend = fig.axes[0], fig.legends[0]
        seen.update(labels=[t.get_text() for t in legend.get_texts()], axes=ax.get_window_extent(),
                    legend=legend.get_window_extent(),
                    styles=[(line.get_color(), line.get_linestyle()) for line in ax.get_lines()])
        return real(fig, *a, **k)

    monkeypatch.setattr(plots, "save", keep)
    plots.compare(_runs(tmp_path, 33), tmp_path / "cmp.png")
    assert len(seen["labels"]) == 33
    assert seen["legend"].y1 < seen["axes"].y0  # under the axes, not on them
    assert len(set(seen["styles"])) == 33


def test_distinct_styles_never_repeat_up_to_60():
    assert len(set(plots.distinct_styles(60))) == 60 and len(set(plots.distinct_styles(7))) == 7


def test_zeros_on_a_log_panel_are_marked_at_the_bottom_and_said_in_the_legend(tmp_path):
    run = tmp_path / "run"
    write_run(run, 2.0, extra={"grad_norm/A/embedding": 0.01})
    frame = runrecord.read_metrics(run)
    frame.loc[3:5, "grad_norm/W"] = 0.0
    frame.to_csv(run / runrecord.METRICS, index=False)
    fig, ax = plt.subplots()
    panels.draw(ax, "gradients", [("r", None, [run])])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    marks = [line for line in ax.get_lines() if line.get_marker() == "v" and len(line.get_xdata())]
    plt.close(fig)
    assert ax.get_yscale() == "log" and any("0 (no place on a log axis)" in t for t in labels)
    assert [list(m.get_xdata()) for m in marks] == [list(frame["step"][3:6].astype(float))]


def test_a_run_page_chart_marks_zeros_on_a_log_axis_and_keeps_its_legend_under_the_axes():
    chart = svg.Chart("g", lines=[svg.Line("a", np.arange(4.0), np.array([1.0, 0.0, 0.1, 0.01]), "#000"),
                                  svg.Line("b", np.arange(4.0), np.array([0.5, 0.5, 0.5, 0.5]), "#f00")], log=True)
    text = svg.document([(chart, 1)], columns=1, width=300, row_height=200, title="t")
    frame = re.search(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none" '
                      r'stroke="#444"', text)
    bottom = float(frame.group(2)) + float(frame.group(4))
    legend_y = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" font-size="8"', text)]
    assert svg.ZERO_NOTE in text and len(legend_y) == 3 and min(legend_y) > bottom  # a, b and the zeros' note
    assert text.count("h6 l-3,5 z") == 2  # the zero's triangle on the axes and in the legend


def test_the_headline_limits_come_from_each_curve_s_lowest_point_and_the_fix_is_told_from_the_reference(
        tmp_path, monkeypatch):
    from diagnose.report_data import Headline
    from diagnose.reports import figures_headline

    class V:  # a variant as the headline reads it
        def __init__(self, name, runs, switches=()):
            self.name, self.runs, self.switches = name, [type("R", (), {"path": r}) for r in runs], switches

    low, high = tmp_path / "low", tmp_path / "high"
    write_run(low, 0.4)  # ends far below where the others peak
    write_run(high, 3.0)
    head = Headline.__new__(Headline)
    for key, value in {"faulty": V("posted", [high]), "fix": V("paper", [low], (("lr", "1"),)),
                       "reference": V("paper", [low]), "unit": "nats"}.items():
        object.__setattr__(head, key, value)
    seen = {}
    monkeypatch.setattr(figures_headline, "save", lambda fig, out: seen.update(
        ylim=fig.axes[0].get_ylim(), lines=list(fig.axes[0].get_lines()),
        labels=[t.get_text() for t in fig.legends[0].get_texts()]) or plt.close(fig))
    figures_headline.headline_curves(head, {}, tmp_path / "h.png")
    lowest = min(np.nanmin(runrecord.read_metrics(low)[c]) for c in ("loss", "val_loss"))
    assert seen["ylim"][0] < lowest  # nothing of the lowest curve cut
    assert any("the same runs as paper" in t for t in seen["labels"])
    fix = [ln for ln in seen["lines"] if ln.get_color() == "tab:green" and ln.get_linestyle() == "--"]
    assert fix and fix[0].get_zorder() > 2  # dashed and on top of the reference's line


def test_a_run_page_says_its_proof_among_its_first_facts():
    from diagnose.reports.views import _proof_fact

    def run(*statuses):
        return type("R", (), {"path": "runs/r", "findings": [{"proof": s and {"status": s}} for s in statuses]})

    assert _proof_fact(run()) == "no findings to prove"
    assert _proof_fact(run(None)) == "not proven yet: diagnose check runs/r --prove"
    assert _proof_fact(run("proven", "refuted", None)) == \
        "1 proven, 1 refuted of 3 findings (1 not tested) (each below)"


def test_each_run_s_links_in_the_table_can_wrap_so_the_page_never_scrolls_sideways(tmp_path):
    from diagnose.reports.html import build_report
    from report_fakes import default_like_study

    study = default_like_study(tmp_path / "s", seeds=3, variants={"as-posted": 4.5, "paper": 1.8})
    build_report([study], tmp_path / "r")
    html = (tmp_path / "r" / "index.html").read_text()
    assert re.search(r'</a> <a class="seed', html) and "overflow-wrap: anywhere" in html

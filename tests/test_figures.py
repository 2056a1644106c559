"""A figure is declared once (diagnose/findings/figures.py): every place that names figures derives from it."""

import json
import subprocess
import sys
from pathlib import Path

from diagnose.findings import figures, registry
from diagnose.report_data import contrasts
from diagnose.reports import figures_run, panels, views

TESTS = Path(__file__).resolve().parent
# The figures the report draws with a chart of its own, keyed by id (figures_run.run_figure, html._diagnostics).
OWN_CHARTS = {"loss", "attention-map"}


def test_every_declared_figure_is_in_each_place_that_lists_figures():
    ids = [f.id for f in figures.TABLE]
    assert len(set(ids)) == len(ids)
    assert registry.FIGURES == tuple(ids)
    assert sorted(figures_run.RUN_PANELS) == sorted(ids)
    assert [fid for fid, _, _ in views._DIAGNOSTICS] == ids
    assert set(panels.PANELS) == {f.id for f in figures.TABLE if f.columns}
    assert set(views.PANEL_CAPTIONS) == {f.id for f in figures.TABLE if f.evidence}
    assert set(contrasts.EVIDENCE_PANELS) == {f.id for f in figures.TABLE if f.contrast}
    # A figure with no columns has nothing a family panel could draw: the report must have a chart of its own.
    assert {f.id for f in figures.TABLE if not f.columns} == OWN_CHARTS


def test_a_run_page_shows_single_panels_first_then_the_pairs():
    pairs = [fid for fid in figures_run.RUN_PANELS if figures.BY_ID[fid].pair]
    assert pairs and list(figures_run.RUN_PANELS[-len(pairs):]) == pairs


# A new figure: one more entry in the table, nothing else.
NEW = ('    Figure("weights", "Weight norms", "Weight norms per variable", "The L2 norm of each variable.",\n'
       '           evidence="weight norms per variable", columns=("weight_norm/",), ylabel="L2 norm", log=True,\n'
       '           contrast=True),\n')
SCRIPT = f"""
import json, sys, types
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
import diagnose
path = Path(diagnose.__file__).parent / "findings" / "figures.py"
source = path.read_text(encoding="utf-8")
end = "\\n)\\n\\nFIGURES = "
assert source.count(end) == 1, "the table's end moved: update this test"
module = types.ModuleType("diagnose.findings.figures")
module.__file__ = str(path)
sys.modules[module.__name__] = module
exec(compile(source.replace(end, "\\n" + {NEW!r} + end[1:]), str(path), "exec"), module.__dict__)

from report_fakes import write_run
from diagnose.findings import registry
from diagnose.report_data import contrasts
from diagnose.reports import figures_run, panels, views
from diagnose.reports.html import build_report

registry.rule("weights-test", kind="symptom", severity="low", figure="weights", what="a test")  # accepted
root = Path(sys.argv[1])
write_run(root / "run", 2.0, extra={{"weight_norm/W": 0.5, "weight_norm/A/embedding": 2.0}})
index = build_report([root / "run"], root / "report")
page = (index.parent / "run-run.html").read_text(encoding="utf-8")
svg = [p.read_text(encoding="utf-8") for p in index.parent.glob("run-run-*.svg")]
print(json.dumps({{"figures": registry.FIGURES, "run_panels": figures_run.RUN_PANELS, "panels": list(panels.PANELS),
                  "captions": views.PANEL_CAPTIONS, "evidence": contrasts.EVIDENCE_PANELS,
                  "index": index.read_text(encoding="utf-8"), "drawn": (index.parent / "weights.png").is_file(),
                  "run_figure": svg[0] if len(svg) == 1 else None, "run_page": page}}))
"""


def test_a_figure_added_to_the_table_reaches_every_place(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "weights" in seen["figures"] and "weights" in seen["panels"] and "weights" in seen["evidence"]
    assert seen["run_panels"].index("weights") < seen["run_panels"].index("attention-map")  # a single panel
    assert seen["captions"]["weights"] == "weight norms per variable"
    assert seen["drawn"]  # the index's side-by-side figure
    assert '<figure id="fig-weights">' in seen["index"] and "Weight norms per variable." in seen["index"]
    assert "The L2 norm of each variable." in seen["index"]
    assert seen["run_figure"] is not None and "Weight norms" in seen["run_figure"]  # a panel on the run's page

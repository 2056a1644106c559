"""Nothing installed shadows a user's own package: the only top-level import name is ``diagnose``.

models/ and reports/ stay at the repository's root and are imported as ``diagnose.models``
and ``diagnose.reports`` through the symlinks diagnose/models and diagnose/reports (setup.cfg
says why). A user project with its own ``models`` or ``reports`` package runs a study of it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHADOWING = ("models", "reports")  # the repository's folders that must never be installed as top-level names


def test_the_installed_top_level_names_are_only_diagnose():
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")
    options = setupcfg.read_configuration(str(ROOT / "setup.cfg"))["options"]
    packages = set(options["packages"])  # what setuptools installs, its `find:` run on this checkout
    assert {p.split(".")[0] for p in packages} == {"diagnose"}, sorted(packages)
    assert {"diagnose.models", "diagnose.reports"} <= packages  # found through the symlinks
    assert options["package_data"].get("diagnose.reports") == ["templates/*.j2"]  # the report's templates
    assert not set(options.get("py_modules") or ()) - {"diagnose"}


def test_diagnose_models_and_reports_are_the_root_folders():
    for name in SHADOWING:
        link = ROOT / "diagnose" / name
        assert link.is_symlink(), f"diagnose/{name} should be a symlink to ../{name} (git core.symlinks off?)"
        assert link.resolve() == (ROOT / name).resolve()
    assert (ROOT / "diagnose" / "reports" / "templates" / "report.html.j2").is_file()


def test_no_module_imports_models_or_reports_as_top_level_names():
    offenders = []
    for folder in ("diagnose", "models", "reports", "tests", "bench", "examples"):
        for path in (ROOT / folder).rglob("*.py"):  # rglob does not enter the symlinks: each file once
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                if any(n.split(".")[0] in SHADOWING for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "import diagnose.models / diagnose.reports instead: " + ", ".join(offenders)


# A user's package: a builder that leaves a mark when it builds, and its data.
_USER_MODULE = '''
import numpy as np
from pathlib import Path

import keras


def data(settings):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:64], y[:64]), (x[64:], y[64:])


def build(settings):
    Path("built-by-" + __name__).touch()  # the user's builder was the one used
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model
'''

# Run from the user's project directory, as a user runs `diagnose run-ablation SPEC` there.
_DRIVER = '''
import sys
from diagnose.cli import main

for package in sys.argv[1:]:
    try:
        main(["run-ablation", package + ".toml", "--out", "study-" + package, "--executor", "inline",
              "--no-report", "--no-follow-up", "--quiet"])
    except SystemExit as done:
        if done.code:
            raise
'''


@pytest.mark.slow  # two studies in a fresh process (TensorFlow imported there), ~15 s under load
def test_a_study_runs_the_builder_of_a_user_package_named_models_or_reports(tmp_path):
    project = tmp_path / "project"
    for package in SHADOWING:
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("", encoding="utf-8")
        (project / package / "mine.py").write_text(_USER_MODULE, encoding="utf-8")
        (project / f"{package}.toml").write_text(textwrap.dedent(f'''
            [study]
            builder = "{package}.mine:build"
            data = "{package}.mine:data"
            seeds = 1
            [fit]
            epochs = 1
            batch_size = 32
            '''), encoding="utf-8")
    (project / "driver.py").write_text(_DRIVER, encoding="utf-8")
    # The project's directory comes first on sys.path (python runs driver.py from there); the
    # checkout after it, so that its diagnose is the one tested, installed or not.
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "driver.py", *SHADOWING], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for package in SHADOWING:
        assert (project / f"built-by-{package}.mine").is_file()
        manifest = json.loads((project / f"study-{package}" / "manifest.json").read_text(encoding="utf-8"))
        assert [e["status"] for e in manifest["runs"]] == ["completed"]
        assert manifest["spec"]["study"]["builder"] == f"{package}.mine:build"

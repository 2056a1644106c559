"""The public API is typed: the package ships py.typed, and every public signature is annotated."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import diagnose

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_ships_py_typed():
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")
    options = setupcfg.read_configuration(str(ROOT / "setup.cfg"))["options"]
    assert "py.typed" in options["package_data"].get("diagnose", [])
    assert (ROOT / "diagnose" / "py.typed").is_file()


@pytest.mark.parametrize("name", [n for n in diagnose.__all__ if n != "__version__"])
def test_every_public_signature_is_annotated(name):
    obj = getattr(diagnose, name)
    function = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(function)
    bare = [p.name for p in signature.parameters.values()
            if p.name != "self" and p.annotation is inspect.Parameter.empty]
    assert not bare, f"diagnose.{name}: parameters without a type: {bare}"
    assert inspect.isclass(obj) or signature.return_annotation is not inspect.Signature.empty

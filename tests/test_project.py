"""The README's promises about the project itself."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands():
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    assert "diagnose " in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    test_command = _quickstart_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert "set -euo pipefail" in ci_lines  # a failing (or empty, exit 5) pytest fails CI
    if '-m "not slow"' in test_command:  # the README's command leaves the slow tests out: CI runs them too
        assert "python -m pytest -q -m slow" in ci_lines


def test_no_machine_paths_in_tracked_sources():
    pattern = re.compile(r"/(work|root|home|tmp)/")
    offenders = []
    for path in list(ROOT.glob("*.md")) + list(ROOT.glob("*.cfg")) + [
            p for d in ("diagnose", "models", "reports", "bench") for p in (ROOT / d).rglob("*.py")]:
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_readme_names_every_instrument_family():
    from diagnose.instruments.registry import FAMILIES

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Instruments", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^- ([a-z ]+):", section, re.M))
    assert named == {f.name for f in FAMILIES}

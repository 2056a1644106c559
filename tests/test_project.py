"""The README's promises about the project itself."""

import re
from pathlib import Path

import pytest

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
    for path in list(ROOT.glob("*.md")) + list(ROOT.glob("*.cfg")) + list(ROOT.glob("docs/*.md")) + [
            ROOT / "bench" / "README.md"] + [
            p for d in ("diagnose", "models", "reports", "bench") for p in (ROOT / d).rglob("*.py")]:
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_the_instruments_reference_names_every_instrument_family():
    from diagnose.instruments.registry import FAMILIES

    section = (ROOT / "docs" / "instruments.md").read_text(encoding="utf-8").split("## Instruments", 1)[1].split(
        "\n## ", 1)[0]
    named = set(re.findall(r"^- ([a-z ]+):", section, re.M))
    assert named == {f.name for f in FAMILIES}


def test_examples_use_the_public_api_only():
    """An example is what a user copies: it imports ``diagnose`` (and documented packages such as the corpora),
    never a private module or name."""
    import ast

    for path in sorted((ROOT / "examples").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diagnose"):
                names = [node.module, *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("diagnose")]
            else:
                continue
            private = [n for n in names if any(part.startswith("_") for part in n.split("."))]
            assert not private, f"{path.relative_to(ROOT)} imports {private}"
            assert not (isinstance(node, ast.ImportFrom) and node.module.startswith("diagnose.findings")), \
                f"{path.relative_to(ROOT)} reads the findings' internals; diagnose.check gives them"


def test_the_readme_is_short_and_leads_with_the_user_s_own_model():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    after_quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[1]
    first_block = re.search(r"```(\w+)\n(.*?)```", after_quickstart, re.S)
    assert first_block.group(1) == "python" and "diagnose.instrument(" in first_block.group(2)


def test_every_relative_link_in_the_readme_and_docs_exists():
    for page in [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"


def test_the_cli_reference_names_every_command_and_option():
    from diagnose.cli import cli

    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        assert f"## diagnose {name}" in reference
        section = reference.split(f"## diagnose {name}", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("-"):
                    assert flag in section, f"docs/cli.md lacks {name} {flag}: python docs/make_cli.py"


@pytest.mark.slow
def test_the_readme_s_python_runs_and_finds_the_cause_it_shows(tmp_path, monkeypatch):
    """The README's snippet, run as a user pastes it (in an empty directory): it trains, checks and proves,
    and what it prints starts with the finding the README shows."""
    import contextlib
    import io

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})
    shown = re.search(r"```\n(\[root-cause/high\] [a-z-]+):", text).group(1)
    assert printed.getvalue().startswith(shown)
    assert "proof: PROVEN" in printed.getvalue().split("\n[", 2)[0]

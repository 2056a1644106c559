"""The findings are declared once: rule modules found by name, every id named anywhere declared, the
the reference's table derived from the declarations, every threshold with its reason."""

import ast
import re
from pathlib import Path

import pytest

from bench.faults import KNOWN_IDS, NEW_IDS, load_cases
from diagnose.findings import RULE_MODULES, RULES, catalog
from diagnose.findings.base import KINDS, SEVERITIES
from diagnose.findings.fixes import FIXES
from diagnose.findings.registry import FIGURES, UNEXPLAINED

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "diagnose" / "findings"
IDS = {r.spec.id for r in RULES} | {UNEXPLAINED}
# Hyphenated words in backquotes that are not finding ids: the target structures summary.json's contract names,
# a command and a corpus.
NOT_IDS = {"class-indices", "one-hot", "multi-hot", "soft-labels", "run-ablation", "topic-copy"}
ID_SHAPE = r"[a-z]+(?:-[a-z0-9]+)+"


def test_every_rules_module_is_registered_without_a_list():
    on_disk = sorted(p.stem for p in FINDINGS.glob("rules_*.py"))
    assert list(RULE_MODULES) == on_disk
    assert {r.__module__.rsplit(".", 1)[1] for r in RULES} == set(on_disk)  # each module declares a rule


@pytest.mark.parametrize("document, with_fix", list(catalog.DOCUMENTS.items()))
def test_the_findings_tables_are_the_declarations(document, with_fix):
    text = (ROOT / document).read_text(encoding="utf-8")
    spans = catalog.tables_in(text)
    assert len(spans) == 1, document
    start, end = spans[0]
    assert text[start:end] == catalog.table(with_fix), f"{document} is stale: python -m diagnose.findings.catalog"


def test_the_tables_list_each_id_once_with_its_fix():
    rows = catalog.table(with_fix=True).splitlines()[2:]
    assert [re.match(r"\| `([a-z-]+)` \|", row).group(1) for row in rows][0] == UNEXPLAINED
    assert sorted(re.match(r"\| `([a-z-]+)` \|", row).group(1) for row in rows) == sorted(IDS)
    for fid, declared in FIXES.items():
        assert sum(f"| `{fid}` |" in row and declared.what in row for row in rows) == 1, fid


def test_every_id_named_anywhere_is_declared():
    named = {i: "explains= of " + r.spec.id for r in RULES for i in r.spec.explains}
    named |= {i: "a fix" for i in FIXES}
    named |= {i: "the fault suite's " + name for name, c in load_cases().items() for i in c.expect}
    named |= {i: "bench/faults' KNOWN_IDS or NEW_IDS" for i in set(NEW_IDS) | set(KNOWN_IDS)}
    for path in [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        document = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        named |= {i: document for i in re.findall(rf"`({ID_SHAPE})`", text) if i not in NOT_IDS}
    # The rules' own code: an id in a string (another finding's cause, a check of another finding) is declared too.
    words = set(FIGURES) | set(KINDS) | set(SEVERITIES) | NOT_IDS
    for path in [FINDINGS / n for n in ("registry.py", "fixes.py", "outcome.py")] + list(FINDINGS.glob("rules_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(ID_SHAPE, node.value) and node.value not in words:
                named.setdefault(node.value, path.name)
    unknown = {i: where for i, where in named.items() if i not in IDS}
    assert not unknown  # a typo would silently drop an ordering, a fix or an expectation


def test_every_threshold_is_declared_with_its_reason():
    for path in [FINDINGS / "thresholds.py"] + sorted(FINDINGS.glob("rules_*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = re.match(r"^([A-Z][A-Z0-9_]*) = (.+)$", line)
            if not match or not re.match(r"^[-\d.(]", match.group(2)):
                continue  # not a number
            above = i - 1
            while above >= 0 and re.match(r"^[A-Z][A-Z0-9_]* = ", lines[above]):
                above -= 1  # thresholds that share one comment
            assert above >= 0 and lines[above].startswith("#"), f"{path.name}: {match.group(1)} has no reason"

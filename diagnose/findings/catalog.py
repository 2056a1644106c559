"""The findings' reference tables, derived from the declarations: one row per id, its kind and what it detects
(and, in docs/findings.md, its mechanical fix).

docs/findings.md shows this table; a test checks that it is what
the declarations say, and ``python -m diagnose.findings.catalog`` (from the
repository's root) writes it again after a rule is added or changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from diagnose.findings import RULES
from diagnose.findings.fixes import FIXES
from diagnose.findings.registry import UNEXPLAINED_SPEC

__all__ = ["table", "tables_in", "refresh", "DOCUMENTS"]

# Where each table is shown, relative to the repository's root, and whether it has the fix column.
DOCUMENTS = {os.path.join("docs", "findings.md"): True}
_JUDGED = {"loss": "", "error": " (judged by the validation error)", "task": " (judged by the task error)"}


def table(with_fix: bool) -> str:
    """The markdown table: ``unexplained``, then root causes, then symptoms, each by id."""
    specs = [UNEXPLAINED_SPEC] + sorted((r.spec for r in RULES), key=lambda s: (s.kind != "root-cause", s.id))
    lines = ["| finding | kind | what it detects |" + (" mechanical fix (proof) |" if with_fix else ""),
             "|---|---|---|" + ("---|" if with_fix else "")]
    for spec in specs:
        row = f"| `{spec.id}` | {spec.kind} | {spec.what} |"
        if with_fix:
            declared = FIXES.get(spec.id)
            row += f" {declared.what}{_JUDGED[declared.judged_by]} |" if declared else " none (untested) |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def tables_in(text: str) -> list[tuple[int, int]]:
    """The findings tables of a markdown text: (start, end) character offsets of each."""
    found, at = [], 0
    while (start := text.find("\n| finding | kind |", at)) >= 0:
        start += 1
        end = start
        while end < len(text) and text.startswith("|", end):
            end = text.find("\n", end) + 1 or len(text)
        found.append((start, end))
        at = end
    return found


def refresh(root: str | os.PathLike) -> list[str]:
    """Writes each document's findings table from the declarations; returns the documents it changed."""
    changed = []
    for name, with_fix in DOCUMENTS.items():
        path = Path(root) / name
        text = path.read_text(encoding="utf-8")
        spans = tables_in(text)
        if len(spans) != 1:
            raise SystemExit(f"{name}: expected one findings table (a line starting '| finding | kind |'), "
                             f"found {len(spans)}")
        start, end = spans[0]
        new = text[:start] + table(with_fix) + text[end:]
        if new != text:
            aside = path.with_name(path.name + ".tmp")
            aside.write_text(new, encoding="utf-8")
            os.replace(aside, path)
            changed.append(name)
    return changed


if __name__ == "__main__":
    for name in refresh(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(f"wrote {name}")

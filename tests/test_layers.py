"""The import graph: no circles, no import pointing to a higher layer (docs/architecture.md), in-project
imports at module top unless deferring saves start-up, no private name imported from another package."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# Libraries slow to import (TensorFlow alone is seconds): deferring a module that loads one saves start-up.
HEAVY = {"tensorflow", "keras", "matplotlib", "scipy", "pandas", "ray", "jinja2", "selenium"}
# Modules that load one when used rather than when imported: diagnose._tf (TensorFlow, quietly),
# diagnose.models (Keras, on first use of a model class).
LAZY_HEAVY = {"diagnose._tf", "diagnose.models"}


def _modules() -> dict[str, Path]:
    """Every module of the package by its import name (models/ and reports/ are diagnose.models/.reports)."""
    out = {}
    for top in ("diagnose", "models", "reports"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if top == "diagnose" and parts[1:2] in (["models"], ["reports"]):
                continue  # the symlinks to models/ and reports/
            if top != "diagnose":
                parts.insert(0, "diagnose")
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _package(path: Path, name: str) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, bool, list[str], int]]:
    """(target module or external top name, at module top, names imported, line) for each import."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, id(node) in top, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only diagnose.models uses them
                base = _package(path, name).split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.append((full if full in MODULES else module, id(node) in top, [alias.name], node.lineno))
    return out


def _internal(target: str) -> str | None:
    for prefix in ("models", "reports"):  # never imported so, but a slip would be caught here
        if target == prefix or target.startswith(prefix + "."):
            target = "diagnose." + target
    return _owner(target) if target.split(".")[0] == "diagnose" else None


EDGES = {m: [(t, top, names, line) for target, top, names, line in _imports(m)
             if (t := _internal(target)) and t != m] for m in MODULES}


def _layers() -> list[tuple[str, list[str]]]:
    """(layer, module prefixes), bottom first, from the table in docs/architecture.md."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].isdigit():
            rows.append((cells[1], re.findall(r"`([\w.]+)`", cells[2])))
    return rows


def _deferred_allowed() -> set[tuple[str, str]]:
    """The deferred imports docs/architecture.md lists with their reason: ``module -> target`` (``*``: any)."""
    return set(re.findall(r"^- `([\w.]+)` -> `([\w.*]+)`: \S", DOC.read_text(encoding="utf-8"), re.M))


def _layer_of(module: str, layers) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    return found


def test_every_module_has_a_layer():
    layers = _layers()
    assert len(layers) >= 5
    assert [p for _, prefixes in layers for p in prefixes if _owner(p) != p] == []  # each names a module
    assert [m for m in MODULES if _layer_of(m, layers) is None] == []


def test_no_import_points_to_a_higher_layer():
    layers = _layers()
    # The package root's __version__ is the one name anyone may read from it.
    upward = [f"{m}:{line} -> {t} ({layers[_layer_of(m, layers)][0]} -> {layers[_layer_of(t, layers)][0]})"
              for m, edges in EDGES.items() for t, _, names, line in edges
              if _layer_of(t, layers) > _layer_of(m, layers) and not (t == "diagnose" and names == ["__version__"])]
    assert upward == []


def test_no_import_circles():
    graph = {m: sorted({t for t, _, _, _ in edges}) for m, edges in EDGES.items()}
    # Tarjan's strongly connected components: any with two modules or more is a circle.
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    known = [sorted(names.split()) for names in
             re.findall(r"^- circle ((?:`[\w.]+` ?)+): \S", DOC.read_text(encoding="utf-8"), re.M)]
    known = [[n.strip("`") for n in k] for k in known]
    assert [c for c in circles if c not in known] == []


def _loads_heavy(module: str, seen=None) -> bool:
    """True when importing ``module`` loads a slow library (through its own top-level imports)."""
    seen = seen if seen is not None else set()
    if module in LAZY_HEAVY:
        return True
    if module in seen:
        return False
    seen.add(module)
    for target, top, _, _ in _imports(module):
        if top and target.split(".")[0] in HEAVY:
            return True
        internal = _internal(target)
        if top and internal and internal != module and _loads_heavy(internal, seen):
            return True
    return False


def test_in_project_imports_are_at_module_top_unless_deferring_saves_start_up():
    allowed = _deferred_allowed()
    late = [f"{m}:{line} -> {t}" for m, edges in EDGES.items() for t, top, _, line in edges
            if not top and not _loads_heavy(t) and (m, t) not in allowed and (m, "*") not in allowed]
    assert late == [], "import these at module top, or list them with the reason in docs/architecture.md"


def test_no_private_name_is_imported_from_another_package():
    private = [f"{m}:{line} imports {t}.{name}" for m, edges in EDGES.items() for t, _, names, line in edges
               for name in names if name.startswith("_") and not name.startswith("__")
               and _package(MODULES[t], t) != _package(MODULES[m], m) and t != "diagnose._tf"]
    assert private == []

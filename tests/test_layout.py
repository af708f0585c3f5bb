"""The layout of a3s_nb: layers that import only downwards, no import circle, a small root.

The import graph is read from the source (every ``import`` statement of every module, at
the top or inside a function), not from what Python happens to have imported.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "a3s_nb"

#: The layer of each part of a3s_nb (a subpackage, or a module directly in a3s_nb/).
LAYER_OF = {
    "errors": "base",
    "config": "base",
    "_version": "base",
    "_warn": "base",
    "secrets": "base",
    "store": "store",
    "sdk": "sdk",
    "frames": "frames",
    "api": "api",
    "saved": "api",
    "render": "api",
    "lab": "lab",
    "exports": "exports",
    "notebook": "notebook",
    "widgets": "notebook",  # a3s_nb/widgets.py: the widgets keep their public path
    "cli": "cli",
    "testing": "testing",
}

_BELOW_API = {"base", "store", "sdk", "frames"}

#: Which layers each layer may import (its own included). Mirrors the "May import" line
#: of each subpackage's docstring (checked below).
MAY_IMPORT = {
    "base": {"base"},
    "store": {"base", "store"},
    "sdk": {"base", "store", "sdk"},
    "frames": {"base", "store", "sdk", "frames"},
    "api": _BELOW_API | {"api"},
    "lab": _BELOW_API | {"api", "lab"},
    "exports": _BELOW_API | {"api", "lab", "exports"},
    "notebook": _BELOW_API | {"api", "lab", "exports", "notebook"},
    "cli": _BELOW_API | {"api", "lab", "exports", "cli"},
    "testing": {"base", "sdk", "testing"},
}

MAX_ROOT_MODULES = 12


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package)} of every module under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path, is_pkg)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, list[int]]]:
    """{module: {imported a3s_nb module: [line numbers]}}, every import statement counted.

    ``from X import name`` imports ``X.name`` when that is a module, else ``X``; the
    parent packages Python initialises on the way are not counted.
    """
    modules = _modules(package)
    root = package.name
    graph: dict[str, dict[str, list[int]]] = {}
    for name, (path, is_pkg) in modules.items():
        here = name if is_pkg else name.rpartition(".")[0]
        edges: dict[str, list[int]] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    spec = ".".join(base + ([node.module] if node.module else []))
                else:
                    spec = node.module or ""
                for alias in node.names:
                    sub = f"{spec}.{alias.name}"
                    targets.append(sub if sub in modules else spec)
            for target in targets:
                if target != root and not target.startswith(root + "."):
                    continue
                while target not in modules:  # an attribute path: its module
                    target = target.rpartition(".")[0]
                if target != name:
                    edges.setdefault(target, []).append(node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The import circles: each strongly connected set of more than one module, as a
    path that goes round it (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(graph: dict[str, dict[str, list[int]]], scc: list[str]) -> str:
    members = set(scc)
    lines = [f"{len(scc)} modules import each other:"]
    for m in scc:
        for t, at in sorted(graph[m].items()):
            if t in members:
                lines.append(f"  {m} -> {t} (line {', '.join(map(str, sorted(set(at))))})")
    return "\n".join(lines)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return None if len(parts) == 1 else LAYER_OF.get(parts[1])


def test_no_import_circle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n\n".join(_describe(graph, scc) for scc in found)


def test_the_graph_sees_imports_inside_functions_and_circles(tmp_path):
    pkg = tmp_path / "a3s_nb"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import one\n")
    (pkg / "sub" / "one.py").write_text("def f():\n    from ..two import g\n")
    (pkg / "two.py").write_text("from a3s_nb.sub import one\nfrom .sub.one import f\n")
    graph = import_graph(pkg)
    assert graph["a3s_nb.sub.one"] == {"a3s_nb.two": [2]}
    assert graph["a3s_nb.two"] == {"a3s_nb.sub.one": [1, 2]}
    assert graph["a3s_nb.sub"] == {"a3s_nb.sub.one": [1]}
    assert cycles(graph) == [["a3s_nb.sub.one", "a3s_nb.two"]]


def test_no_module_imports_the_package_root():
    graph = import_graph()
    offenders = {
        m: edges["a3s_nb"] for m, edges in graph.items() if m != "a3s_nb" and "a3s_nb" in edges
    }
    assert not offenders, f"import the module that holds the name instead: {offenders}"


def test_every_part_of_the_package_has_a_layer():
    parts = {m.split(".")[1] for m in import_graph() if "." in m}
    assert parts <= set(LAYER_OF), f"add to LAYER_OF: {sorted(parts - set(LAYER_OF))}"


def test_each_layer_imports_only_what_it_may():
    bad = []
    for module, edges in sorted(import_graph().items()):
        layer = _layer(module)
        if layer is None:  # the package root gives the public API: it may import anything
            continue
        for target, at in sorted(edges.items()):
            other = _layer(target)
            if other is not None and other not in MAY_IMPORT[layer]:
                bad.append(f"{module} ({layer}) imports {target} ({other}) at line {at[0]}")
    assert not bad, "\n".join(bad)


def _may_import_line(doc: str) -> set[str]:
    m = re.search(r"May import from a3s_nb:(.*?)\.(\s|$)", doc, re.S)
    assert m, "the docstring says what the package may import ('May import from a3s_nb: ...')"
    return set(re.findall(r"``([\w.]+)``", m.group(1)))


@pytest.mark.parametrize("package", ["store", "sdk", "frames", "lab", "exports", "notebook"])
def test_each_subpackage_docstring_says_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc, f"a3s_nb/{package}/__init__.py says what it owns"
    named = _may_import_line(doc)
    allowed = {part for part, layer in LAYER_OF.items() if layer in MAY_IMPORT[LAYER_OF[package]]}
    allowed.discard(package)
    assert named == allowed


def test_at_most_a_dozen_modules_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_ROOT_MODULES, f"{len(top)} modules in a3s_nb/: {top}"


#: Every name ``a3s_nb.__all__`` gave before the package was split into subpackages.
PUBLIC_NAMES = [
    "FileStore",
    "ForkError",
    "MemoryStore",
    "SavedSession",
    "SessionBundle",
    "SessionData",
    "Store",
    "A3sNbError",
    "AmbiguousSessionIdError",
    "CaptureError",
    "CorruptFileError",
    "CorruptSessionWarning",
    "ExportError",
    "InvalidBundleError",
    "InvalidSessionIdError",
    "LiveSessionError",
    "ModelNotConfiguredError",
    "NotASessionError",
    "NotAnAgentError",
    "NotSettledError",
    "ParallelBuildError",
    "ReadOnlySessionError",
    "SaveConflictError",
    "SaveError",
    "SecretsFoundError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StoreError",
    "diff",
    "diff_summary",
    "fork",
    "lineage_frame",
    "lineage_of",
    "autosave",
    "list_sessions",
    "open_store",
    "replay",
    "resume",
    "save",
    "all_frames",
    "messages",
    "run_events",
    "runs",
    "sessions",
    "spans",
    "traces",
    "verification",
    "export_dataset",
    "to_otel",
    "DiffView",
    "RunTimeline",
    "SessionBrowser",
    "Transcript",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_still_resolves(name):
    import a3s_nb

    assert name in a3s_nb.__all__
    assert getattr(a3s_nb, name) is not None


def test_public_module_paths_still_resolve():
    import a3s_nb
    from a3s_nb.frames import schema

    assert a3s_nb.__version__
    assert a3s_nb.frames.CorruptSessionWarning is a3s_nb.CorruptSessionWarning
    for name in [*schema.FRAME_NAMES, "all_frames"]:
        assert getattr(a3s_nb.frames, name) is getattr(a3s_nb, name)
    widgets = importlib.import_module("a3s_nb.widgets")
    assert widgets.SessionBrowser is a3s_nb.SessionBrowser
    assert importlib.import_module("a3s_nb.testing").ScriptedLLM
    assert callable(importlib.import_module("a3s_nb.cli").main)
    assert callable(a3s_nb.load_ipython_extension)


def test_the_root_names_exactly_the_frames_of_the_schema():
    import a3s_nb
    from a3s_nb.frames import schema

    assert {*schema.FRAME_NAMES, "all_frames"} == a3s_nb._FRAMES


def test_importing_the_package_stays_light():
    code = (
        "import sys, a3s_nb\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'IPython', 'ipywidgets', 'a3s_code')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

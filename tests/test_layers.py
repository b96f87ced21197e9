"""The package's shape: every import, function-level ones included, points down the layers below, and no
module takes part in an import cycle. A failure prints the offending imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aurora", "baselines", "suites", "reports")

# Each layer and the layers it may import (itself always). Lower layers come first.
ALLOWED: dict[str, set[str]] = {
    "aurora": set(),  # the method contract, the registry class, the architecture map
    "baselines": {"aurora"},
    "suites.record": set(),  # the typed trial record, torch-free: reports read it
    "suites.engine": {"aurora"},
    "suites.tasks": {"aurora", "suites.engine"},
    "suites.backbones": {"aurora"},
    "suites.synthetic": {"aurora", "suites.engine", "suites.tasks", "suites.backbones"},
    "suites.benchmarks": {"aurora", "suites.engine", "suites.tasks", "suites.backbones", "suites.synthetic"},
    "suites.orchestration": {"aurora", "suites.record", "suites.engine", "suites.tasks", "suites.backbones",
                             "suites.benchmarks"},
    "suites.perf": {"aurora", "suites.record", "suites.engine", "suites.tasks", "suites.backbones",
                    "suites.benchmarks", "suites.orchestration"},
    "reports": {"suites.record"},
    # the composition root: everything but the method packages, which it reaches through the registry
    "suites.cli": {"aurora", "suites.record", "suites.engine", "suites.tasks", "suites.backbones",
                   "suites.synthetic", "suites.benchmarks", "suites.orchestration", "suites.perf", "reports"},
    "suites": set(),  # the bare package
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (``a.b.c`` may be module ``a.b`` plus attribute ``c``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path, module: str, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name, modules)
            if target is not None and target != module:
                found.append((target, node.lineno))
    return found


def layer_of(module: str) -> str:
    return max((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), key=len)


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = project_modules()
    return {m: imports_of(p, m, modules) for m, p in modules.items()}


def test_every_import_points_down_the_layers():
    graph = import_graph()
    bad = []
    for module, targets in graph.items():
        mine = layer_of(module)
        for target, line in targets:
            theirs = layer_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{module}:{line} imports {target} ({mine} may import {sorted(ALLOWED[mine]) or 'nothing'})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: sorted({t for t, _ in targets}) for m, targets in import_graph().items()}
    cycles = strongly_connected(graph)
    lines = {(m, t): line for m, targets in import_graph().items() for t, line in targets}
    report = []
    for cycle in cycles:
        members = set(cycle)
        report += [f"{m}:{lines[m, t]} imports {t}" for m in sorted(members) for t in graph[m] if t in members]
    assert not cycles, "import cycles:\n" + "\n".join(report)


def test_the_core_names_no_package_above_it():
    """``aurora`` finds baselines and plugins through entry points, never by naming them, even in a string."""
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "aurora").rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if any(f"{pkg}." in line or f'"{pkg}"' in line for pkg in ("suites", "reports", "baselines"))]
    assert not hits, hits


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_function_level_imports(tmp_path):
    """The graph includes imports inside functions (where cycles hide)."""
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    modules["pkg.a"].write_text("def f():\n    from pkg.b import g\n")
    assert imports_of(modules["pkg.a"], "pkg.a", modules) == [("pkg.b", 2)]
    assert strongly_connected({"pkg.a": ["pkg.b"], "pkg.b": ["pkg.a"]})

"""The package's shape: aiortc internals in one module, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import aiortc

PACKAGE = Path(__file__).resolve().parents[1] / "echo_widget"
COMPAT = PACKAGE / "_aiortc_compat.py"
PUBLIC_AIORTC_MODULES = {"aiortc", "aiortc.contrib.media"}
"""aiortc's documented API: the names in its ``__all__`` and the contrib media helpers."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import that runs at import time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: list[tuple[str, list[str]]] = []
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, [alias.name for alias in node.names]))
    return found


def test_only_the_compat_module_uses_aiortc_outside_its_public_api() -> None:
    public = set(aiortc.__all__)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == COMPAT:
            continue
        for module, names in _runtime_imports(path):
            if not (module == "aiortc" or module.startswith("aiortc.")):
                continue
            if module not in PUBLIC_AIORTC_MODULES:
                offenders.append(f"{path.name}: {module}")
            elif module == "aiortc":
                offenders += [f"{path.name}: aiortc.{n}" for n in names if n not in public]
    assert offenders == [], "aiortc outside its public API; move it to _aiortc_compat.py"


def test_the_compat_module_does_use_aiortc_internals() -> None:
    """The check above must see what it looks for: the compat module imports aiortc.sdp."""
    modules = {module for module, _ in _runtime_imports(COMPAT)}
    assert "aiortc.sdp" in modules
    assert "aiortc.rtp" in modules


def test_the_package_has_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        edges: set[str] = set()
        for module, names in _runtime_imports(path):
            if not module.startswith("echo_widget"):
                continue
            # `from pkg import sub` imports the submodule when there is one
            subs = {f"{module}.{n}" for n in names} & modules.keys()
            edges |= subs or ({module} & modules.keys())
        # a package's __init__ runs before its submodules: count it as their parent
        graph[name] = edges - {name}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []

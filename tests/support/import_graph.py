"""The nst_core import graph, read from the source: module-level and function-level imports alike,
so a lazy import inside a function cannot hide an upward dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import nst_core

PACKAGE = Path(nst_core.__file__).parent


def module_names() -> dict[str, Path]:
    """Module name relative to nst_core ("" for the package itself, "scan" for scan/__init__) -> file."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Each nst_core module -> the nst_core modules it imports (names as in :func:`module_names`)."""
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                # "from . import x" imports a module when x is one, else a name of the package.
                targets.update(
                    f"{module}.{a.name}".strip(".") if f"{module}.{a.name}".strip(".") in modules else module
                    for a in node.names
                )
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                targets.update(
                    n.removeprefix("nst_core").lstrip(".") for n in names if n and n.split(".")[0] == "nst_core"
                )
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph

"""The scan package's own import graph: each part imports only the parts below it.

Read from the source (module-level and function-level imports alike), so a lazy import
inside a function cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nst_core.scan

PACKAGE = Path(nst_core.scan.__file__).parent
# Within the package, a module may import only the modules listed for it.
ALLOWED = {
    "folder": set(),
    "config": {"folder"},
    "proxy": set(),
    "run": {"config", "folder", "proxy"},
    "table": {"folder"},
    "plots": {"folder", "table"},
}
# Reading a finished folder (table, plots) needs none of the machinery that produces one.
RUNNER_ONLY = {"stylize", "quality", "weights", "checkpoint", "losses", "images"}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(sibling modules of the scan package, nst_core modules) that ``module`` imports."""
    siblings, core = set(), set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            siblings.add(node.module or "")
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            core.add((node.module or "").split(".")[0])
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            core.update(n.split(".")[1] for n in names if n and n.startswith("nst_core."))
    return siblings, core


def test_every_part_imports_only_the_parts_below_it():
    assert {p.stem for p in PACKAGE.glob("*.py")} == {*ALLOWED, "__init__"}
    for module, allowed in ALLOWED.items():
        siblings, core = _imports(module)
        assert siblings <= allowed, f"{module} imports {sorted(siblings - allowed)}"
        assert "cli" not in core and "scan" not in core, module


def test_table_and_plots_do_not_import_the_runner_or_what_it_needs():
    for module in ("table", "plots"):
        siblings, core = _imports(module)
        assert not siblings & {"run", "config", "proxy"}, module
        assert not core & RUNNER_ONLY, f"{module} imports {sorted(core & RUNNER_ONLY)}"

"""The scan package's own import graph: each part imports only the parts below it, and reading a
finished scan folder (table, plots) needs none of the machinery that produces one."""

from __future__ import annotations

from support.import_graph import import_graph, module_names

# Within the package, a module may import only the modules listed for it.
ALLOWED = {
    "folder": set(),
    "config": {"folder"},
    "proxy": set(),
    "run": {"config", "folder", "proxy"},
    "table": {"folder"},
    "plots": {"folder", "table"},
}
# What only producing a scan needs (the engine, weights, checkpoints, image loading); a package counts with its modules.
RUNNER_ONLY = {"nst.stylize", "nst.quality", "model.weights", "model.checkpoint", "nst.losses", "image.io"}
SCAN = "compress.scan"  # the package's name in the import graph (relative to nst_core)


def _runner_only(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in RUNNER_ONLY)}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(sibling modules of the scan package, other nst_core modules) that scan.``module`` imports."""
    targets = import_graph()[f"{SCAN}.{module}"]
    siblings = {t.removeprefix(f"{SCAN}.") for t in targets if t.startswith(f"{SCAN}.")}
    return siblings, {t for t in targets if not t.startswith(SCAN)}


def test_every_part_imports_only_the_parts_below_it():
    assert {name.removeprefix(f"{SCAN}.") for name in module_names() if name.startswith(f"{SCAN}.")} == set(ALLOWED)
    for module, allowed in ALLOWED.items():
        siblings, core = _imports(module)
        assert siblings <= allowed, f"{module} imports {sorted(siblings - allowed)}"
        assert not any(name.startswith("cli") for name in core) and SCAN not in import_graph()[f"{SCAN}.{module}"], (
            module
        )


def test_table_and_plots_do_not_import_the_runner_or_what_it_needs():
    for module in ("table", "plots"):
        siblings, core = _imports(module)
        assert not siblings & {"run", "config", "proxy"}, module
        assert not _runner_only(core), f"{module} imports {sorted(_runner_only(core))}"

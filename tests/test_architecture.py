"""The package's layering, checked on its own imports: no cycle, and no import that runs back up.

A module may import modules of its own layer or of lower ones (never higher), and the graph as a
whole has no cycle, so two modules of one layer never import each other either.
"""

from __future__ import annotations

import re

import nst_core

from support.import_graph import PACKAGE, import_graph, module_names

# The layers are the package's folders, lowest first, as nst_core.LAYERS declares them.
LAYERS = [set(packages) for packages in nst_core.LAYERS]


def layer_of(module: str) -> int:
    """The layer of a module (name relative to nst_core); the root package itself is lowest."""
    if module == "":
        return 0
    for index, layer in enumerate(LAYERS):
        if module.split(".")[0] in layer:
            return index
    raise AssertionError(f"nst_core.{module} is in no layer's folder: move it into one of {nst_core.LAYERS}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_can_fail():
    """The cycle finder and the layer rule see a planted cycle and an upward import."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("core.errors") < layer_of("model.vgg") < layer_of("nst.stylize") < layer_of("cli")
    assert "model.weights" not in import_graph()["model.checkpoint"]  # the cycle the first version had
    assert "model.checkpoint" in import_graph()["model.weights"]


def test_the_checkpoint_format_never_imports_the_network():
    """``model.vgg`` builds itself from the checkpoint's contents; the codec importing it back would be a cycle."""
    graph = import_graph()
    codec = [module for module in graph if module.split(".")[:2] == ["model", "checkpoint"]]
    assert len(codec) > 1 and all("model.vgg" not in graph[module] for module in codec)
    assert "model.checkpoint" in graph["model.vgg"] and "model.hub.pretrained" in graph["model.vgg"]


def test_the_library_never_imports_gradio():
    """Only the top layer's ``nst_core.app`` (the UI) imports Gradio; everything below imports without it."""
    for module, path in module_names().items():
        if module.split(".")[0] != "app":
            assert "import gradio" not in path.read_text(), f"nst_core.{module} imports gradio; only nst_core.app may"
    assert "import gradio" in (PACKAGE / "app" / "page.py").read_text()  # the check looks where Gradio is


def test_the_readme_map_and_the_architecture_page_match_the_folders():
    """The README's map lists each package folder at its layer; docs/architecture.md names every module."""
    root = PACKAGE.parent
    readme_rows = re.findall(r"^\| (\d) \| `nst_core/(\w+)/` \|", (root / "README.md").read_text(), re.M)
    expected = [(str(index + 1), package) for index, layer in enumerate(nst_core.LAYERS) for package in layer]
    assert sorted(readme_rows) == sorted(expected)
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == {package for _, package in expected}
    page = (root / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(\w+)/?`", page))
    unnamed = [
        module
        for module in module_names()
        if module and module.split(".")[-1] not in named and not module.startswith("cli.")
    ]
    assert unnamed == [], "modules missing from docs/architecture.md"

"""Neural style transfer with a pruned VGG-19 (importable without Gradio).

The package is layered by folder, lowest first; a module imports only from its own layer or lower
ones, never upward, and no two modules import each other (``tests/test_architecture.py`` reads
:data:`LAYERS` and checks every import against it):

- ``core``: errors, atomic files, field validation, devices (no torch models, no images).
- ``model``, ``image``: the VGG layer table and network, weight sources, the checkpoint format,
  the Hugging Face Hub (download, push, pull, card, Space); image loading and colour.
- ``nst``: the style-transfer engine: losses, the optimisation loop, tiling, memory and cost
  models, the judge.
- ``compress``: making smaller networks (pruning, importance, scans, budgets, fine-tuning).
- ``workflows``: jobs that combine the layers below (the dense-vs-pruned comparison, releases).
- ``cli``, ``app``: the ``nst`` command and the Gradio UI; they orchestrate and hold no algorithm.
"""

from importlib.metadata import PackageNotFoundError, version

#: The folders of the package, lowest layer first; packages in one tuple share a layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("model", "image"),
    ("nst",),
    ("compress",),
    ("workflows",),
    ("cli", "app"),
)

try:
    # The one source of the version number is pyproject.toml, read through the installed metadata.
    __version__ = version("nst-core")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

"""Neural style transfer with a pruned VGG-19 (importable without Gradio)."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one source of the version number is pyproject.toml, read through the installed metadata.
    __version__ = version("nst-core")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

"""Neural style transfer with a pruned VGG-19 (importable without Gradio)."""

__version__ = "0.1.0"

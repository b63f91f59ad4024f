"""The network and everything that moves it: VGG-19's layer table (``layers``), ``VGGFeatures``
(``vgg``), weight specs and sources (``weight_spec``, ``weights``), the checkpoint format
(``checkpoint/``), the Hugging Face Hub (``hub/``) and VGG weights read from ONNX and Keras
files (``convert/``).

May import: ``core``.
"""

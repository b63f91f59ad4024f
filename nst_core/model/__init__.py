"""The network and everything that moves it: the VGG-19 and VGG-16 layer tables (``layers``), ``VGGFeatures``
(``vgg``), weight specs and sources (``weight_spec``, ``weights``), the checkpoint format
(``checkpoint/``), the Hugging Face Hub (``hub/``) and VGG weights read from ONNX and Keras
files (``convert/``).

May import: ``core``.
"""

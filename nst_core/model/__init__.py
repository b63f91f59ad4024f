"""The network and everything that moves it: the VGG-19 and VGG-16 layer tables (``layers``), ``VGGFeatures``
(``vgg``), weight specs and sources (``weight_spec``, ``weights``), the checkpoint format
(``checkpoint/``) and the Hugging Face Hub (``hub/``).

May import: ``core``.
"""

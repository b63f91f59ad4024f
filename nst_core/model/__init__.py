"""The network and everything that moves it: VGG-19's layer table (``layers``), ``VGGFeatures``
(``vgg``), weight specs and sources (``weight_spec``, ``weights``), the checkpoint format
(``checkpoint/``) and the Hugging Face Hub (``hub/``).

May import: ``core``.
"""

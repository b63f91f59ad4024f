"""The network: VGG's layer table, ``VGGFeatures``, weight specs and sources, the checkpoint format.

May import: ``core``.
"""

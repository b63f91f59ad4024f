"""The style-transfer engine: losses, the optimisation loop, tiling, memory and cost models, the judge.

May import: ``core``, ``model``, ``image``.
"""

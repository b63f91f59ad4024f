"""Smaller networks: pruning, filter importance, calibration images, scans, budgets, fine-tuning.

May import: ``core``, ``model``, ``image``, ``nst`` (and ``hub``, its neighbour, without a cycle).
"""

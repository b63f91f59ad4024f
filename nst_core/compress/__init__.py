"""Smaller networks: pruning, filter importance, calibration images, scans, budgets, fine-tuning.

The parts, lowest first: ``pruning/`` (profiles, fine and structured pruning, the one ``prune``
entry point, reports), ``calibration`` (image folders, held-out split, crops), ``importance``
(the table of filter-ranking criteria), ``scan/`` (per-layer sensitivity), ``budget/`` (widths
for a cost budget), ``finetune/`` (distillation from the dense network, resumable).

May import: ``core``, ``model``, ``image``, ``nst``.
"""

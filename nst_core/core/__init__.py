"""The lowest layer: user-facing errors, atomic file writes, field validation, device choice.

May import: nothing of nst_core (only the standard library, torch and numpy).
"""

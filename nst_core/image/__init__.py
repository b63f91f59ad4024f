"""Images: loading with bounded memory, resizing, tensor conversion, colour and luminance.

May import: ``core``.
"""

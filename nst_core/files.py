"""Atomic file writes: a reader (or a crash) never sees half a file.

Everything is written to a temporary file in the destination's folder and renamed over the
destination, which POSIX guarantees is atomic on one filesystem.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    >>> with atomic_path("out.bin") as tmp:          # doctest: +SKIP
    ...     tmp.write_bytes(b"data")
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Save with the format taken from ``path``'s suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)

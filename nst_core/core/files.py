"""Atomic file writes: a reader (or a crash) never sees half a file.

Everything is written to a temporary file in the destination's folder and renamed over the
destination, which POSIX guarantees is atomic on one filesystem.

A killed writer leaves its temporary file (``.NAME.XXXXXXXX.tmp``) behind; the next write to the
same destination removes such files once they are :data:`STALE_TEMP_SECONDS` old. Age, not the
writer's pid, decides: scan shards on several machines share a folder over a network filesystem,
where a pid means nothing, while a live writer keeps touching its file as it writes.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

#: A temporary file untouched this long belongs to a dead writer (a live one writes continuously;
#: the slowest, a 200 MB fine-tuning state on a network disk, takes well under a minute).
STALE_TEMP_SECONDS = 600
# mkstemp's random part is 8 characters of [a-z0-9_]; other files that start with ".NAME." are not ours.
_TEMP_NAME = r"\.{name}\.[a-z0-9_]{{8}}\.tmp"

# Read once at import: os.umask can only be read by setting it, which is not thread-safe later.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    >>> with atomic_path("out.bin") as tmp:          # doctest: +SKIP
    ...     tmp.write_bytes(b"data")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; give the result the mode a plain open() would (or the old file's).
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temp_files(path: str | os.PathLike, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove temporary files that killed atomic writes to ``path`` left beside it; returns what was removed.

    Only names of :func:`atomic_path`'s own pattern for this destination, last modified more than
    ``older_than`` seconds ago, so a write in progress (in any process) keeps its file.
    """
    path = Path(path)
    pattern = re.compile(_TEMP_NAME.format(name=re.escape(path.name)))
    cutoff = time.time() - older_than
    removed: list[Path] = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            if candidate.is_file() and not candidate.is_symlink() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # gone already (another writer cleaned it) or not ours to remove
            continue
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Save with the format taken from ``path``'s suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)

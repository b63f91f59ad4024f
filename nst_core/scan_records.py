"""Crash-safe JSONL records for long scans: one line per finished cell.

A line is appended with a single write, flushed and fsynced under an exclusive lock, so a
crash or a kill leaves at worst one torn *last* line. Readers skip such a line; the next
writer cuts it off before appending, so it never glues onto a good record.

Each shard writes its own file (``shard-I-of-N.jsonl``) so machines sharing a network
filesystem do not contend; readers take the union of every file in the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path


def shard_file(folder: str | os.PathLike, index: int, count: int) -> Path:
    return Path(folder) / f"shard-{index}-of-{count}.jsonl"


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line, durably (write + flush + fsync under a lock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
    # Read-write (not "ab") so a torn tail can be inspected and cut; O_APPEND so writes land at the end.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_torn_tail(fd)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _cut_torn_tail(fd: int) -> None:
    """If the file does not end in a newline, a writer died mid-line: drop that partial line."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # Find the last newline; everything after it is the torn line.
    chunk = 1 << 16
    end = size
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every complete record of one file; a torn last line is skipped silently, other bad lines with a warning."""
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            is_torn_tail = number == len(lines)  # no newline after it: the writer was interrupted
            if not is_torn_tail:
                warnings.warn(f"{path}:{number}: skipping a line that is not valid JSON", stacklevel=2)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_folder(folder: str | os.PathLike) -> list[dict]:
    """Records of every ``*.jsonl`` file in ``folder``, files in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out: list[dict] = []
    for path in sorted(folder.glob("*.jsonl")):
        out.extend(read_records(path))
    return out

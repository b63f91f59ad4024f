"""The scan folder on disk: ``scan.json``, crash-safe JSONL records per shard, and a folder lock.

A record line is appended with a single write, flushed and fsynced under an exclusive lock,
so a crash or a kill leaves at worst one torn *last* line. Readers skip such a line; the next
writer cuts it off before appending, so it never glues onto a good record.

Each shard writes its own file (``records/shard-I-of-N.jsonl``) so machines sharing a network
filesystem do not contend; readers take the union of every file in the folder.

This module needs neither the runner nor torch, so the table and the plots can read a
finished folder through it alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import UserError

SCAN_FORMAT = "nst-scan/1"
RECORD_FORMAT = "nst-scan-record/1"


class ScanError(UserError):
    """A scan's configuration, folder or records are not usable."""


def cell_key(layer: str, sparsity: float) -> str:
    """The name of one grid cell in records and tables: ``cell_key("conv3_1", 0.5) == "conv3_1@0.5000"``."""
    return f"{layer}@{sparsity:.4f}"


def shard_file(folder: str | os.PathLike, index: int, count: int) -> Path:
    """The record file shard ``index`` of ``count`` appends to, inside ``folder``."""
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


def finished_records(folder: str | os.PathLike, config_hash: str) -> dict[str, dict]:
    """Finished cells of this configuration, by cell key (first record wins if a cell was run twice)."""
    out: dict[str, dict] = {}
    for record in read_folder(Path(folder) / "records"):
        if record.get("config_hash") == config_hash and record.get("cell") and record["cell"] not in out:
            out[record["cell"]] = record
    return out


def load_scan_json(folder: str | os.PathLike) -> dict:
    """The configuration a scan folder holds (its ``scan.json``); :class:`ScanError` if there is none."""
    path = Path(folder) / "scan.json"
    if not path.is_file():
        raise ScanError(f"{folder} is not a scan folder (no scan.json); run `nst scan run --out {folder}` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScanError(f"{path}: unreadable ({exc})") from None
    if data.get("format") != SCAN_FORMAT:
        raise ScanError(f"{path}: format {data.get('format')!r}, expected {SCAN_FORMAT!r}")
    return data


@contextmanager
def folder_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block, across processes."""
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

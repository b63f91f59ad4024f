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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nst_core.core.errors import UserError
from nst_core.core.validation import Fields, read_json_file, shown

SCAN_FORMAT = "nst-scan/1"
RECORD_FORMAT = "nst-scan-record/1"
SCAN_MODES = ("full", "proxy")


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
            view = view[os.write(fd, view) :]
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
        problem = _record_problem(record)
        if problem:
            warnings.warn(f"{path}:{number}: skipping a record that {problem}", stacklevel=2)
            continue
        records.append(record)
    return records


def _record_problem(record) -> str | None:
    """Why a decoded line is not a usable record (None when it is): the fields readers index."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    for key in ("cell", "config_hash"):
        if key in record and not isinstance(record[key], str):
            return f"has a {key!r} that is not a string"
    metrics = record.get("metrics", {})
    # inf and NaN are results (a cell whose stylization diverged); strings and booleans are not.
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        return "has 'metrics' that are not an object of numbers"
    return None


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
        finished = record.get("cell") and "metrics" in record
        if record.get("config_hash") == config_hash and finished and record["cell"] not in out:
            out[record["cell"]] = record
    return out


def load_scan_json(folder: str | os.PathLike) -> dict:
    """The configuration a scan folder holds (its ``scan.json``), checked; :class:`ScanError` if there is none."""
    path = Path(folder) / "scan.json"
    if not path.is_file():
        raise ScanError(f"{folder} is not a scan folder (no scan.json); run `nst scan run --out {folder}` first")
    data = read_json_file(path, "a scan configuration", ScanError)
    fields = Fields(data, str(path), ScanError)
    found = fields.get("format", None)
    if found != SCAN_FORMAT:
        fields.fail("format", f"is {shown(found)}, expected {SCAN_FORMAT!r}")
    fields.string("config_hash")
    fields.mapping("identity", {})
    fields.string("method")
    fields.string("mode", SCAN_MODES)
    fields.string("weights")
    fields.names("layers")
    fields.numbers("sparsities", low=0.0)
    for i, value in enumerate(data["sparsities"]):
        if value > 1.0:
            fields.fail(f"sparsities[{i}]", f"is {value}; it must be in [0, 1]")
    return data


def read_dense_info(folder: str | os.PathLike, config_hash: str) -> dict | None:
    """The dense baseline's ``dense.json`` of this configuration (losses checked), or None if there is none yet."""
    path = Path(folder) / "dense.json"
    if not path.is_file():
        return None
    fields = Fields(read_json_file(path, "the dense baseline", ScanError), str(path), ScanError)
    if fields.get("config_hash", None) != config_hash:
        return None
    losses = fields.nested("losses")
    losses.number("content")
    losses.number("style")
    return fields.data


@contextmanager
def folder_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block, across processes."""
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

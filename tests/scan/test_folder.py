"""nst_core.compress.scan.folder: crash-safe JSONL records."""

from __future__ import annotations

from nst_core.compress.scan import append_record, read_records


def test_torn_tail_is_ignored_by_readers_and_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"cell": "a"})
    with open(path, "ab") as f:
        f.write(b'{"cell": "b", "met')
    assert [r["cell"] for r in read_records(path)] == ["a"]
    append_record(path, {"cell": "c"})
    assert path.read_text().splitlines() == ['{"cell": "a"}', '{"cell": "c"}']

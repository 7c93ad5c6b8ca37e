"""The durable spool: order, segments, restart, torn lines, locking, failed writes."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hitcall_pbx.errors import Conflict
from hitcall_pbx.records import spool as spool_module
from hitcall_pbx.records.spool import Spool, expire_rejected


def _items(start: int, n: int) -> list[dict]:
    return [{"n": i, "text": f'row {i}, with "quotes"\nand a newline'} for i in range(start, start + n)]


def _replay_all(spool: Spool) -> list[dict]:
    out: list[dict] = []
    for segment in spool.segments():
        out.extend(spool.read(segment).items)
    return out


def test_append_and_read_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "cdr", segment_items=5)
    spool.open()
    for start in range(0, 12, 4):
        spool.append(_items(start, 4))
    assert spool.backlog == 12
    segments = spool.segments()
    assert [p.name for p in segments] == sorted(p.name for p in segments)
    assert len(segments) == 2  # batches are never split: 4 + 4, rotate at >= 5, then 4
    assert _replay_all(spool) == _items(0, 12)
    spool.close()


def test_remove_deletes_segment_and_shrinks_backlog(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_items=3)
    spool.open()
    spool.append(_items(0, 3))
    spool.append(_items(3, 2))
    first, second = spool.segments()
    spool.remove(first)
    assert not first.exists() and second.exists()
    assert spool.backlog == 2
    spool.remove(second)
    assert spool.backlog == 0 and spool.segments() == []
    spool.close()


def test_reopen_after_restart_keeps_backlog_and_never_appends_to_old_segments(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    first.append(_items(0, 3))
    first.close()

    second = Spool(tmp_path)
    second.open()
    assert second.backlog == 3
    old = second.segments()
    second.append(_items(3, 2))
    new = [p for p in second.segments() if p not in old]
    assert len(new) == 1 and new[0].name > old[0].name
    assert old[0].read_bytes().count(b"\n") == 3
    assert _replay_all(second) == _items(0, 5)
    second.close()


def test_torn_last_line_is_skipped_without_losing_earlier_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(_items(0, 3))
    (segment,) = spool.segments()
    spool.close()
    with segment.open("ab") as f:
        f.write(b'{"n": 3, "text": "cut sho')  # crash mid-write

    again = Spool(tmp_path)
    again.open()
    assert again.backlog == 3
    read = again.read(segment)
    assert read.items == _items(0, 3)
    assert read.skipped == 1
    again.close()


def test_a_corrupt_line_in_the_middle_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    (tmp_path / "000000000001.jsonl").write_bytes(b'{"n": 0}\nnot json\n[1, 2]\n{"n": 3}\n')
    spool = Spool(tmp_path)
    spool.open()
    read = spool.read(spool.segments()[0])
    assert read.items == [{"n": 0}, {"n": 3}]
    assert read.skipped == 2
    spool.close()


def test_failed_write_leaves_no_partial_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(_items(0, 2))
    segment = spool.directory / "000000000001.jsonl"
    size = segment.stat().st_size

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "fsync", disk_full)
    with pytest.raises(OSError):
        spool.append(_items(2, 50))
    monkeypatch.undo()
    assert segment.stat().st_size == size
    assert spool.backlog == 2
    spool.append(_items(2, 1))
    assert _replay_all(spool) == _items(0, 3)
    spool.close()


def test_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    other = Spool(tmp_path)
    with pytest.raises(Conflict) as err:
        other.open()
    assert str(tmp_path) in err.value.message
    spool.close()
    other.open()  # free again once the first one closed
    other.close()


def test_private_permissions_and_rejected_items_outside_backlog(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "cdr"
    spool = Spool(directory, clock=lambda: datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    spool.open()
    spool.append(_items(0, 1))
    spool.reject([{"error": "bad", "record": {"n": 9}}])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert spool.backlog == 1
    assert (directory / "rejected-2026-03-02.jsonl").read_text() == '{"error":"bad","record":{"n":9}}\n'
    assert all(not p.name.startswith("rejected") for p in spool.segments())
    spool.close()


def test_rejected_items_are_deleted_once_the_cdr_minimum_has_passed(tmp_path: Path) -> None:
    day = {"now": datetime(2026, 3, 2, 12, tzinfo=UTC)}
    spool = Spool(tmp_path, clock=lambda: day["now"])
    spool.open()
    spool.reject([{"error": "bad", "record": {"dialled_number": "+358401234567"}}])
    day["now"] = datetime(2026, 3, 3, 8, tzinfo=UTC)
    spool.reject([{"error": "bad", "record": {"n": 2}}])
    legacy = tmp_path / "rejected.jsonl"  # from an earlier version, last written 2026-03-01
    legacy.write_text("{}\n")
    os.utime(legacy, (datetime(2026, 3, 1, tzinfo=UTC).timestamp(),) * 2)
    names = lambda: sorted(p.name for p in tmp_path.glob("rejected*"))  # noqa: E731
    # A month after the last possible item of a day (its end), not before.
    assert expire_rejected(tmp_path, datetime(2026, 4, 2, 23, 59, tzinfo=UTC)) == [legacy]
    assert names() == ["rejected-2026-03-02.jsonl", "rejected-2026-03-03.jsonl"]
    assert [p.name for p in expire_rejected(tmp_path, datetime(2026, 4, 3, tzinfo=UTC))] == [
        "rejected-2026-03-02.jsonl"
    ]
    spool.close()
    day["now"] = datetime(2026, 4, 4, tzinfo=UTC)
    reopened = Spool(tmp_path, clock=lambda: day["now"])
    reopened.open()  # opening a spool expires too
    assert names() == []
    reopened.close()

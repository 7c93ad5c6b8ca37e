"""Answer stamps and line slots (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.answer_stamp import SlotPool, parse_stamp, stamp_variable


def test_a_stamp_is_read_only_for_its_own_attempt() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    assert parse_stamp(f"{mine.hex} 1796500000.250", mine) == datetime.fromtimestamp(1796500000.25, UTC)
    assert parse_stamp(f"{other.hex} 1796500000.250", mine) is None  # the slot's previous call
    for bad in ("", f"{mine.hex}", f"{mine.hex} soon", f"{mine.hex} -5", f"{mine.hex} 1 2", str(mine) + " 17"):
        assert parse_stamp(bad, mine) is None
    assert stamp_variable(7) == "HITCALL_ANSWERED_7"


@given(st.lists(st.booleans(), max_size=200))
def test_slots_in_use_are_unique_and_reused_lowest_first(ops: list[bool]) -> None:
    pool, used = SlotPool(), set()
    for take in ops:
        if take or not used:
            slot = pool.take()
            assert slot not in used
            # Lowest free first: every lower slot is in use.
            assert all(n in used for n in range(slot))
            used.add(slot)
        else:
            slot = max(used)
            used.discard(slot)
            pool.give_back(slot)
    assert pool.peak >= len(used)

"""Answer stamps: the outbound dialplan writes, at the moment a customer answers, the
attempt id and the time into an Asterisk global variable named by the call's line
slot (`HITCALL_ANSWERED_<slot>`), so that an answer whose events were lost (an ARI
gap, a service restart) is still known after the channel is gone. Slots are small
integers the dialer reuses, so the globals stay as many as the lines it ever used at
once; a stamp names its attempt, so a stale one from the slot's previous call is
never taken for this one's.
"""

from __future__ import annotations

import heapq
import uuid
from datetime import UTC, datetime

__all__ = ["MAX_SLOTS_SCANNED", "SlotPool", "parse_stamp", "read_stamp", "stamp_variable"]

PREFIX = "HITCALL_ANSWERED_"
# After a restart the stamps of slots 0, 1, 2, ... are read until one was never written.
MAX_SLOTS_SCANNED = 10_000


def stamp_variable(slot: int) -> str:
    return f"{PREFIX}{slot}"


def read_stamp(value: str) -> tuple[str, datetime] | None:
    """A stamp `<attempt id hex> <epoch seconds>` as (attempt id hex, answer time); None
    for an empty or malformed one."""
    parts = value.split()
    if len(parts) != 2 or len(parts[0]) != 32:
        return None
    try:
        int(parts[0], 16)
        epoch = float(parts[1])
    except ValueError:
        return None
    if not 0 < epoch < 32503680000:  # before year 3000
        return None
    return parts[0], datetime.fromtimestamp(epoch, UTC)


def parse_stamp(value: str, attempt_id: uuid.UUID) -> datetime | None:
    """The answer time in a stamp when it is this attempt's; None for an empty, foreign
    (the slot's previous call) or malformed stamp."""
    found = read_stamp(value)
    return found[1] if found is not None and found[0] == attempt_id.hex else None


class SlotPool:
    """Line slots: the lowest free one first, so the slots in use stay 0..peak."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0

    def take(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._next += 1
        return self._next - 1

    def give_back(self, slot: int) -> None:
        heapq.heappush(self._free, slot)

    @property
    def peak(self) -> int:
        """How many slots were ever handed out (the stamps to scan after a restart)."""
        return self._next

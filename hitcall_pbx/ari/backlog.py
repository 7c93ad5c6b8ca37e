"""Events received from Asterisk and not yet dispatched, in two lanes.

Events are dispatched in the order Asterisk sent them, with one exception: an *urgent*
event (for the service, a customer's answer: the one event someone on the line waits on)
goes into a lane of its own, dispatched at once, even while the main lane waits in a
handler (an agent's login reading the database, a logout's requests) and ahead of the
events queued before it. Order per channel is kept: an event is urgent only while no
event of its channel is queued or being dispatched (bar those the `overtakes` test says
it may pass: for an answer, its own channel's change to Up, the same news), and the main
lane does not take an event of a channel whose urgent event is not done yet. The client
calls `done` once an event taken from either lane has been dispatched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

Urgent = Callable[[dict[str, Any]], bool]
Overtakes = Callable[[dict[str, Any]], bool]


def channel_of(data: Any) -> str | None:
    """The id of the channel an event names (`channel.id`), None when it names none."""
    if not isinstance(data, dict):
        return None
    channel = data.get("channel")
    if not isinstance(channel, dict):
        return None
    cid = channel.get("id")
    return cid if isinstance(cid, str) else None


class Taken(NamedTuple):
    data: Any
    cid: str | None
    urgent: bool
    blocks: bool  # counted in the channel's open events


class EventBacklog:
    def __init__(self, urgent: Urgent | None = None, overtakes: Overtakes | None = None) -> None:
        self._urgent_test = urgent
        self._overtakes = overtakes
        self._urgent: deque[tuple[Any, str]] = deque()
        self._normal: deque[tuple[Any, str | None, bool]] = deque()
        # channel id -> its events queued or being dispatched that an urgent one may not pass
        self._open: dict[str, int] = {}
        self._urgent_open: set[str] = set()  # channels whose urgent event is not done

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)

    def push(self, data: Any) -> bool:
        """Queue one decoded event; True when it went to the urgent lane."""
        cid = channel_of(data)
        urgent = cid is not None and self._urgent_test is not None and cid not in self._open and self._urgent_test(data)
        if urgent:
            assert cid is not None
            self._urgent.append((data, cid))
            self._urgent_open.add(cid)
            blocks = True
        else:
            blocks = cid is not None and not (self._overtakes is not None and self._overtakes(data))
            self._normal.append((data, cid, blocks))
        if blocks:
            assert cid is not None
            self._open[cid] = self._open.get(cid, 0) + 1
        return urgent

    def take_urgent(self) -> Taken | None:
        """The oldest urgent event, None when there is none."""
        if not self._urgent:
            return None
        data, cid = self._urgent.popleft()
        return Taken(data, cid, True, True)

    def take(self) -> Taken | None:
        """The oldest event of the main lane; None when there is none, or when it names a
        channel whose urgent event is not done yet (it comes after that one)."""
        if not self._normal or self._normal[0][1] in self._urgent_open:
            return None
        data, cid, blocks = self._normal.popleft()
        return Taken(data, cid, False, blocks)

    def done(self, taken: Taken) -> None:
        """An event taken from either lane has been dispatched."""
        if taken.urgent:
            assert taken.cid is not None
            self._urgent_open.discard(taken.cid)
        if not taken.blocks or taken.cid is None:
            return
        cid = taken.cid
        left = self._open[cid] - 1
        if left:
            self._open[cid] = left
        else:
            del self._open[cid]

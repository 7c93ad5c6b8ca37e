"""The ARI client's event dispatch: the event types no part of the service handles are
dropped before validation and handlers; every other event reaches every handler in order."""

from __future__ import annotations

import json
from typing import Any

from hitcall_pbx.ari.client import NOT_HANDLED, AriClient
from hitcall_pbx.ari.events import AriEvent, StasisStart, UnknownEvent
from tests.unit.test_ari_events import CHANNEL, event


def client(**kw: Any) -> tuple[AriClient, list[AriEvent | UnknownEvent]]:
    seen: list[AriEvent | UnknownEvent] = []
    c = AriClient("http://127.0.0.1:1/ari", "u", "p", "hitcall", **kw)
    c.on_event(seen.append)
    return c, seen


STREAM = [
    event("ChannelVarset", variable="HITCALL_X", value="1", channel=CHANNEL),
    event("ChannelDialplan", dialplan_app="Set", dialplan_app_data="X=1", channel=CHANNEL),
    event("StasisStart", args=["customer", "att-1"], channel=CHANNEL),
    event("ChannelCallerId", caller_presentation=0, caller_presentation_txt="Allowed", channel=CHANNEL),
    event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=CHANNEL),
]


async def test_events_no_handler_uses_are_dropped_before_validation() -> None:
    c, seen = client()
    for ev in STREAM:
        await c._dispatch_text(json.dumps(ev))
    assert [e.type for e in seen] == ["StasisStart", "ChannelDestroyed"]
    assert isinstance(seen[0], StasisStart)
    assert c.stats.ignored_events == 3 and c.stats.events == 2
    assert {"ChannelVarset", "ChannelDialplan", "Dial", "ChannelCallerId", "ChannelConnectedLine"} == NOT_HANDLED


async def test_a_client_asked_for_everything_gets_everything() -> None:
    c, seen = client(ignore_events=frozenset())
    for ev in STREAM:
        await c._dispatch_text(json.dumps(ev))
    assert [e.type for e in seen] == [ev["type"] for ev in STREAM]
    assert c.stats.ignored_events == 0

"""The ARI client's two dispatch lanes: a customer's answer is dispatched as soon as it is
received, ahead of the events queued before it and while the main lane waits in a handler,
yet never ahead of an earlier event of its own channel (bar its change to Up), and the
events of its channel that follow it wait for it. Pure backlog rules, then the client's
reader fed by a stand-in WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from hitcall_pbx.ari.backlog import EventBacklog, Taken, channel_of
from hitcall_pbx.ari.client import AriClient
from hitcall_pbx.ari.events import AriEvent, UnknownEvent
from hitcall_pbx.stasis import answer_overtakes, is_answer
from tests.unit.test_ari_events import CHANNEL, event


def _ch(cid: str, state: str = "Up") -> dict[str, Any]:
    return {**CHANNEL, "id": cid, "state": state}


def answer(cid: str) -> dict[str, Any]:
    return event("StasisStart", args=["customer", "att"], channel=_ch(cid))


def login(cid: str) -> dict[str, Any]:
    return event("StasisStart", args=["agent-login", "PJSIP/agent1"], channel=_ch(cid))


def hangup(cid: str) -> dict[str, Any]:
    return event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=_ch(cid))


def state(cid: str, value: str) -> dict[str, Any]:
    return event("ChannelStateChange", channel=_ch(cid, value))


def _drain(b: EventBacklog) -> list[tuple[str, str | None, bool]]:
    """Everything in dispatch order, the urgent lane first whenever it has an event."""
    out = []
    while b:
        item = b.take_urgent() or b.take()
        assert item is not None
        out.append((item.data["type"], item.cid, item.urgent))
        b.done(item)
    return out


# ------------------------------------------------------------ the rules ---
def test_the_service_counts_an_outbound_customers_answer_as_urgent_and_nothing_else():
    assert is_answer(answer("c1"))
    assert is_answer(event("StasisStart", args=["amd", "HUMAN", "HUMAN-1"], channel=_ch("c1")))
    assert not is_answer(login("a1"))
    assert not is_answer(event("StasisStart", args=[], channel=_ch("c1")))
    assert not is_answer(hangup("c1"))
    assert answer_overtakes(state("c1", "Up"))
    assert not answer_overtakes(state("c1", "Ringing")) and not answer_overtakes(hangup("c1"))
    assert channel_of(answer("c1")) == "c1" and channel_of({"type": "BridgeDestroyed"}) is None


def test_an_answer_goes_ahead_of_other_channels_events():
    b = EventBacklog(is_answer, answer_overtakes)
    for data in (hangup("x1"), login("a1"), hangup("x2")):
        assert not b.push(data)
    assert b.push(answer("c1"))
    assert _drain(b) == [
        ("StasisStart", "c1", True),
        ("ChannelDestroyed", "x1", False),
        ("StasisStart", "a1", False),
        ("ChannelDestroyed", "x2", False),
    ]


def test_an_answer_passes_its_own_change_to_up_but_no_other_event_of_its_channel():
    b = EventBacklog(is_answer, answer_overtakes)
    b.push(hangup("x1"))
    b.push(state("c1", "Up"))
    assert b.push(answer("c1")), "the Up change is the same news: the answer may pass it"
    assert _drain(b)[0] == ("StasisStart", "c1", True)

    b = EventBacklog(is_answer, answer_overtakes)
    b.push(hangup("x1"))
    b.push(state("c1", "Ringing"))
    assert not b.push(answer("c1")), "an earlier Ringing of its channel is dispatched first"
    assert [t for t, _, _ in _drain(b)] == ["ChannelDestroyed", "ChannelStateChange", "StasisStart"]


def test_an_answer_is_not_urgent_while_an_event_of_its_channel_is_being_dispatched():
    b = EventBacklog(is_answer, answer_overtakes)
    b.push(event("StasisEnd", channel=_ch("c1")))  # back from AMD: the channel left Stasis
    first = b.take()
    assert first is not None
    assert not b.push(answer("c1")), "its StasisEnd is still being handled"
    b.done(first)
    assert b.push(answer("c2")), "another channel's answer is urgent"


def test_the_main_lane_holds_an_event_of_a_channel_whose_answer_is_not_done():
    b = EventBacklog(is_answer, answer_overtakes)
    b.push(answer("c1"))
    b.push(hangup("c1"))
    b.push(hangup("x1"))
    urgent = b.take_urgent()
    assert urgent is not None and urgent.urgent
    assert b.take() is None, "the customer's hang-up waits for its answer"
    b.done(urgent)
    taken = b.take()
    assert taken is not None and (taken.data["type"], taken.cid) == ("ChannelDestroyed", "c1")
    b.done(taken)
    assert _drain(b) == [("ChannelDestroyed", "x1", False)]


def test_without_an_urgent_test_the_order_is_the_order_received():
    b = EventBacklog()
    sent = [hangup("x1"), answer("c1"), login("a1")]
    for data in sent:
        assert not b.push(data)
    assert [d for d, _, _ in _drain(b)] == [d["type"] for d in sent]
    assert not b and isinstance(Taken(None, None, False, False), tuple)


# ------------------------------------------------------------ the client ---
class FakeSocket:
    """What `AriClient._read` iterates: text frames put by the test, then a close."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()

    def send(self, data: dict[str, Any]) -> None:
        self.frames.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, json.dumps(data), None))

    def close(self) -> None:
        self.frames.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None))

    async def __aiter__(self) -> AsyncIterator[aiohttp.WSMessage]:
        while True:
            yield await self.frames.get()


async def _until(cond: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def test_an_answer_is_dispatched_while_the_main_lane_waits_in_a_handler():
    client = AriClient("http://127.0.0.1:1/ari", "u", "p", "hitcall", urgent=is_answer, overtakes=answer_overtakes)
    seen: list[tuple[str, str]] = []
    database = asyncio.Event()  # an agent's login waits for the database

    async def handler(ev: AriEvent | UnknownEvent) -> None:
        cid = ev.channel.id if isinstance(ev, AriEvent) and hasattr(ev, "channel") else ""
        seen.append((ev.type, cid))
        if cid == "a1" and ev.type == "StasisStart":
            await database.wait()

    client.on_event(handler)
    ws = FakeSocket()
    reader = asyncio.create_task(client._read(ws))  # type: ignore[arg-type]  # iterated only
    ws.send(login("a1"))
    await _until(lambda: len(seen) == 1)
    ws.send(hangup("x1"))
    ws.send(state("c1", "Up"))
    ws.send(answer("c1"))
    ws.send(hangup("c1"))
    await _until(lambda: len(seen) == 2)
    await asyncio.sleep(0.01)
    assert seen == [("StasisStart", "a1"), ("StasisStart", "c1")], "the answer did not wait for the login"

    database.set()
    ws.close()
    await asyncio.wait_for(reader, 2)  # returns once every received event is dispatched
    assert seen[2:] == [("ChannelDestroyed", "x1"), ("ChannelStateChange", "c1"), ("ChannelDestroyed", "c1")]
    assert client.stats.events == 5 and client.stats.handler_errors == 0


async def test_a_frame_that_is_not_json_is_counted_and_the_rest_still_dispatched():
    client = AriClient("http://127.0.0.1:1/ari", "u", "p", "hitcall", urgent=is_answer)
    seen: list[str] = []
    client.on_event(lambda ev: seen.append(ev.type))
    ws = FakeSocket()
    ws.frames.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, "{not json", None))
    ws.send(answer("c1"))
    ws.send(hangup("c1"))
    ws.close()
    await asyncio.wait_for(client._read(ws), 2)  # type: ignore[arg-type]  # iterated only
    assert seen == ["StasisStart", "ChannelDestroyed"] and client.stats.unknown_events == 1


async def test_the_bridge_request_an_answer_spawns_goes_out_before_the_next_queued_event():
    """Events received together: the answers are handled first, and the requests their
    handler spawned run before the main lane goes past the one event it was already woken
    for: not after the hang-ups queued ahead of them."""
    client = AriClient("http://127.0.0.1:1/ari", "u", "p", "hitcall", urgent=is_answer, overtakes=answer_overtakes)
    log: list[str] = []
    requests: set[asyncio.Task[None]] = set()

    async def request(cid: str) -> None:
        log.append(f"bridge request {cid}")

    def handler(ev: AriEvent | UnknownEvent) -> None:
        cid = ev.channel.id if isinstance(ev, AriEvent) and hasattr(ev, "channel") else ""
        log.append(f"{ev.type} {cid}")
        if ev.type == "StasisStart":
            requests.add(asyncio.get_running_loop().create_task(request(cid)))

    client.on_event(handler)
    ws = FakeSocket()
    for data in (hangup("x1"), hangup("x2"), answer("c1"), answer("c2"), hangup("x3")):
        ws.send(data)
    ws.close()
    await asyncio.wait_for(client._read(ws), 2)  # type: ignore[arg-type]  # iterated only
    assert log[:2] == ["StasisStart c1", "StasisStart c2"]
    assert log[2:] == [
        "ChannelDestroyed x1",
        "bridge request c1",
        "bridge request c2",
        "ChannelDestroyed x2",
        "ChannelDestroyed x3",
    ]

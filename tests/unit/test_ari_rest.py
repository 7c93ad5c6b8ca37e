"""AriRest against a local aiohttp server that records each request and answers as told."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hitcall_pbx.app import ari_client
from hitcall_pbx.ari import (
    AriBadRequest,
    AriClient,
    AriConflict,
    AriHttpError,
    AriNotFound,
    AriRest,
    AriUnavailable,
    Channel,
)
from hitcall_pbx.ari.rest import ChannelVariables
from hitcall_pbx.settings import load_settings

AUTH = aiohttp.encode_basic_auth("hitcall", "secret")

CHANNEL = {
    "id": "att-1",
    "protocol_id": "",
    "name": "Local/+358401234567@hitcall-outbound-00000001;1",
    "state": "Down",
    "caller": {"name": "", "number": ""},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {"context": "hitcall-outbound", "exten": "+35840123", "priority": 1, "app_name": "", "app_data": ""},
    "creationtime": "2026-11-25T11:40:12.345+0200",
    "language": "en",
}
VARIABLES: ChannelVariables = {"HITCALL_ATTEMPT": "att-1", "CDR(campaign)": {"value": "c7", "report_events": True}}


@dataclass
class Recorded:
    method: str
    raw_path: str
    query: dict[str, str]
    raw_query: str
    body: Any
    headers: dict[str, str]


@dataclass
class FakeAri:
    requests: list[Recorded] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    delay: float = 0.0
    url: str = ""
    originates_wait: asyncio.Event | None = None  # set: originates are answered only once it is

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.originates_wait is not None and request.method == "POST" and request.path.count("/") == 3:
            await self.originates_wait.wait()  # POST /ari/channels/{id}
        raw = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.raw_path.split("?")[0],
                dict(request.query),
                request.query_string,
                json.loads(raw) if raw else None,
                dict(request.headers),
            )
        )
        await asyncio.sleep(self.delay)
        status, body = self.replies.get((request.method, request.path), (204, None))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="audio/wav")
        return web.Response(status=status) if body is None else web.json_response(body, status=status)


@pytest.fixture
async def ari() -> AsyncIterator[tuple[AriRest, FakeAri]]:
    fake = FakeAri()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        fake.url = str(server.make_url("/ari"))
        yield AriRest(session, fake.url, {"Authorization": AUTH}), fake


async def test_originate_sends_query_and_variables_body(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    fake.replies[("POST", "/ari/channels/att-1")] = (200, CHANNEL)

    channel = await rest.originate(
        "Local/+358401234567@hitcall-outbound",
        "att-1",
        app="hitcall",
        app_args=["customer", "att-1"],
        caller_id="HitCall <+358201234567>",
        timeout=30,
        variables=VARIABLES,
    )

    assert isinstance(channel, Channel) and channel.id == "att-1"
    assert channel.creationtime.utcoffset() is not None
    [req] = fake.requests
    assert (req.method, req.raw_path) == ("POST", "/ari/channels/att-1")
    assert req.query == {
        "endpoint": "Local/+358401234567@hitcall-outbound",
        "app": "hitcall",
        "appArgs": "customer,att-1",
        "callerId": "HitCall <+358201234567>",
        "timeout": "30",
    }
    assert "%2B358401234567" in req.raw_query  # a bare "+" would reach Asterisk as a space
    assert req.body == {"variables": VARIABLES}
    assert req.headers["Authorization"] == AUTH


async def test_no_body_without_variables_and_none_dropped(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    await rest.hangup("att-1", reason="normal")
    await rest.continue_in_dialplan("att-1", context="hitcall-info", priority=1)
    assert [(r.method, r.raw_path, r.query, r.body) for r in fake.requests] == [
        ("DELETE", "/ari/channels/att-1", {"reason": "normal"}, None),
        ("POST", "/ari/channels/att-1/continue", {"context": "hitcall-info", "priority": "1"}, None),
    ]


async def test_bools_and_lists_are_encoded(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    await rest.add_channel("agent-7", ["att-1", "att-2"], absorb_dtmf=True, mute=False)
    [req] = fake.requests
    assert req.raw_path == "/ari/bridges/agent-7/addChannel"
    assert req.query == {"channel": "att-1,att-2", "absorbDTMF": "true", "mute": "false"}


async def test_path_parameters_are_percent_encoded(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    fake.replies[("GET", "/ari/recordings/stored/2026/11/a b/file")] = (200, b"RIFF")
    assert await rest.get_stored_file("2026/11/a b") == b"RIFF"
    assert fake.requests[0].raw_path == "/ari/recordings/stored/2026%2F11%2Fa%20b/file"


async def test_create_bridge_with_and_without_id(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    bridge = {
        "id": "agent-7",
        "technology": "simple_bridge",
        "bridge_type": "mixing",
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": "agent 7",
        "channels": [],
        "creationtime": "2026-11-25T11:40:12.345+0000",
    }
    fake.replies[("POST", "/ari/bridges/agent-7")] = (200, bridge)
    fake.replies[("POST", "/ari/bridges")] = (200, bridge)
    assert (await rest.create_bridge("agent-7", name="agent 7")).name == "agent 7"
    await rest.create_bridge(type=["mixing", "dtmf_events"])
    assert [(r.raw_path, r.query) for r in fake.requests] == [
        ("/ari/bridges/agent-7", {"type": "mixing", "name": "agent 7"}),
        ("/ari/bridges", {"type": "mixing,dtmf_events"}),
    ]


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, AriNotFound), (409, AriConflict), (400, AriBadRequest), (422, AriBadRequest), (412, AriHttpError)],
)
async def test_http_errors_are_typed(ari: tuple[AriRest, FakeAri], status: int, error: type[AriHttpError]) -> None:
    rest, fake = ari
    fake.replies[("POST", "/ari/channels/att-1/answer")] = (status, {"message": "Channel not found"})
    with pytest.raises(error) as caught:
        await rest.answer("att-1")
    assert type(caught.value) is error
    assert caught.value.http_status == status
    assert caught.value.message == "Channel not found"
    assert caught.value.endpoint == "channels.answer"


async def test_server_error_without_json(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    fake.replies[("GET", "/ari/asterisk/ping")] = (500, b"boom")
    with pytest.raises(AriHttpError, match="boom") as caught:
        await rest.ping()
    assert caught.value.http_status == 500


async def test_timeout_is_unavailable(ari: tuple[AriRest, FakeAri]) -> None:
    _, fake = ari
    fake.delay = 0.5
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as session:
        with pytest.raises(AriUnavailable):
            await AriRest(session, fake.url, {}).get_channel("att-1")


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        rest = AriRest(session, f"http://127.0.0.1:{port}/ari", {"Authorization": AUTH})
        with pytest.raises(AriUnavailable) as caught:
            await rest.list_channels()
    assert caught.value.http_status is None
    assert caught.value.status == 503


async def test_channel_states_read_ids_states_and_application_without_models(ari):
    rest, fake = ari
    up = CHANNEL | {
        "id": "att-2",
        "state": "Up",
        "dialplan": CHANNEL["dialplan"] | {"app_name": "Stasis", "app_data": "hitcall,customer"},
    }
    partial = {"id": "odd", "state": "Ring"}  # a listing entry the models would refuse
    fake.replies[("GET", "/ari/channels")] = (200, [CHANNEL, up, partial])
    assert await rest.channel_states() == {"att-1": ("Down", ""), "att-2": ("Up", "Stasis"), "odd": ("Ring", "")}
    fake.replies[("GET", "/ari/channels")] = (200, [])
    assert await rest.channel_states() == {}


class RefusingRest(AriRest):
    """A REST half whose originate fails before anything is sent; the rest is the real one."""

    async def originate(self, endpoint: str, channel_id: str, **kw: Any) -> Channel:
        raise AriUnavailable("refused here", endpoint="channels.originate")


async def test_the_client_builds_its_rest_half_with_the_given_factory(ari: tuple[AriRest, FakeAri]) -> None:
    _, fake = ari
    fake.replies[("GET", "/ari/channels")] = (200, [CHANNEL])
    client = AriClient(fake.url, "hitcall", "secret", "hitcall", rest_factory=RefusingRest)
    await client.start_rest()
    try:
        assert isinstance(client.rest, RefusingRest)
        with pytest.raises(AriUnavailable, match="refused here"):
            await client.rest.originate("Local/+358401234567@hitcall-outbound", "att-1", app="hitcall")
        assert [c.id for c in await client.rest.list_channels()] == ["att-1"]
    finally:
        await client.close()
    assert [(r.method, r.raw_path) for r in fake.requests] == [("GET", "/ari/channels")], "nothing originated"
    assert fake.requests[0].headers["Authorization"] == AUTH, "on the client's own session"


def test_the_service_client_follows_the_settings() -> None:
    settings = load_settings(ari_url="http://127.0.0.1:8088/ari/", ari_user="u", ari_password="p", ari_app="app-2")
    client = ari_client(settings)
    assert (client.base_url, client.app) == ("http://127.0.0.1:8088/ari", "app-2")


async def test_bridge_requests_do_not_wait_for_connections_held_by_originates(ari: tuple[AriRest, FakeAri]) -> None:
    """Every connection of the client's pool is held by an originate Asterisk has not answered
    yet: a customer's add-to-bridge still goes out at once, over the answer path's own connections."""
    _, fake = ari
    gate = fake.originates_wait = asyncio.Event()
    for i in range(4):
        fake.replies[("POST", f"/ari/channels/att-{i}")] = (200, {**CHANNEL, "id": f"att-{i}"})
    client = AriClient(fake.url, "hitcall", "secret", "hitcall", pool_limit=2)
    await client.start_rest()
    try:
        held = [
            asyncio.create_task(client.rest.originate("Local/+358401234567@hitcall-outbound", f"att-{i}", app="h"))
            for i in range(4)
        ]
        await asyncio.sleep(0.1)
        await asyncio.wait_for(client.rest.add_channel("agent-7", "att-9"), 2)
        assert not any(t.done() for t in held)
        gate.set()
        await asyncio.gather(*held)
    finally:
        gate.set()
        await client.close()


async def test_the_event_filter_is_the_whole_body(ari: tuple[AriRest, FakeAri]) -> None:
    rest, fake = ari
    app = {"name": "hitcall", "channel_ids": [], "bridge_ids": [], "endpoint_ids": [], "device_names": []}
    disallowed = [{"type": "ChannelVarset"}, {"type": "Dial"}]
    reply = {**app, "events_allowed": [], "events_disallowed": disallowed}
    fake.replies[("PUT", "/ari/applications/hitcall/eventFilter")] = (200, reply)
    got = await rest.filter_events("hitcall", disallowed=["ChannelVarset", "Dial"])
    assert got.events_disallowed == disallowed
    [req] = fake.requests
    assert (req.method, req.raw_path) == ("PUT", "/ari/applications/hitcall/eventFilter")
    assert req.body == {"disallowed": disallowed}

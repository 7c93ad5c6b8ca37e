"""Fault 6: bad input on every boundary of ONE running service (REST + AGI + ARI on the
sandboxed Asterisk), then proof that it is still up: /healthz, /readyz and a real
progressive call bridged to a SIPp agent.

* ARI: a loopback proxy between the service and Asterisk (REST forwarded, events
  WebSocket relayed) inserts garbage, truncated, non-object, unknown, invalid and
  oversized frames into the live event stream.
* REST: oversized bodies (declared and chunked), broken JSON, wrong types, unknown
  fields, non-UTF-8 CSV, invalid phone numbers, a broken CSV import, bad query and
  path parameters.
* AGI: junk, binary, over-long lines, endless environments, half requests,
  disconnects mid-request, garbage replies, a flood of junk connections, a connection
  that never finishes its request, over raw TCP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from yarl import URL

from hitcall_pbx.api.registry import JSON_LIMIT
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_AGI_SECRET
from tests.live import OriginateCounter

from .harness import (
    admin_headers,
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    wait_settled,
)

pytestmark = pytest.mark.asterisk

ASTERISK_HTTP = "http://127.0.0.1:8088"
AGENTS = ["agent161"]
TS = "2026-11-25T12:00:00.000+0000"


# ---------------------------------------------------------------------- ARI ---
class InjectingAriProxy:
    """Loopback proxy for ARI: forwards REST requests to Asterisk, relays the events
    WebSocket, and `inject` inserts frames into the stream the service reads."""

    def __init__(self, upstream: str = ASTERISK_HTTP) -> None:
        self.upstream = upstream
        self.sockets: set[web.WebSocketResponse] = set()
        self.relayed = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ari"

    async def start(self) -> InjectingAriProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def inject(self, frames: list[str | bytes]) -> None:
        assert self.sockets, "no events WebSocket to inject into"
        for ws in list(self.sockets):
            for frame in frames:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        return {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}

    async def _rest(self, request: web.Request) -> web.Response:
        assert self._session is not None
        async with self._session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=self._forward_headers(request),
            data=await request.read(),
        ) as up:
            body = await up.read()
            headers = {"Content-Type": up.headers["Content-Type"]} if "Content-Type" in up.headers else None
            return web.Response(status=up.status, body=body, headers=headers)

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        assert self._session is not None
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        url = URL(self.upstream.replace("http", "ws", 1) + request.raw_path, encoded=True)
        try:
            async with self._session.ws_connect(
                url, headers=self._forward_headers(request), compress=0, max_msg_size=0
            ) as up:
                self.sockets.add(ws)
                service_side = asyncio.create_task(self._service_side(ws, up))
                try:
                    async for msg in up:
                        if msg.type is not aiohttp.WSMsgType.TEXT or ws.closed:
                            break
                        self.relayed += 1
                        await ws.send_str(msg.data)
                finally:
                    service_side.cancel()
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.sockets.discard(ws)
            await ws.close()
        return ws

    @staticmethod
    async def _service_side(ws: web.WebSocketResponse, up: aiohttp.ClientWebSocketResponse) -> None:
        """Read the service's side (that answers its heartbeat pings); when the service
        closes it, close the Asterisk side too."""
        async for _ in ws:
            pass
        await up.close()


def _event(etype: str, **fields: Any) -> str:
    return json.dumps({"type": etype, "application": "hitcall", "timestamp": TS, **fields})


def _channel(cid: str) -> dict[str, Any]:
    return {
        "id": cid,
        "protocol_id": "",
        "name": f"Local/{cid}",
        "state": "Up",
        "caller": {"name": "", "number": ""},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": "x", "exten": "s", "priority": 1, "app_name": "Stasis", "app_data": "hitcall"},
        "creationtime": TS,
        "language": "en",
    }


# Frames the service must reject (counted as unknown events) without losing its socket.
ARI_GARBAGE: list[tuple[str, str]] = [
    ("not JSON", "this is not JSON {"),
    ("truncated JSON", _event("StasisStart", args=["customer"], channel=_channel("t-trunc"))[:57]),
    ("empty frame", ""),
    ("JSON null", "null"),
    ("JSON number", "42"),
    ("JSON array", "[1, 2, 3]"),
    ("JSON string", '"StasisStart"'),
    ("no type", json.dumps({"application": "hitcall", "channel": {}})),
    ("type not a string", json.dumps({"type": 17, "application": "hitcall"})),
    ("unknown event type", _event("HitCallNoSuchEvent", detail={"x": 1})),
    ("StasisStart without channel", _event("StasisStart", args=["customer"])),
    (
        "ChannelDestroyed with text cause",
        _event("ChannelDestroyed", cause="sixteen", cause_txt="x", channel=_channel("t-bad-cause")),
    ),
    (
        "ChannelDtmfReceived with wrong types",
        _event("ChannelDtmfReceived", digit=["1"], duration_ms="long", channel=_channel("t-dtmf")),
    ),
    ("PlaybackFinished without playback", _event("PlaybackFinished")),
    (
        "StasisEnd with a broken timestamp",
        json.dumps(
            {"type": "StasisEnd", "application": "hitcall", "timestamp": "yesterday", "channel": _channel("t-ts")}
        ),
    ),
    ("2 MiB unknown event", _event("HitCallPadding", pad="x" * (2 << 20))),
]
# Well-formed events about channels the service never made: handled, nothing breaks.
ARI_STRAY = [
    (
        "StasisStart of an unknown customer channel",
        _event("StasisStart", args=["customer"], channel=_channel("t-stray-customer")),
    ),
    (
        "ChannelDestroyed of an unknown channel",
        _event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=_channel("t-stray-destroyed")),
    ),
]
ARI_BINARY = b"\x00\xff\xfe binary garbage \x81"


# --------------------------------------------------------------------- REST ---
async def _chunks(total: int, size: int = 256 * 1024):
    sent = 0
    yield b'{"name": "'
    while sent < total:
        yield b"x" * size
        sent += size


def _fields(doc: dict[str, Any]) -> set[str]:
    details = doc.get("details") or {}
    return {f["field"] for f in details.get("fields", [])} | ({details["field"]} if "field" in details else set())


BAD_PHONES = [
    "12",
    "+3584012",
    "not a number",
    "+999123456789",
    "",
    "1" * 65,
    "+358401234567890123",
    "+358401234567;+358401234568",
    "+358-40-abc",
]

BROKEN_CSV = (
    "phone;name;email\n"
    "+358401600001;Valid Person;ok@example.com\n"  # line 2: valid, must not be imported either
    "040 12;Too Short;\n"  # line 3: phone
    "+358401600003;Bad Mail;not-an-email\n"  # line 4: email
    "+358401600004;Too;Many;Columns\n"  # line 5: row
    "+358401600001;Same Number Again;\n"  # line 6: phone (duplicate of line 2)
    '+358401600006;"Unterminated\n'  # line 7: unreadable
)


async def _rest_cases(base: str, headers: dict[str, str], list_id: int) -> list[dict[str, Any]]:
    """Send each bad request; returns one result per case (status, error code, fields)."""
    v1 = f"{base}/api/v1"
    json_h = {**headers, "Content-Type": "application/json"}
    csv_h = {**headers, "Content-Type": "text/csv"}
    cases: list[tuple[str, str, str, dict[str, str], Any]] = [
        ("2 MiB JSON body", "POST", f"{v1}/lists", json_h, json.dumps({"name": "x" * (2 << 20)}).encode()),
        ("8 MiB chunked JSON body, no length", "POST", f"{v1}/lists", json_h, _chunks(8 << 20)),
        (
            "21 MiB CSV import",
            "POST",
            f"{v1}/lists/{list_id}/contacts/import.csv",
            csv_h,
            b"phone\n" + b"+358401234567\n" * ((21 << 20) // 14 + 1),
        ),
        ("truncated JSON", "POST", f"{v1}/lists", json_h, b'{"name": "x", "description": '),
        ("JSON array body", "POST", f"{v1}/lists", json_h, b"[1, 2, 3]"),
        ("wrong types", "POST", f"{v1}/lists", json_h, json.dumps({"name": 12345, "campaign_id": "abc"}).encode()),
        ("100k-character name", "POST", f"{v1}/lists", json_h, json.dumps({"name": "n" * 100_000}).encode()),
        ("unknown field", "POST", f"{v1}/lists", json_h, json.dumps({"name": "ok", "drop_table": True}).encode()),
        ("CSV to the JSON import", "POST", f"{v1}/lists/{list_id}/contacts/import", json_h, b"phone\n+358401\n"),
        ("non-UTF-8 CSV", "POST", f"{v1}/lists/{list_id}/contacts/import.csv", csv_h, b"phone\n\xff\xfe\x00\x81\n"),
        (
            "CSV without phone column",
            "POST",
            f"{v1}/lists/{list_id}/contacts/import.csv",
            csv_h,
            b"name;email\nA;a@example.com\n",
        ),
        ("broken CSV rows", "POST", f"{v1}/lists/{list_id}/contacts/import.csv", csv_h, BROKEN_CSV.encode()),
        ("query limit not a number", "GET", f"{v1}/lists/{list_id}/contacts?limit=lots", headers, None),
        ("query limit out of range", "GET", f"{v1}/lists/{list_id}/contacts?limit=-5", headers, None),
        ("path id beyond bigint", "GET", f"{v1}/lists/99999999999999999999", headers, None),
        ("path id not a number", "GET", f"{v1}/lists/abc", headers, None),
    ]
    cases += [
        (
            f"invalid phone {p!r}",
            "POST",
            f"{v1}/lists/{list_id}/contacts",
            json_h,
            json.dumps({"phone": p, "name": "Bad Number"}).encode(),
        )
        for p in BAD_PHONES
    ]
    results = []
    async with aiohttp.ClientSession() as http:
        for name, method, url, hdrs, body in cases:
            async with http.request(method, url, headers=hdrs, data=body) as resp:
                doc = await resp.json(content_type=None)
                results.append(
                    {
                        "case": name,
                        "status": resp.status,
                        "content_type": resp.content_type,
                        "error": doc.get("error"),
                        "message": doc.get("message"),
                        "fields": _fields(doc),
                        "details": doc.get("details"),
                    }
                )
    return results


# ---------------------------------------------------------------------- AGI ---
def _env(script: str, **extra: str) -> bytes:
    lines = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}?secret={SANDBOX_AGI_SECRET}",  # what the sandbox dialplan sends
        "agi_channel": "PJSIP/test-0001",
        "agi_uniqueid": "1700000000.1",
        **extra,
    }
    return "".join(f"{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


class AgiPeer:
    """One raw TCP connection to the AGI port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.port = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, port: int) -> AgiPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_server(self, timeout: float) -> float:
        """Seconds until the server closed the connection (reading whatever it sends)."""
        started = time.monotonic()
        await asyncio.wait_for(self.reader.read(), timeout)
        return time.monotonic() - started

    def abort(self) -> None:
        self.writer.transport.abort()


async def _agi_cases(port: int) -> list[dict[str, Any]]:
    """Each case: what was sent, the local port (to find the service's log line), and
    how long the server took to end the connection (None: the peer hung up itself)."""
    out: list[dict[str, Any]] = []

    async def closing(name: str, payload: bytes, expect: str) -> None:
        peer = await AgiPeer.open(port)
        await peer.send(payload)
        out.append(
            {
                "case": name,
                "port": peer.port,
                "expect": expect,
                "closed_after_s": round(await peer.closed_by_server(5), 3),
            }
        )
        peer.abort()

    async def hang_up(name: str, payload: bytes, expect: str, read_first: bool = False) -> None:
        peer = await AgiPeer.open(port)
        await peer.send(payload)
        if read_first:  # the script's first command arrives, then the line drops
            assert (await asyncio.wait_for(peer.reader.readline(), 5)).startswith(b"SET VARIABLE")
        peer.abort()
        out.append({"case": name, "port": peer.port, "expect": expect, "closed_after_s": None})

    await closing("HTTP request on the AGI port", b"GET / HTTP/1.1\r\nHost: hitcall\r\n\r\n", "agi_protocol_error")
    await closing("binary junk", b"\x00\xff\x13\x37\x81\n\xde\xad\n", "agi_protocol_error")
    await closing("20 kB line", b"agi_request: " + b"x" * 20_000, "agi_protocol_error")
    await closing("endless environment", b"".join(b"agi_var%d: v\n" % i for i in range(300)), "agi_protocol_error")
    await closing("environment without agi_request", b"agi_channel: PJSIP/x\n\n", "agi_protocol_error")
    await closing("unknown script", _env("drop-tables"), "agi_unknown_script")
    await closing(
        "garbage reply to a command",
        _env("lookup", agi_callerid="+358401600900") + b"999 what?\n",
        "agi_protocol_error",
    )
    await hang_up("half environment, then disconnect", b"agi_network: yes\nagi_netw", "agi_hangup")
    await hang_up("disconnect mid-command", _env("lookup", agi_callerid="+358401600900"), "agi_hangup", read_first=True)
    flood = await asyncio.gather(*(AgiPeer.open(port) for _ in range(50)))
    for peer in flood:
        await peer.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not TLS\n")
    waits = await asyncio.gather(*(p.closed_by_server(10) for p in flood))
    for peer in flood:
        peer.abort()
    out.append(
        {
            "case": "50 concurrent junk connections",
            "ports": [p.port for p in flood],
            # One peer keeps at most 8 connections that have not sent a request: the oldest
            # are closed as new ones come (agi_hangup on theirs, agi_peer_cap on the newcomer's).
            "expect": ("agi_protocol_error", "agi_hangup"),
            "closed_after_s": round(max(waits), 3),
        }
    )
    return out


async def _agi_lookup(port: int, caller: str) -> dict[str, str]:
    """A well-behaved Asterisk running the lookup script: the variables it sets."""
    peer = await AgiPeer.open(port)
    await peer.send(_env("lookup", agi_callerid=caller))
    variables: dict[str, str] = {}
    while line := await asyncio.wait_for(peer.reader.readline(), 5):
        verb, name, value = line.decode().rstrip("\n").split(" ", 3)[1:]
        assert verb == "VARIABLE", line
        variables[name.strip('"')] = value.strip('"')
        await peer.send(b"200 result=1\n")
    peer.abort()
    return variables


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- test ---
async def test_bad_input_on_every_boundary(service_settings, sandbox, hangup_agents, observer, caplog, asterisk_cdrs):
    originates = OriginateCounter()
    proxy = await InjectingAriProxy().start()
    settings = service_settings.model_copy(
        update={"ari_url": proxy.ari_url, "http_port": _free_port(), "agi_port": _free_port()}
    )
    phones = SippAgents(sandbox, AGENTS, port=5161)
    try:
        with capture_logs() as logs:
            options = Options(http=True, agi=True, dialer_tick_s=0.05)
            async with HitCall(settings, options, ari_factory=originates.ari_factory) as app:
                result = await _exercise(app, proxy, phones, observer, originates.sent, logs, asterisk_cdrs)
                # A request still half-sent when the service stops ends quietly with it.
                at_shutdown = await AgiPeer.open(app.agi.port)
                await at_shutdown.send(b"agi_network: yes\n")
                await asyncio.sleep(0.1)
        assert at_shutdown.port in {int(e["peer"].rsplit(":", 1)[1]) for e in logs if e["event"] == "agi_cancelled"}
        at_shutdown.abort()
        loop_errors = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]
        assert loop_errors == [], loop_errors
    finally:
        phones.stop()
        await proxy.close()
    report("bad_input", **result)


async def _exercise(
    app: HitCall,
    proxy: InjectingAriProxy,
    phones: SippAgents,
    observer: Any,
    originated: Counter[str],
    logs: list[dict],
    asterisk_cdrs: Any,
) -> dict[str, Any]:
    pool = app.db.pool
    base = f"http://127.0.0.1:{app.http_port}"
    cid, list_id = await live_campaign(
        pool, "bad-input", agents=AGENTS, numbers=quick_calls(1, start=1600), first_agent_number=1161
    )
    await pool.execute("UPDATE contacts SET name = 'Known Caller' WHERE list_id = $1", list_id)
    phones.start()
    deadline = time.monotonic() + 15
    while len(app.sessions.by_agent) < 1:
        assert time.monotonic() < deadline, "agent did not log in through the proxy"
        await asyncio.sleep(0.05)
    headers = await admin_headers(pool, "bad-input-admin")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/v1/lists", json={"name": "bad input target"}, headers=headers) as r,
    ):
        assert r.status == 201, await r.text()
        target_list = (await r.json())["id"]
    rows_before = await pool.fetchval("SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM contact_lists)")

    # ARI: garbage into the live events stream.
    stats = app.ari.stats
    before = (stats.connects, stats.unknown_events, stats.handler_errors)
    agi_slow = await AgiPeer.open(app.agi.port)  # a request that is never finished, held open throughout
    await agi_slow.send(b"agi_network: yes\n")
    held_since = time.monotonic()
    await proxy.inject([f for _, f in ARI_GARBAGE] + [ARI_BINARY] + [f for _, f in ARI_STRAY])
    await _settle_events(proxy, app)

    rest = await _rest_cases(base, headers, target_list)
    agi = await _agi_cases(app.agi.port)
    injected_done = time.monotonic()

    # Still up: health, a well-behaved AGI session, a real call.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            healthz = r.status
        async with http.get(f"{base}/readyz") as r:
            readyz = r.status
    health_after_s = time.monotonic() - injected_done
    lookup = await _agi_lookup(app.agi.port, quick_calls(1, start=1600)[0])
    await run_campaign(pool, cid)
    await wait_settled(pool, list_id, timeout=20)
    await app.dialer.idle(timeout=10)
    await app.cdr.flush()
    call_after_s = time.monotonic() - injected_done
    rows = await attempts(pool, cid)
    calls = loss_and_duplicates(rows, observer, originated)
    reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
    await agi_slow.closed_by_server(15)
    held_closed_after_s = time.monotonic() - held_since
    agi_slow.abort()
    rows_after = await pool.fetchval("SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM contact_lists)")

    # ---- ARI: every bad frame rejected and logged, the socket kept, nothing else disturbed.
    after = (stats.connects, stats.unknown_events, stats.handler_errors)
    ari_logs = [e for e in logs if e["event"] in ("ari.event_not_json", "ari.event.unknown", "ari.event.invalid")]
    assert after[0] == before[0], "the garbage did not cost the events WebSocket"
    # + 1: the marker event `_settle_events` sends is unknown too.
    assert after[1] - before[1] == len(ARI_GARBAGE) + 1, (after, before)
    handler_errors = after[2] - before[2]
    assert handler_errors == 0, "invalid events of a known type never reach the handlers"
    assert len(ari_logs) == len(ARI_GARBAGE) + 1, [e["event"] for e in ari_logs]
    invalid = {e["event_type"]: e["error"] for e in ari_logs if e["event"] == "ari.event.invalid"}
    assert "cause" in invalid["ChannelDestroyed"] and "digit" in invalid["ChannelDtmfReceived"], invalid
    assert "channel" in invalid["StasisStart"] and "timestamp" in invalid["StasisEnd"], invalid
    assert len(app.sessions.by_agent) == 1, "the agent's session survived the garbage"

    # ---- REST: JSON errors with the right status, naming the field where there is one.
    by_case = {r["case"]: r for r in rest}
    assert all(r["content_type"] == "application/json" and r["error"] and r["message"] for r in rest), rest
    for name in ("2 MiB JSON body", "8 MiB chunked JSON body, no length", "21 MiB CSV import"):
        assert by_case[name]["status"] == 413 and by_case[name]["error"] == "body_too_large", by_case[name]
    assert by_case["2 MiB JSON body"]["details"]["limit_bytes"] == JSON_LIMIT
    for name in ("truncated JSON", "CSV to the JSON import", "non-UTF-8 CSV"):
        assert by_case[name]["status"] == 400 and by_case[name]["error"] == "malformed_body", by_case[name]
    expected_fields = {
        "JSON array body": {"body"},
        "wrong types": {"name", "campaign_id"},
        "100k-character name": {"name"},
        "unknown field": {"drop_table"},
        "CSV without phone column": {"csv"},
        "query limit not a number": {"limit"},
        "query limit out of range": {"limit"},
        "broken CSV rows": {"contacts"},
    }
    expected_fields |= {f"invalid phone {p!r}": {"phone"} for p in BAD_PHONES}
    for name, fields in expected_fields.items():
        assert by_case[name]["status"] == 422 and by_case[name]["fields"] == fields, by_case[name]
    for name in ("path id beyond bigint", "path id not a number"):
        assert by_case[name]["status"] == 404 and by_case[name]["error"] == "not_found", by_case[name]
    csv_report = by_case["broken CSV rows"]["details"]["report"]
    assert by_case["broken CSV rows"]["error"] == "import_rejected" and csv_report["imported"] == 1
    assert [(e["row"], e["field"]) for e in csv_report["errors"]] == [
        (3, "phone"),
        (4, "email"),
        (5, "row"),
        (6, "phone"),
        (7, "row"),
    ], csv_report
    assert rows_after == rows_before, "nothing half-written: no list or contact from any bad request"

    # ---- AGI: every bad connection ended promptly, each with its own log line.
    agi_log = Counter(
        (e["event"], int(e["peer"].rsplit(":", 1)[1])) for e in logs if e["event"].startswith("agi_") and e.get("peer")
    )
    for case in agi:
        expect = case["expect"] if isinstance(case["expect"], tuple) else (case["expect"],)
        for port in case.get("ports", [case.get("port")]):
            ended = sum(agi_log[(event, port)] for event in expect)
            assert ended == 1, (case["case"], case["expect"], port, agi_log)
        assert case["closed_after_s"] is None or case["closed_after_s"] < 2, case
    flood = next(c for c in agi if c["case"] == "50 concurrent junk connections")
    assert sum(agi_log[("agi_peer_cap", p)] for p in flood["ports"]) >= 50 - 8, "the per-peer cap held"
    # The unfinished request held open ended by its 2 s limit, or as the oldest when the flood came.
    assert agi_log[("agi_timeout", agi_slow.port)] + agi_log[("agi_hangup", agi_slow.port)] == 1, agi_log

    # ---- Still up.
    assert healthz == 200 and readyz == 200
    assert lookup["HITCALL_CONTACT_FOUND"] == "1" and lookup["HITCALL_CONTACT_NAME"] == "Known Caller", lookup
    assert calls["attempts"] == 1 and calls["outcomes"] == {"answered_human": 1}, calls
    assert rows[0]["bridged_at"] is not None, "the call was bridged to the agent"
    assert calls["duplicated"] == 0 and calls["lost"] == 0 and calls["open_attempts"] == 0, calls
    assert calls["answered_lost"] == 0 and calls["bridged_lost"] == 0, calls
    assert reconciled["differences"] == [] and reconciled["matched"] == 1, reconciled

    return {
        "injected": {
            "ari_frames": [n for n, _ in ARI_GARBAGE] + ["binary frame"] + [n for n, _ in ARI_STRAY],
            "rest": {r["case"]: f"{r['status']} {r['error']} {sorted(r['fields'])}" for r in rest},
            "agi": [c["case"] for c in agi] + ["unfinished request held open"],
        },
        "ari_unknown_events": after[1] - before[1] - 1,
        "ari_events_relayed": proxy.relayed,
        "ari_reconnects": after[0] - before[0],
        "ari_handler_errors": handler_errors,
        "agi_max_close_s": max(c["closed_after_s"] or 0 for c in agi),
        "agi_unfinished_request_closed_after_s": round(held_closed_after_s, 2),
        "recover_s": round(health_after_s, 3),
        "real_call_done_after_s": round(call_after_s, 2),
        "half_written_rows": rows_after - rows_before,
        "lost": calls["lost"],
        "duplicated": calls["duplicated"],
        "calls": calls,
        "reconcile": reconciled,
    }


async def _settle_events(proxy: InjectingAriProxy, app: HitCall, timeout: float = 10.0) -> None:
    """Wait until the service has read everything injected so far: a marker event it ignores."""
    marker = f"marker-{time.monotonic_ns()}"
    seen = asyncio.Event()

    def watch(event: Any) -> None:
        if getattr(event, "type", None) == marker:
            seen.set()

    app.ari.on_event(watch)
    await proxy.inject([_event(marker)])
    await asyncio.wait_for(seen.wait(), timeout)


async def test_deeply_nested_ari_frame_does_not_end_the_event_stream(service_settings, sandbox):
    """A JSON frame nested deeper than Python's recursion limit makes `json.loads` raise
    RecursionError, not ValueError: the service must drop that frame like any other
    undecodable one and keep reading events."""
    proxy = await InjectingAriProxy().start()
    settings = service_settings.model_copy(update={"ari_url": proxy.ari_url})
    try:
        async with HitCall(settings, Options(dialer_tick_s=0.05)) as app:
            connects = app.ari.stats.connects
            started = time.monotonic()
            await proxy.inject(["[" * 100_000])
            try:
                await _settle_events(proxy, app, timeout=5)
                still_reading = True
            except TimeoutError:
                still_reading = False
            line = report(
                "bad_input_deep_json",
                injected="one ARI event frame of 100000 nested JSON arrays",
                still_reading_events=still_reading,
                ari_connected=app.ari.connected.is_set(),
                reconnects=app.ari.stats.connects - connects,
                recover_s=round(time.monotonic() - started, 3) if still_reading else None,
                lost=0 if still_reading else "every later ARI event",
                duplicated=0,
            )
            assert still_reading and app.ari.connected.is_set(), line
    finally:
        await proxy.close()

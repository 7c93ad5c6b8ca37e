"""An ARI load generator: a stand-in for Asterisk that answers HitCall's ARI requests and
emits the events Asterisk emits, so that one HitCall node can be driven far past what one
Asterisk box carries (benchmarks/node_capacity.py).

It speaks the subset of ARI (Asterisk 22) the service uses, with the same JSON shapes
(`hitcall_pbx.ari.models`) and the same event order the sandboxed Asterisk produces:

* agents: `login(n)` puts n agent phones into Stasis as if each dialled *70
  (StasisStart ``agent-login,<endpoint>``); they stay until the run ends.
* customers: an originate of ``Local/<number>@<context>`` with appArgs creates the ;1
  channel (state Down), rings (ChannelStateChange Ringing) after `ring_delay_s`, then
  either answers after 1-4 s (state Up, StasisStart with the originate's appArgs), is
  busy after 1 s (ChannelDestroyed cause 17), or rings out at the originate's timeout
  (cause 19). The share that answers is `answer_share`. An answered customer talks for
  `talk_s` (uniform) after entering a bridge, then hangs up (ChannelHangupRequest,
  ChannelLeftBridge, StasisEnd, ChannelDestroyed cause 16). A customer never bridged
  hangs up after `talk_s` too.
* bridges: create (with or without id), addChannel (ChannelEnteredBridge), removeChannel
  (ChannelLeftBridge), destroy; channel DELETE (hangup by the service); play (PlaybackStarted,
  PlaybackFinished after 2 s); record (RecordingStarted; RecordingFinished at hangup);
  variables; global variables (empty: no answer stamps); asterisk info / ping / modules.

Anything else answers 404 with the ARI error body and is counted in `unknown`, so a run
shows what the stand-in did not cover. Counters (`stats`) give originates, answers and
the requests per endpoint; the benchmark compares them with the service's own figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

ASTERISK_ID = "00:00:00:00:10:ad"


def _ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


@dataclass
class Behaviour:
    answer_share: float = 0.4
    busy_share: float = 0.2  # of the calls that do not answer
    ring_delay_s: float = 0.02
    answer_after_s: tuple[float, float] = (1.0, 4.0)
    talk_s: tuple[float, float] = (5.0, 20.0)
    seed: int = 1


@dataclass
class Chan:
    id: str
    name: str
    state: str
    app_args: list[str]
    number: str = ""
    caller: str = ""
    bridge: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_ts)
    timer: asyncio.TimerHandle | None = None
    in_stasis: bool = False
    recording: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol_id": "",
            "name": self.name,
            "state": self.state,
            "caller": {"name": "", "number": self.caller},
            "connected": {"name": "", "number": self.number},
            "accountcode": "",
            "dialplan": {"context": "hitcall", "exten": "s", "priority": 1, "app_name": "Stasis", "app_data": ""},
            "creationtime": self.created,
            "language": "en",
        }


@dataclass
class Brg:
    id: str
    name: str
    channels: list[str] = field(default_factory=list)
    created: str = field(default_factory=_ts)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "technology": "simple_bridge",
            "bridge_type": "mixing",
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": self.created,
        }


class AriLoadGen:
    """The stand-in Asterisk: `app()` is the aiohttp application served at /ari."""

    def __init__(self, behaviour: Behaviour, *, app_name: str = "hitcall") -> None:
        self.b = behaviour
        self.app_name = app_name
        self.rng = random.Random(behaviour.seed)
        self.channels: dict[str, Chan] = {}
        self.bridges: dict[str, Brg] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.requests: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.originates = 0
        self.answered = 0
        self.bridged = 0
        self.events_sent = 0
        self._seq = 0
        self._started = time.monotonic()

    # ------------------------------------------------------------ events ---
    def _emit(self, etype: str, **body: Any) -> None:
        msg = json.dumps(
            {"type": etype, "application": self.app_name, "timestamp": _ts(), "asterisk_id": ASTERISK_ID, **body}
        )
        for ws in list(self.sockets):
            if not ws.closed:
                self.events_sent += 1
                asyncio.get_running_loop().create_task(ws.send_str(msg))

    def _later(self, ch: Chan, delay: float, fn: Any, *args: Any) -> None:
        if ch.timer is not None:
            ch.timer.cancel()
        ch.timer = asyncio.get_running_loop().call_later(delay, fn, *args)

    # ------------------------------------------------------------ agents ---
    def login(self, endpoints: list[str]) -> None:
        for ep in endpoints:
            self._seq += 1
            ch = Chan(
                id=f"lg-{self._seq}.{uuid.uuid4().hex[:6]}",
                name=f"PJSIP/{ep}-{self._seq:08x}",
                state="Up",
                app_args=["agent-login", ep],
                caller=ep,
                in_stasis=True,
            )
            self.channels[ch.id] = ch
            self._emit("StasisStart", args=ch.app_args, channel=ch.json())

    # --------------------------------------------------------- customers ---
    def _ring(self, ch: Chan, timeout: float) -> None:
        if ch.id not in self.channels:
            return
        ch.state = "Ringing"
        self._emit("ChannelStateChange", channel=ch.json())
        r = self.rng.random()
        if r < self.b.answer_share:
            self._later(ch, self.rng.uniform(*self.b.answer_after_s), self._answer, ch)
        elif r < self.b.answer_share + (1 - self.b.answer_share) * self.b.busy_share:
            self._later(ch, 1.0, self._destroy, ch, 17, "User busy")
        else:
            self._later(ch, timeout, self._destroy, ch, 19, "No user responding")

    def _answer(self, ch: Chan) -> None:
        if ch.id not in self.channels:
            return
        self.answered += 1
        ch.state = "Up"
        ch.in_stasis = True
        self._emit("ChannelStateChange", channel=ch.json())
        self._emit("StasisStart", args=ch.app_args, channel=ch.json())
        # Hangs up after talking; entering a bridge restarts the clock (see _enter).
        self._later(ch, self.rng.uniform(*self.b.talk_s), self._destroy, ch, 16, "Normal Clearing")

    def _destroy(self, ch: Chan, cause: int, cause_txt: str) -> None:
        if self.channels.pop(ch.id, None) is None:
            return
        if ch.timer is not None:
            ch.timer.cancel()
        self._emit("ChannelHangupRequest", cause=cause, channel=ch.json())
        if ch.bridge and ch.bridge in self.bridges:
            brg = self.bridges[ch.bridge]
            if ch.id in brg.channels:
                brg.channels.remove(ch.id)
            self._emit("ChannelLeftBridge", bridge=brg.json(), channel=ch.json())
        if ch.recording:
            self._emit("RecordingFinished", recording=self._rec_json(ch.recording, ch, "done"))
        if ch.in_stasis:
            self._emit("StasisEnd", channel=ch.json())
        self._emit("ChannelDestroyed", cause=cause, cause_txt=cause_txt, channel=ch.json())

    def _enter(self, brg: Brg, ch: Chan) -> None:
        if ch.bridge and ch.bridge != brg.id and ch.bridge in self.bridges:
            old = self.bridges[ch.bridge]
            if ch.id in old.channels:
                old.channels.remove(ch.id)
            self._emit("ChannelLeftBridge", bridge=old.json(), channel=ch.json())
        ch.bridge = brg.id
        if ch.id not in brg.channels:
            brg.channels.append(ch.id)
        self._emit("ChannelEnteredBridge", bridge=brg.json(), channel=ch.json())
        if not ch.app_args or ch.app_args[0] != "agent-login":
            self.bridged += 1
            self._later(ch, self.rng.uniform(*self.b.talk_s), self._destroy, ch, 16, "Normal Clearing")

    def _rec_json(self, name: str, ch: Chan, state: str) -> dict[str, Any]:
        return {"name": name, "format": "wav", "target_uri": f"channel:{ch.id}", "state": state}

    # -------------------------------------------------------------- HTTP ---
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/ari/{tail:.*}", self._dispatch)
        return app

    @staticmethod
    def _err(status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["tail"].split("/") if p]
        method = request.method
        q = request.query
        shape = "/".join(p if i == 0 or p in _WORDS else "{}" for i, p in enumerate(parts))
        self.requests[f"{method} {shape}"] += 1
        if parts == ["events"]:
            return await self._events(request)
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {}
        head = parts[0] if parts else ""
        try:
            if head == "channels":
                return self._channels(method, parts[1:], q, body)
            if head == "bridges":
                return self._bridges(method, parts[1:], q)
            if head == "asterisk":
                return self._asterisk(parts[1:], q)
            if head == "applications":
                return web.json_response([self._app_json()] if len(parts) == 1 else self._app_json())
            if head == "recordings" and method == "POST" and parts[-1] == "stop":
                return web.Response(status=204)
            if head == "playbacks":
                return web.Response(status=204) if method == "DELETE" else self._err(404, "Playback not found")
        except KeyError:
            return self._err(404, "Not found")
        self.unknown[f"{method} {shape}"] += 1
        return self._err(404, "Resource not found")

    def _app_json(self) -> dict[str, Any]:
        return {
            "name": self.app_name,
            "channel_ids": [],
            "bridge_ids": [],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        }

    def _channels(self, method: str, rest: list[str], q: Any, body: dict[str, Any]) -> web.Response:
        if not rest:
            if method == "GET":
                return web.json_response([c.json() for c in self.channels.values()])
            raise KeyError
        cid = rest[0]
        if len(rest) == 1 and method == "POST":  # originate with id
            if cid in self.channels:
                return self._err(409, "Channel with given unique ID already exists")
            endpoint = q.get("endpoint", "")
            number = endpoint.split("/", 1)[-1].split("@", 1)[0]
            ch = Chan(
                id=cid,
                name=f"{endpoint};1",
                state="Down",
                app_args=[a for a in q.get("appArgs", "").split(",") if a],
                number=number,
                caller=q.get("callerId", ""),
                variables=dict((body or {}).get("variables") or {}),
                in_stasis=False,
            )
            self.channels[cid] = ch
            self.originates += 1
            timeout = float(q.get("timeout", "30"))
            self._later(ch, self.b.ring_delay_s, self._ring, ch, timeout)
            return web.json_response(ch.json())
        ch = self.channels.get(cid)
        if ch is None:
            return self._err(404, "Channel not found")
        if len(rest) == 1:
            if method == "GET":
                return web.json_response(ch.json())
            if method == "DELETE":
                self._destroy(ch, 16, "Normal Clearing")
                return web.Response(status=204)
            raise KeyError
        op = rest[1]
        if op == "variable":
            if method == "GET":
                value = ch.variables.get(q.get("variable", ""))
                return web.json_response({"value": value}) if value is not None else self._err(404, "No variable")
            ch.variables[q.get("variable", "")] = q.get("value", "")
            return web.Response(status=204)
        if op == "play":
            pid = q.get("playbackId") or uuid.uuid4().hex
            pb = {"id": pid, "media_uri": q.get("media", ""), "target_uri": f"channel:{cid}", "state": "playing"}
            self._emit("PlaybackStarted", playback=pb)
            asyncio.get_running_loop().call_later(
                2.0, lambda: self._emit("PlaybackFinished", playback={**pb, "state": "done"})
            )
            return web.json_response(pb, status=201)
        if op == "record":
            name = q.get("name", uuid.uuid4().hex)
            ch.recording = name
            self._emit("RecordingStarted", recording=self._rec_json(name, ch, "recording"))
            return web.json_response(self._rec_json(name, ch, "queued"), status=201)
        if op == "continue":
            # AMD in the dialplan: the customer comes back as a human after 0.5 s.
            ch.in_stasis = False
            self._emit("StasisEnd", channel=ch.json())

            def amd() -> None:
                if ch.id in self.channels:
                    ch.in_stasis = True
                    self._emit("StasisStart", args=["amd", "HUMAN", "HUMAN-1-1"], channel=ch.json())

            asyncio.get_running_loop().call_later(0.5, amd)
            return web.Response(status=204)
        if op in ("answer", "ring", "moh", "hold", "mute", "dtmf", "silence"):
            return web.Response(status=204)
        raise KeyError

    def _bridges(self, method: str, rest: list[str], q: Any) -> web.Response:
        if not rest:
            if method == "GET":
                return web.json_response([b.json() for b in self.bridges.values()])
            if method == "POST":
                brg = Brg(id=q.get("bridgeId") or uuid.uuid4().hex, name=q.get("name", ""))
                self.bridges[brg.id] = brg
                return web.json_response(brg.json())
            raise KeyError
        bid = rest[0]
        if len(rest) == 1:
            if method == "POST":
                if bid in self.bridges:
                    return web.json_response(self.bridges[bid].json())
                brg = Brg(id=bid, name=q.get("name", ""))
                self.bridges[bid] = brg
                return web.json_response(brg.json())
            brg = self.bridges.get(bid)
            if brg is None:
                return self._err(404, "Bridge not found")
            if method == "GET":
                return web.json_response(brg.json())
            if method == "DELETE":
                del self.bridges[bid]
                return web.Response(status=204)
            raise KeyError
        brg = self.bridges.get(bid)
        if brg is None:
            return self._err(404, "Bridge not found")
        op = rest[1]
        if op in ("addChannel", "removeChannel"):
            ids = [c for c in q.get("channel", "").split(",") if c]
            chans = [self.channels.get(c) for c in ids]
            if any(c is None for c in chans):
                return self._err(422, "Channel not found")
            for ch in chans:
                assert ch is not None
                if op == "addChannel":
                    self._enter(brg, ch)
                elif ch.id in brg.channels:
                    brg.channels.remove(ch.id)
                    ch.bridge = None
                    self._emit("ChannelLeftBridge", bridge=brg.json(), channel=ch.json())
            return web.Response(status=204)
        if op == "record":
            rec = {
                "name": q.get("name", uuid.uuid4().hex),
                "format": "wav",
                "target_uri": f"bridge:{bid}",
                "state": "queued",
            }
            self._emit("RecordingStarted", recording={**rec, "state": "recording"})
            return web.json_response(rec, status=201)
        if op in ("moh", "play"):
            return web.Response(status=204)
        raise KeyError

    def _asterisk(self, rest: list[str], q: Any) -> web.Response:
        what = rest[0] if rest else ""
        if what == "info":
            now = _ts()
            return web.json_response(
                {
                    "system": {"version": "22.0.0-loadgen", "entity_id": ASTERISK_ID},
                    "status": {"startup_time": now, "last_reload_time": now},
                }
            )
        if what == "ping":
            return web.json_response({"asterisk_id": ASTERISK_ID, "ping": "pong", "timestamp": _ts()})
        if what == "variable":
            return web.json_response({"value": ""})
        if what == "modules":
            mods = [
                {"name": m, "description": m, "use_count": 0, "status": "Running", "support_level": "core"}
                for m in _MODULES
            ]
            if len(rest) > 1:
                return web.json_response(next((m for m in mods if m["name"] == rest[1]), mods[0]))
            return web.json_response(mods)
        raise KeyError

    async def _events(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.sockets.discard(ws)
        return ws

    def snapshot(self) -> dict[str, Any]:
        customers = [c for c in self.channels.values() if c.name.startswith("Local/")]
        return {
            "channels": len(self.channels),
            "customer_calls": len(customers),
            "customer_up": sum(1 for c in customers if c.state == "Up"),
            "agent_legs": sum(1 for c in self.channels.values() if c.app_args[:1] == ["agent-login"]),
        }


_WORDS = frozenset(
    [
        "addChannel",
        "removeChannel",
        "variable",
        "play",
        "record",
        "continue",
        "answer",
        "ring",
        "moh",
        "hold",
        "mute",
        "dtmf",
        "silence",
        "info",
        "ping",
        "modules",
        "stop",
        "snoop",
        "live",
        "stored",
        "file",
    ]
)
_MODULES = (
    "res_ari.so",
    "res_stasis.so",
    "res_stasis_recording.so",
    "res_stasis_playback.so",
    "res_stasis_snoop.so",
    "app_amd.so",
    "chan_pjsip.so",
    "cdr_csv.so",
)


async def serve(gen: AriLoadGen, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start the stand-in on host:port (0 = a free port); returns the runner and the port."""
    runner = web.AppRunner(gen.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []
    return runner, sockets[0].getsockname()[1]

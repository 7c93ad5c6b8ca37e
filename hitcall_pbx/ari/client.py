"""ARI connection: one aiohttp session for REST, the events WebSocket, reconnect + resync.

Asterisk does not buffer events while the socket is down, so after every
(re)connect the client reads `GET /channels` and `GET /bridges` and hands them
to the resync handler before any new event is dispatched. Events are dispatched
one at a time, in the order Asterisk sent them; the types in `ignore_events` (by
default `NOT_HANDLED`, the ones no part of the service handles: variable sets,
dialplan steps, dial progress, caller-id and connected-line updates, most of the
stream) are not sent at all: after every connect the client sets the application's
event filter in Asterisk (`PUT /applications/{app}/eventFilter`), so Asterisk neither
serialises nor writes them and a customer's StasisStart is not queued behind them, in
Asterisk or here. Should the filter fail (it is logged), the same types are counted and
dropped here before they are validated or handed to a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from ..core.backoff import Backoff
from ..logs import get_logger
from .errors import AriError
from .events import AriEvent, UnknownEvent, parse_event
from .models import Bridge, Channel
from .rest import AriRest

log = get_logger("hitcall.ari")

EventHandler = Callable[[AriEvent | UnknownEvent], Awaitable[None] | None]

NOT_HANDLED: frozenset[str] = frozenset(
    {"ChannelVarset", "ChannelDialplan", "Dial", "ChannelCallerId", "ChannelConnectedLine"}
)


@dataclass(frozen=True)
class Resync:
    """What Asterisk holds right after a (re)connect."""

    channels: list[Channel]
    bridges: list[Bridge]
    reconnect: bool
    downtime_s: float | None


ResyncHandler = Callable[[Resync], Awaitable[None] | None]


class RestFactory(Protocol):
    """Builds the REST half from the client's session, base URL, extra headers and the session
    for urgent requests: `AriRest`, or a subclass of it that observes or fails requests."""

    def __call__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        *,
        urgent: aiohttp.ClientSession | None = None,
    ) -> AriRest: ...


@dataclass
class AriStats:
    connects: int = 0
    reconnects: int = 0
    events: int = 0
    ignored_events: int = 0
    unknown_events: int = 0
    handler_errors: int = 0
    last_reconnect_s: float | None = None
    connected_since: float | None = None
    reconnect_times: list[float] = field(default_factory=list)


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None and asyncio.iscoroutine(value):
        await value


class AriClient:
    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        pool_limit: int = 32,
        backoff: Backoff = Backoff(base=0.05, cap=1.0),
        heartbeat: float = 5.0,
        request_timeout: float = 10.0,
        rng: random.Random | None = None,
        rest_factory: RestFactory = AriRest,
        ignore_events: frozenset[str] = NOT_HANDLED,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ignore_events = ignore_events
        self.app = app
        self._headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
        self._pool_limit = pool_limit
        self._backoff = backoff
        self._heartbeat = heartbeat
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._rng = rng or random.Random()
        self._rest_factory = rest_factory
        self._session: aiohttp.ClientSession | None = None
        self._urgent_session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None
        self._rest: AriRest | None = None
        self._task: asyncio.Task[None] | None = None
        self._handlers: list[EventHandler] = []
        self._resync_handlers: list[ResyncHandler] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.stats = AriStats()

    # ----------------------------------------------------------- wiring ---
    def on_event(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def on_resync(self, handler: ResyncHandler) -> None:
        self._resync_handlers.append(handler)

    @property
    def rest(self) -> AriRest:
        if self._rest is None:
            raise RuntimeError("AriClient.start() has not been called")
        return self._rest

    @property
    def ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        return f"{ws_scheme}://{rest}/events"

    async def start_rest(self) -> None:
        """Open the REST session only (no events, the app is not registered)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=self._pool_limit, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
        # The answer path's bridge requests get connections of their own: a wave of answers
        # must not wait for connections held by a burst of originates (which Asterisk answers
        # only once the channel exists), nor the originates for them.
        urgent = aiohttp.TCPConnector(limit=self._pool_limit, keepalive_timeout=30)
        self._urgent_session = aiohttp.ClientSession(connector=urgent, timeout=self._timeout, headers=self._headers)
        self._rest = self._rest_factory(self._session, self.base_url, {}, urgent=self._urgent_session)

    async def start_events(self, *, wait: float | None = None) -> None:
        """Start the events loop (registers the Stasis app); optionally wait for the first connect."""
        await self.start_rest()
        if self._task is None:
            # The WebSocket gets its own session so a full REST pool never starves it.
            self._ws_session = aiohttp.ClientSession(headers=self._headers)
            self._task = asyncio.create_task(self._run(), name="ari-events")
        if wait is not None:
            await asyncio.wait_for(self.connected.wait(), wait)

    async def start(self, *, wait: float | None = None) -> None:
        await self.start_events(wait=wait)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for sess in (self._session, self._urgent_session, self._ws_session):
            if sess is not None:
                await sess.close()
        self.connected.clear()

    async def __aenter__(self) -> AriClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def drop_connection(self) -> None:
        """Close the events socket as if the network had cut it (the loop reconnects)."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    # ------------------------------------------------------------- loop ---
    async def _run(self) -> None:
        attempt = 0
        down_since: float | None = None
        ever_connected = False
        assert self._ws_session is not None
        while not self._closing:
            try:
                ws = await self._ws_session.ws_connect(
                    self.ws_url,
                    params={"app": self.app, "subscribeAll": "false"},
                    heartbeat=self._heartbeat,
                    max_msg_size=16 * 1024 * 1024,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                log.warning(
                    "ari.connect_failed",
                    error=str(exc) or type(exc).__name__,
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            self._ws = ws
            attempt = 0
            downtime = time.monotonic() - down_since if down_since is not None else None
            self.stats.connects += 1
            if ever_connected:
                self.stats.reconnects += 1
                self.stats.last_reconnect_s = downtime
                if downtime is not None:
                    self.stats.reconnect_times.append(downtime)
            await self._filter_events()
            try:
                await self._resync(reconnect=ever_connected, downtime=downtime)
            except AriError as exc:
                log.warning("ari.resync_failed", error=str(exc))
                await ws.close()
                down_since = down_since or time.monotonic()
                continue
            self.stats.connected_since = time.monotonic()
            self.connected.set()
            log.info(
                "ari.connected",
                app=self.app,
                reconnect=ever_connected,
                downtime_s=round(downtime, 3) if downtime is not None else None,
            )
            ever_connected = True
            down_since = None
            try:
                await self._read(ws)
            except Exception:
                # Whatever a frame did, the event stream must not end: reconnect and resync.
                log.exception("ari.read_failed")
                await ws.close()
            finally:
                self.connected.clear()
                self._ws = None
                if not self._closing:
                    down_since = time.monotonic()
                    log.warning("ari.disconnected", app=self.app)

    async def _filter_events(self) -> None:
        if not self.ignore_events:
            return
        try:
            await self.rest.filter_events(self.app, disallowed=sorted(self.ignore_events))
        except AriError as exc:
            # Not fatal: the same types are still dropped here, at a cost per event.
            log.warning("ari.event_filter_failed", error=str(exc))

    async def _resync(self, *, reconnect: bool, downtime: float | None) -> None:
        channels = await self.rest.list_channels()
        bridges = await self.rest.list_bridges()
        snapshot = Resync(channels=channels, bridges=bridges, reconnect=reconnect, downtime_s=downtime)
        for handler in self._resync_handlers:
            try:
                await _maybe_await(handler(snapshot))
            except Exception:
                self.stats.handler_errors += 1
                log.exception("ari.resync_handler_failed")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self._dispatch_text(msg.data)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break

    async def _dispatch_text(self, text: str) -> None:
        try:
            data: Any = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            self.stats.unknown_events += 1
            log.warning("ari.event_not_json", size=len(text))
            return
        if isinstance(data, dict) and data.get("type") in self.ignore_events:
            self.stats.ignored_events += 1
            return
        event = parse_event(data)
        self.stats.events += 1
        if isinstance(event, UnknownEvent):
            self.stats.unknown_events += 1
            if event.error is not None:
                # A known type that failed validation (logged by the parser): handlers only
                # ever see well-formed events of the types they branch on.
                return
        for handler in self._handlers:
            try:
                await _maybe_await(handler(event))
            except Exception:
                self.stats.handler_errors += 1
                log.exception("ari.event_handler_failed", event_type=getattr(event, "type", None))

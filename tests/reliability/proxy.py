"""A loopback TCP proxy in front of Asterisk's HTTP port that can cut the ARI events
WebSocket while REST (and Asterisk) stay up: the network fault of a real deployment."""

from __future__ import annotations

import asyncio
import contextlib
import time

EVENTS_PATH = b"/ari/events"


class LoopbackProxy:
    """Forwards 127.0.0.1:<port> to the upstream; each client connection is one upstream one.

    `cut(hold_s)` resets every open events WebSocket and refuses new ones for `hold_s`
    seconds (the client sees a dropped connection, then failed reconnects)."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 8088) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port: int | None = None
        self.ws_connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ws_writers: set[asyncio.StreamWriter] = set()
        self._refuse_ws_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ari"

    async def start(self) -> LoopbackProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self, hold_s: float) -> int:
        """Drop the open events WebSockets; returns how many connections were dropped."""
        self.cuts += 1
        self._refuse_ws_until = time.monotonic() + hold_s
        dropped = len(self._ws_writers) // 2
        for writer in list(self._ws_writers):
            writer.transport.abort()
        return dropped

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        pair = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            pair.append(up_writer)
            self._writers.add(up_writer)
            await asyncio.gather(self._requests(reader, pair), self._pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            for w in pair:
                self._writers.discard(w)
                self._ws_writers.discard(w)
                w.transport.abort()
            self._tasks.discard(task)

    async def _requests(self, src: asyncio.StreamReader, pair: list[asyncio.StreamWriter]) -> None:
        """Client to upstream; a request for the events path marks the connection as the
        WebSocket (aiohttp may upgrade a kept-alive connection), refused while a cut holds."""
        client, upstream = pair
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if data.startswith(b"GET ") and EVENTS_PATH in data.split(b"\r\n", 1)[0]:
                    if time.monotonic() < self._refuse_ws_until:
                        break
                    self.ws_connections += 1
                    self._ws_writers.update(pair)
                upstream.write(data)
                await upstream.drain()
        client.transport.abort()
        upstream.transport.abort()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        # One side closed: close the other (aborting it ends the opposite pipe too).
        dst.transport.abort()

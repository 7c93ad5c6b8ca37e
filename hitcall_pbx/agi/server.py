"""asyncio FastAGI server: dialplan ``AGI(agi://host:4573/<script>?secret=<secret>)`` runs a handler.

Every request carries the shared secret (``HITCALL_AGI_SECRET``, the dialplan's global of
the same name) in the script URL's query; it is compared in constant time, and a request
without it or with another one gets nothing (no lookup, no opt-out) and is logged
(``agi_refused``, never with the secret). Every connection is bounded (line length,
environment size, time to send the environment, time per reply, whole-session time,
number of sessions). A connection that has not sent its request yet holds no session
slot: each peer may keep `max_pending_per_peer` of those (opening more closes its
oldest) and each is cut after `env_timeout`, so idle connections cannot block Asterisk's.
Whatever a peer sends, an error ends only that connection and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from ..logs import get_logger
from .protocol import MAX_LINE, AgiError, AgiHangup, AgiSession

Handler = Callable[[AgiSession, asyncpg.Pool], Awaitable[None]]

_log = get_logger("hitcall.agi")

AGI_UNCONFIGURED = (
    "HITCALL_AGI_SECRET is required to run FastAGI (the same value as HITCALL_AGI_SECRET in the dialplan's [globals])"
)


class AgiServer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        host: str,
        port: int,
        handlers: Mapping[str, Handler],
        *,
        secret: str,
        session_timeout: float = 600.0,
        env_timeout: float = 2.0,
        reply_timeout: float = 120.0,
        max_sessions: int = 200,
        max_pending_per_peer: int = 8,
        max_pending: int = 256,
    ) -> None:
        if not secret:
            raise ValueError("the FastAGI server needs a secret (HITCALL_AGI_SECRET)")
        self._secret = secret.encode()
        self._max_pending_per_peer = max_pending_per_peer
        self._max_pending = max_pending
        self._pending: dict[asyncio.StreamWriter, str] = {}  # connections before their request -> peer, oldest first
        self._pool = pool
        self._host = host
        self._port = port
        self._handlers = dict(handlers)
        self._session_timeout = session_timeout
        self._env_timeout = env_timeout
        self._reply_timeout = reply_timeout
        self._slots = asyncio.Semaphore(max_sessions)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("AGI server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=MAX_LINE, reuse_address=True
        )
        _log.info("agi_listening", host=self._host, port=self.port, scripts=sorted(self._handlers))

    async def close(self) -> None:
        """Stop listening and end the sessions still running."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        log = _log.bind(peer=f"{peer[0]}:{peer[1]}" if peer else None)
        try:
            self._admit(address, writer, log)
            try:
                agi = await AgiSession.open(
                    reader, writer, env_timeout=self._env_timeout, reply_timeout=self._reply_timeout
                )
            finally:
                self._release(writer)
            log = log.bind(script=agi.script, channel=agi.uniqueid)
            refusal = self._check_secret(agi)
            if refusal is not None:
                log.warning("agi_refused", reason=refusal)
                return
            if self._slots.locked():
                log.warning("agi_busy")
                return
            async with self._slots, asyncio.timeout(self._session_timeout):
                handler = self._handlers.get(agi.script)
                if handler is None:
                    log.warning("agi_unknown_script")
                    return
                await handler(agi, self._pool)
                log.debug("agi_done")
        except AgiHangup as exc:
            log.info("agi_hangup", reason=str(exc))
        except AgiError as exc:
            log.warning("agi_protocol_error", error=str(exc))
        except TimeoutError:
            log.warning("agi_timeout")
        except asyncio.CancelledError:
            # `close` ended the session. Not re-raised: this is the connection's own task,
            # and asyncio's stream callback logs a cancelled one as an error (Python 3.11).
            log.info("agi_cancelled")
        except Exception:
            log.exception("agi_handler_failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ------------------------------------------------------- before the request ---
    def _admit(self, address: str, writer: asyncio.StreamWriter, log: Any) -> None:
        """Count a connection that has not sent its request yet. A peer at its cap, or the
        server at its own, loses its oldest such connection: the newest (e.g. Asterisk's real
        request, sent at once) is served, and an idle one lasts at most `env_timeout`."""
        mine = [w for w, a in self._pending.items() if a == address]
        if len(mine) >= self._max_pending_per_peer:
            self._evict(mine[0])
            log.warning("agi_peer_cap", closed_oldest=True, per_peer=self._max_pending_per_peer)
        elif len(self._pending) >= self._max_pending:
            self._evict(next(iter(self._pending)))
            log.warning("agi_pending_cap", closed_oldest=True, pending=self._max_pending)
        self._pending[writer] = address

    def _evict(self, writer: asyncio.StreamWriter) -> None:
        del self._pending[writer]
        writer.transport.abort()

    def _release(self, writer: asyncio.StreamWriter) -> None:
        self._pending.pop(writer, None)

    def _check_secret(self, agi: AgiSession) -> str | None:
        """None when the request carries the secret; else why not (never the value). The
        secret is then removed from the session's environment."""
        given = agi.take_param("secret")
        if given is None:
            return "missing_secret"
        if not hmac.compare_digest(given.encode(), self._secret):
            return "wrong_secret"
        return None

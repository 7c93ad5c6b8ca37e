"""asyncio FastAGI server: dialplan ``AGI(agi://host:4573/<script>)`` runs a handler.

Every connection is bounded (line length, environment size, time to send the
environment, time per reply, whole-session time, number of sessions), and whatever a
peer sends, an error ends only that connection and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import asyncpg

from ..logs import get_logger
from .protocol import MAX_LINE, AgiError, AgiHangup, AgiSession

Handler = Callable[[AgiSession, asyncpg.Pool], Awaitable[None]]

_log = get_logger("hitcall.agi")


class AgiServer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        host: str,
        port: int,
        handlers: Mapping[str, Handler],
        *,
        session_timeout: float = 600.0,
        env_timeout: float = 10.0,
        reply_timeout: float = 120.0,
        max_sessions: int = 200,
    ) -> None:
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
        log = _log.bind(peer=f"{peer[0]}:{peer[1]}" if peer else None)
        try:
            if self._slots.locked():
                log.warning("agi_busy")
                return
            async with self._slots, asyncio.timeout(self._session_timeout):
                agi = await AgiSession.open(
                    reader, writer, env_timeout=self._env_timeout, reply_timeout=self._reply_timeout
                )
                log = log.bind(script=agi.script, channel=agi.uniqueid)
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

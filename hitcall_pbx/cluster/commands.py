"""Commands from one node to another through PostgreSQL (table node_commands, migration 0020).

A REST request for live control (pause an agent, hang up a call, monitor ...) may reach a
node that does not drive the agent's or call's Asterisk. `CommandBus.call` writes a command
row addressed to the node that does, wakes it with NOTIFY and waits for the answer; that
node's `serve` loop takes the row (pending -> running, at most once, never after its
deadline), runs the method on its own controls with the original actor and writes the
result or the error, which `call` returns or raises as the same kind of error (status,
code, message and details kept). A node that is gone (its lease lapsed) or does not take
the command before its deadline is answered with 503 ``node_unavailable`` naming it.

Nothing here opens a network connection to another node: the only address used is the
database's. What a command carries is kept no longer than it is needed: its arguments (a
number dialled by hand, a transfer's number, a skip reason) are cleared when it is done;
its answer once the caller has read it (or a minute later); an error then keeps its kind,
status and code only. The rows go after a day.

The bus keeps one connection of its own for LISTEN (reconnected when it breaks) and uses
the pool for everything else. Notifications only make things fast: a node also looks for
commands addressed to it every `sweep_s`, and a caller reads its command's row every
`poll_s`, so a notification lost while the listening connection was down costs a delay,
not a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.backoff import Backoff
from ..errors import (
    ConfigError,
    Conflict,
    Forbidden,
    HitCallError,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from ..logs import get_logger
from ..tasks import TaskSet
from .listen import Listener
from .methods import METHODS, LocalPorts, Method

__all__ = [
    "COMMANDS_CHANNEL",
    "DONE_CHANNEL",
    "CommandBus",
    "decode_error",
    "encode_error",
    "node_unavailable",
    "prune",
]

log = get_logger("hitcall.cluster.commands")

COMMANDS_CHANNEL = "hitcall_node_commands"  # payload: the node id a command was written for
DONE_CHANNEL = "hitcall_node_command_done"  # payload: the id of a command done or failed
KEEP_COMMANDS = "1 day"
CLEAR_LEFTOVERS_AFTER = "1 minute"

Connect = Callable[[], Awaitable[asyncpg.Connection]]

# ------------------------------------------------------------------- errors

# The kinds an error travels as (the first of these in the raised error's classes).
_KINDS: dict[str, type[HitCallError]] = {
    cls.__name__: cls
    for cls in (ValidationFailed, NotFound, Conflict, Forbidden, Unauthorized, Unavailable, ConfigError)
}


def _jsonable(value: Any) -> Any:
    """Error details as JSON: ids, times and enums as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    return str(value)


def encode_error(exc: HitCallError) -> dict[str, Any]:
    kind = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _KINDS and _KINDS[c.__name__] is c), None)
    return {
        "kind": kind or "HitCallError",
        "status": exc.status,
        "code": exc.code,
        "message": exc.message,
        "details": _jsonable(exc.details),
    }


def decode_error(data: Mapping[str, Any]) -> HitCallError:
    cls = _KINDS.get(str(data.get("kind")), HitCallError)
    exc = cls(str(data["message"]), details=data.get("details"), code=str(data["code"]))
    status = int(data["status"])
    if exc.status != status:
        exc.status = status
    return exc


def node_unavailable(node_id: str, reason: str, **details: Any) -> Unavailable:
    messages = {
        "gone": f"node {node_id}, which drives this agent or call, is not running (it has no live lease)",
        "no_answer": f"node {node_id}, which drives this agent or call, did not take the request in time",
        "outcome_unknown": f"node {node_id} took the request but did not answer in time; its outcome is unknown",
    }
    return Unavailable(
        messages[reason], code="node_unavailable", details={"node_id": node_id, "reason": reason, **details}
    )


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {"name": actor.name, "role": actor.role, "source_ip": actor.source_ip}


def _actor(data: Mapping[str, Any]) -> Actor:
    return Actor(str(data["name"]), str(data["role"]), data.get("source_ip"))


# ---------------------------------------------------------------------- SQL

_INSERT = """
INSERT INTO node_commands (id, node_id, from_node, method, args, actor, deadline)
SELECT $1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)
WHERE EXISTS (SELECT 1 FROM nodes WHERE node_id = $2 AND lease_until > now())
RETURNING true
"""
_READ = """
SELECT c.state, c.result, c.error,
       EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = c.node_id AND n.lease_until > now()) AS node_live
FROM node_commands c WHERE c.id = $1
"""
_EXPIRE = """
UPDATE node_commands SET state = 'expired', done_at = now(), args = NULL, actor = actor - 'source_ip'
WHERE id = $1 AND state = 'pending' RETURNING true
"""
# Once read, the answer goes (a transfer's answer names the number) and an error keeps its kind and code
# only (its message and details may name the number dialled or the person).
_ERROR_CODE_ONLY = "jsonb_build_object('kind', error->'kind', 'status', error->'status', 'code', error->'code')"
_CONSUMED = f"""
UPDATE node_commands SET result = NULL, error = CASE WHEN error IS NULL THEN NULL ELSE {_ERROR_CODE_ONLY} END
WHERE id = $1 AND (result IS NOT NULL OR error IS NOT NULL)
"""
# Taken and committed before the method runs: a command runs at most once, and only before its deadline.
_TAKE = """
UPDATE node_commands c SET state = 'running', taken_at = now()
FROM (SELECT id FROM node_commands
      WHERE node_id = $1 AND state = 'pending' AND deadline > now()
      ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) t
WHERE c.id = t.id
RETURNING c.id, c.method, c.args, c.actor, c.from_node
"""
_FINISH = """
WITH u AS (
    UPDATE node_commands SET state = $2, done_at = now(), result = $3, error = $4, args = NULL,
                             actor = actor - 'source_ip'
    WHERE id = $1 AND state = 'running' RETURNING id)
SELECT pg_notify($5, id::text) FROM u
"""


async def prune(pool: asyncpg.Pool) -> int:
    """Commands are kept a day; a pending one past its deadline is expired (nobody waits for
    it any more) and answers left behind (a caller that went away) are cleared after a
    minute, as the caller clears them once read: no result, an error's kind and code only.
    Safe to run on every node at once. Returns how many were deleted."""
    async with pool.acquire() as conn:
        await conn.execute(
            f"""UPDATE node_commands SET state = 'expired', done_at = now(), args = NULL, actor = actor - 'source_ip'
                WHERE state = 'pending' AND deadline < now() - interval '{CLEAR_LEFTOVERS_AFTER}'"""
        )
        await conn.execute(
            f"""UPDATE node_commands SET result = NULL,
                       error = CASE WHEN error IS NULL THEN NULL ELSE {_ERROR_CODE_ONLY} END
                WHERE (result IS NOT NULL OR error ? 'message')
                  AND done_at < now() - interval '{CLEAR_LEFTOVERS_AFTER}'"""
        )
        deleted: str = await conn.execute(
            f"DELETE FROM node_commands WHERE created_at < now() - interval '{KEEP_COMMANDS}'"
        )
    return int(deleted.split()[-1])


@dataclass
class _Waiter:
    wake: asyncio.Event  # set by the command's done NOTIFY (and when listening starts again)


class CommandBus:
    """Commands to other nodes (`call`) and, once `serve` is called, from them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        node_id: str,
        connect: Connect,
        *,
        methods: Mapping[str, Method[Any]] = METHODS,
        timeout_s: float = 5.0,
        run_grace_s: float = 10.0,
        poll_s: float = 0.5,
        sweep_s: float = 2.0,
        prune_every_s: float = 600.0,
        batch: int = 32,
    ) -> None:
        if timeout_s <= 0 or run_grace_s < 0 or poll_s <= 0 or sweep_s <= 0:
            raise ValueError("timeouts and intervals must be positive")
        self.pool = pool
        self.node_id = node_id
        self._connect = connect
        self.methods = methods
        self.timeout_s = timeout_s
        self.run_grace_s = run_grace_s
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self.prune_every_s = prune_every_s
        self.batch = batch
        self._waiting: dict[uuid.UUID, _Waiter] = {}
        self._local: LocalPorts | None = None
        self._settle: Callable[[], Awaitable[None]] | None = None
        self._wake = asyncio.Event()
        self._listener = Listener(
            connect,
            {DONE_CHANNEL: self._on_done, COMMANDS_CHANNEL: self._on_command},
            name="node_commands",
            keepalive_s=sweep_s * 5,
            on_up=self._listening_again,
        )
        self._tasks = TaskSet("node_commands")
        self._running = TaskSet("node_commands.run")
        self._closing = False
        self._started = False
        self._backoff = Backoff(base=0.2, cap=5.0)

    # -------------------------------------------------------------- life ---
    async def start(self, *, wait_s: float = 5.0) -> None:
        """Open the listening connection (retried in the background while the database is
        away); returns once it listens or after `wait_s`."""
        if self._started:
            return
        self._started = True
        self._tasks.spawn(self._listener.run())
        self._tasks.spawn(self._serve_loop())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener.listening.wait(), wait_s)

    async def serve(
        self,
        control: Any,
        monitoring: Any = None,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
        peer: Any = None,
    ) -> None:
        """Run the commands addressed to this node on `control` (api.deps.DialerControl),
        `monitoring` (api.deps.MonitoringControl) and `peer` (methods.PeerPort: agents
        reserved for callers on other servers), including those written while it was not
        listening whose deadline has not passed. `settle` is awaited after each command,
        before its answer is written: the node's write-behind writes (agent states go
        through the call journal), so that what the caller reads next is what the command did."""
        self._settle = settle
        self._local = LocalPorts(control, monitoring, peer)
        await self.start()
        self._wake.set()

    def stop_serving(self) -> None:
        """Take no more commands (those running finish and are answered)."""
        self._local = None

    async def close(self) -> None:
        """Stop taking commands, answer those running (up to run_grace_s) and stop listening.
        Closing twice is harmless."""
        if self._closing:
            return
        self._closing = True
        self._local = None
        self._wake.set()
        for w in self._waiting.values():
            w.wake.set()
        await self._listener.close()
        try:
            await asyncio.wait_for(self._running.wait(), self.run_grace_s)
        except TimeoutError:
            log.warning("node_commands.close_with_commands_running", running=len(self._running))
        await self._tasks.wait()

    # ------------------------------------------------------------ caller ---
    async def call(
        self,
        node_id: str,
        method: str,
        kwargs: Mapping[str, Any],
        actor: Actor,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """Run `method` on node `node_id` and return its answer, or raise its error.
        Unavailable(node_unavailable) when the node is gone or does not take the command
        within `timeout_s` (then the command is expired and never runs)."""
        spec = self.methods.get(method)
        if spec is None:
            raise ValueError(f"unknown node command {method!r}")
        args = spec.encode_args(kwargs)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        command_id = uuid.uuid4()
        waiter = _Waiter(asyncio.Event())
        self._waiting[command_id] = waiter
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                written = await conn.fetchval(
                    _INSERT, command_id, node_id, self.node_id, method, args, _actor_json(actor), timeout
                )
                if not written:
                    raise node_unavailable(node_id, "gone")
                await conn.execute("SELECT pg_notify($1, $2)", COMMANDS_CHANNEL, node_id)
            row = await self._answer(command_id, node_id, waiter, timeout)
        finally:
            self._waiting.pop(command_id, None)
        with contextlib.suppress(Exception):
            await self.pool.execute(_CONSUMED, command_id)
        if row["state"] == "failed":
            raise decode_error(row["error"])
        return spec.result.decode(row["result"])

    async def _answer(self, command_id: uuid.UUID, node_id: str, waiter: _Waiter, timeout: float) -> asyncpg.Record:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            remaining = end - loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    waiter.wake.wait(), min(remaining, self.poll_s) if remaining > 0 else self.poll_s
                )
            waiter.wake.clear()
            row = await self.pool.fetchrow(_READ, command_id)
            if row is None:  # pruned under us: cannot happen within a day
                raise node_unavailable(node_id, "no_answer", command_id=str(command_id))
            state = row["state"]
            if state in ("done", "failed"):
                return row
            late = loop.time() >= end
            if state == "pending" and (late or not row["node_live"] or self._closing):
                if await self.pool.fetchval(_EXPIRE, command_id):
                    reason = "no_answer" if row["node_live"] else "gone"
                    raise node_unavailable(node_id, reason, command_id=str(command_id))
                continue  # taken meanwhile: read it again
            if state == "running" and (not row["node_live"] or loop.time() >= end + self.run_grace_s):
                raise node_unavailable(node_id, "outcome_unknown", command_id=str(command_id))
            if state == "expired":
                raise node_unavailable(node_id, "no_answer", command_id=str(command_id))

    # ------------------------------------------------------------- owner ---
    async def _serve_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self.prune_every_s
        attempt = 0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sweep_s)
            self._wake.clear()
            if self._closing:
                return
            try:
                if self._local is not None:
                    await self._take()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.prune_every_s
                    pruned = await prune(self.pool)
                    if pruned:
                        log.info("node_commands.pruned", commands=pruned)
                attempt = 0
            except Exception as exc:  # the database away, most likely: the loop goes on
                log.warning("node_commands.take_failed", error=repr(exc))
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1

    async def _take(self) -> None:
        while self._local is not None and not self._closing:
            rows = await self.pool.fetch(_TAKE, self.node_id, self.batch)
            for row in rows:
                self._running.spawn(self._run(row))
            if len(rows) < self.batch:
                return

    async def _run(self, row: asyncpg.Record) -> None:
        command_id, method = row["id"], row["method"]
        result: Any = None
        error: dict[str, Any] | None = None
        try:
            spec = self.methods.get(method)
            local = self._local
            if spec is None:
                raise ValidationFailed(f"node {self.node_id} does not know command {method}", code="unknown_command")
            if local is None:
                raise Unavailable(f"node {self.node_id} is stopping", code="node_unavailable")
            value = await spec.run(local, spec.decode_args(row["args"] or {}), _actor(row["actor"]))
            result = spec.result.encode(value)
            json.dumps(result)  # an answer that cannot travel is this node's error, said now
        except HitCallError as exc:
            error = encode_error(exc)
        except Exception as exc:
            error_id = uuid.uuid4().hex
            log.error(
                "node_commands.run_failed", command_id=str(command_id), method=method, error_id=error_id, exc_info=exc
            )
            error = encode_error(
                HitCallError(
                    f"internal error on node {self.node_id}; quote error_id when reporting it",
                    details={"error_id": error_id, "node_id": self.node_id},
                )
            )
        if self._settle is not None:
            try:
                await self._settle()
            except Exception as exc:  # the answer goes anyway: the writes are spooled, not lost
                log.warning("node_commands.settle_failed", command_id=str(command_id), error=repr(exc))
        state = "failed" if error is not None else "done"
        log.info(
            "node_commands.ran", command_id=str(command_id), method=method, state=state, from_node=row["from_node"]
        )
        await self._finish(command_id, state, None if error else result, error)

    async def _finish(self, command_id: uuid.UUID, state: str, result: Any, error: dict[str, Any] | None) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.timeout_s + self.run_grace_s
        attempt = 0
        while True:
            try:
                await self.pool.execute(_FINISH, command_id, state, result, error, DONE_CHANNEL)
                return
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                if loop.time() >= give_up:
                    log.warning("node_commands.answer_lost", command_id=str(command_id), error=repr(exc))
                    return
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1

    # ------------------------------------------------------------ listen ---
    def _listening_again(self) -> None:
        # whatever was notified while not listening: callers re-read, the owner sweeps
        for w in self._waiting.values():
            w.wake.set()
        self._wake.set()

    def _on_command(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == self.node_id:
            self._wake.set()

    def _on_done(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            waiter = self._waiting.get(uuid.UUID(str(payload)))
        except ValueError:
            return
        if waiter is not None:
            waiter.wake.set()

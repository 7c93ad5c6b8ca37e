"""What every fault test shares: a live campaign on the sandbox, an Asterisk-side count
of originated attempts, the lost / duplicated checks, and the report line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from hitcall_pbx.api.app import build_registry
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.core.reconcile import DifferenceKind
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox.asterisk import ARI_URL
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER
from tests.asterisk_cdr import AsteriskCdrs

REPORT_ENV = "HITCALL_RELIABILITY_REPORT"
DEFAULT_REPORT = Path(__file__).resolve().parents[2] / "build" / "reliability-report.jsonl"


def crash_asterisk(sandbox: Any) -> None:
    """Asterisk killed with SIGKILL (no event arrives), then its sandbox cleaned up for a restart."""
    pid = sandbox.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # started by this test session: reap it
    sandbox.stop(unmount=False)


def stop_asterisk(sandbox: Any) -> None:
    """Asterisk stopped cleanly (`core stop now`), its sandbox kept mounted for a restart."""
    sandbox.stop(unmount=False)


def report(test: str, **fields: Any) -> dict[str, Any]:
    """Append one JSON line for a fault test to the report file and print it."""
    line = {"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    path = Path(os.environ.get(REPORT_ENV) or DEFAULT_REPORT)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(line, default=str, sort_keys=False)
    with path.open("a") as fh:
        fh.write(text + "\n")
    sys.stdout.write(f"\nreliability: {text}\n")
    return line


class ChannelObserver:
    """A second ARI application subscribed to every Asterisk event: counts the channels
    Asterisk created per channel id (an attempt's originate creates the channel named by
    its attempt id), whatever the service believes it did. Reconnects on its own."""

    def __init__(self, ari_url: str = ARI_URL, app: str = "hitcall-observer") -> None:
        self.url = ari_url.replace("http://", "ws://", 1) + "/events"
        self.app = app
        self.created: Counter[str] = Counter()
        self.destroyed: Counter[str] = Counter()
        self.destroyed_at: dict[str, float] = {}
        self.answered: set[str] = set()
        self.bridged: set[str] = set()
        self.connected = asyncio.Event()
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, timeout: float = 10.0) -> ChannelObserver:
        headers = {"Authorization": aiohttp.encode_basic_auth(SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD)}
        self._session = aiohttp.ClientSession(headers=headers)
        self._task = asyncio.create_task(self._run(), name="channel-observer")
        await asyncio.wait_for(self.connected.wait(), timeout)
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _note(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        cid = (event.get("channel") or {}).get("id", "")
        if etype == "ChannelCreated":
            self.created[cid] += 1
        elif etype == "ChannelDestroyed":
            self.destroyed[cid] += 1
            self.destroyed_at[cid] = time.monotonic()
        elif etype == "ChannelEnteredBridge" and (event.get("bridge") or {}).get("id", "").startswith("hitcall-agent-"):
            self.bridged.add(cid)
        if (event.get("channel") or {}).get("state") == "Up":
            self.answered.add(cid)

    async def _run(self) -> None:
        assert self._session is not None
        while True:
            try:
                async with self._session.ws_connect(
                    self.url, params={"app": self.app, "subscribeAll": "true"}, heartbeat=5
                ) as ws:
                    self.connects += 1
                    self.connected.set()
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            break
                        self._note(json.loads(msg.data))
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            self.connected.clear()
            await asyncio.sleep(0.05)


async def live_campaign(
    pool: asyncpg.Pool,
    name: str,
    *,
    agents: list[str],
    numbers: list[str],
    first_agent_number: int,
    max_attempts: int = 1,
    **fields: Any,
) -> tuple[int, int]:
    """A progressive campaign (not yet running) with its contacts and agents; (campaign_id, list_id)."""
    campaign_id, list_id = await create_campaign(
        pool, name, mode="progressive", wrap_up_s=0, max_attempts=max_attempts, numbers=numbers, **(ALL_DAY | fields)
    )
    for n, endpoint in enumerate(agents):
        await create_agent(pool, str(first_agent_number + n), endpoint, [campaign_id])
    return campaign_id, list_id


def quick_calls(count: int, start: int) -> list[str]:
    """Customers that answer after 0.5 s and hang up after 1.5 s of talk."""
    return sim_numbers(9, count, start=start)


def talkers(count: int, seconds: int, start: int) -> list[str]:
    """Customers that answer at once and hang up after exactly `seconds` of talk."""
    if not 1 <= seconds <= 99:
        raise ValueError("seconds 1..99")
    return [f"+35841{seconds:02d}{start + i:05d}" for i in range(count)]


async def run_campaign(pool: asyncpg.Pool, campaign_id: int) -> None:
    await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", campaign_id)


async def unsettled_contacts(pool: asyncpg.Pool, list_id: int) -> int:
    """Contacts still to be dialled now or in progress (0 when the campaign has nothing left to do)."""
    return await pool.fetchval(
        """SELECT count(*) FROM contacts WHERE list_id = $1
             AND (status IN ('new', 'in_progress')
                  OR (status = 'retry' AND coalesce(next_attempt_at, now()) <= now()))""",
        list_id,
    )


async def wait_settled(pool: asyncpg.Pool, list_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = await unsettled_contacts(pool, list_id)
            open_attempts = await pool.fetchval(
                """SELECT count(*) FROM all_attempts a JOIN contacts c ON c.id = a.contact_id
                   WHERE c.list_id = $1 AND a.state <> 'ended'""",
                list_id,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            left = open_attempts = -1
        if left == 0 and open_attempts == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"campaign not settled within {timeout} s: {left} contacts to dial, {open_attempts} attempts open"
            )
        await asyncio.sleep(0.2)


async def attempts(pool: asyncpg.Pool, campaign_id: int) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1 ORDER BY created_at", campaign_id)


def loss_and_duplicates(
    rows: list[asyncpg.Record], observer: ChannelObserver, service_originated: Counter[str] | None = None
) -> dict[str, Any]:
    """The counts every fault test reports (each test asserts the ones it can hold to 0).

    duplicated: attempts Asterisk created more than one channel for (dialled twice), or
    the service sent more than one originate for. lost: attempts Asterisk dialled with
    no ended CDR row (no outcome). orphan_originates: channels named like an attempt
    with no attempt row at all (dialled without a stored id). answered_lost /
    bridged_lost: answered / put through to an agent in Asterisk, not so in the CDR
    (call state lost on the way)."""
    by_id = {str(r["id"]): r for r in rows}
    asterisk_created = Counter({cid: n for cid, n in observer.created.items() if _is_uuid(cid)})
    sent = service_originated or Counter()
    dialled = set(asterisk_created) | set(sent)
    return {
        "attempts": len(rows),
        "originated": len(dialled),
        "duplicated": sum(1 for n in asterisk_created.values() if n > 1) + sum(1 for n in sent.values() if n > 1),
        "lost": sum(
            1 for cid in dialled if cid in by_id and (by_id[cid]["state"] != "ended" or by_id[cid]["outcome"] is None)
        ),
        "orphan_originates": sum(1 for cid in dialled if cid not in by_id),
        "open_attempts": sum(1 for r in rows if r["state"] != "ended" or r["outcome"] is None),
        # Answered in Asterisk, yet the CDR says it never was: state lost on the way.
        "answered_lost": sum(1 for cid in observer.answered if cid in by_id and by_id[cid]["answered_at"] is None),
        # Put through to an agent in Asterisk, yet not connected in the CDR.
        "bridged_lost": sum(
            1
            for cid in observer.bridged
            if cid in by_id and (by_id[cid]["bridged_at"] is None or by_id[cid]["abandoned"])
        ),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
    }


async def asterisk_attempt_channels(ari_rest: Any) -> list[str]:
    """Channels still up in Asterisk that belong to attempts (ids are attempt UUIDs)."""
    return [c.id for c in await ari_rest.list_channels() if _is_uuid(c.id)]


def _is_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


async def reconcile_with_asterisk(pool: asyncpg.Pool, cdrs: AsteriskCdrs) -> dict[str, Any]:
    """`hitcall cdr reconcile` of the test's attempts against the records Asterisk's
    cdr_csv wrote during the test: what every fault test reports and asserts after the
    fault (no difference, or only the ones the fault explains)."""
    results = await cdrs.reconcile_settled(pool)
    differences = [d for r in results for d in r.result.differences]
    return {
        "matched": sum(r.result.matched for r in results),
        "differences": [d.as_dict() for d in differences],
        "by_kind": {k.value: sorted(d.attempt_id for d in differences if d.kind is k) for k in DifferenceKind},
    }


async def admin_headers(pool: asyncpg.Pool, username: str, password: str | None = None) -> dict[str, str]:
    """An admin user (with `password` for the web login, if given) and the bearer header of an
    API token of theirs."""
    auth = AuthService(
        pool,
        passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
        role_scopes=build_registry().role_scopes(),
    )
    actor = Actor("reliability-test", "system")
    user = await auth.create_user(username=username, role=Role.ADMIN, password=password, actor=actor)
    grant = await auth.create_token(
        user_id=user["id"], name=username, scopes=sorted(auth.scopes_for(Role.ADMIN)), expires_at=None, actor=actor
    )
    return {"Authorization": f"Bearer {grant.token}"}

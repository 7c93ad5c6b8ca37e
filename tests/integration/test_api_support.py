"""Shared pieces of the REST API tests: fakes of the other layers' Protocols (dialing
engine, records, privacy, webhook replay), the API harness on a real embedded Postgres,
and a populated world of objects. Holds no tests itself."""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from hitcall_pbx.api import ApiDeps, build_registry, create_app
from hitcall_pbx.api.deps import (
    Cdr,
    CdrFilter,
    CdrPage,
    ErasureResult,
    LiveCall,
    Recording,
    RecordingFile,
    RecordingFilter,
    RecordingPage,
    RecordingPauseSpan,
    RecordingPauseStatus,
    Rectification,
    SubjectExport,
    SubjectRef,
    SubjectResult,
    TransferStatus,
)
from hitcall_pbx.api.registry import Registry
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role, ThrottlePolicy
from hitcall_pbx.errors import NotFound
from hitcall_pbx.hooks.targets import WebhookTargets

from .monitoring_fake import FakeMonitoring

FAST_PASSWORDS = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
SYSTEM = Actor("test", "system")
PUBLIC_ADDRESS = ip_address("93.184.215.14")


async def public_dns(host: str, port: int) -> list[IPv4Address | IPv6Address]:
    """Every name is a public host: webhook URL checks pass without asking real DNS."""
    return [PUBLIC_ADDRESS]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class FakeDialer:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    live: list[LiveCall] = field(default_factory=list)
    attempt_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def _note(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, args, kw))

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]

    async def campaign_changed(self, campaign_id: int) -> None:
        self._note("campaign_changed", campaign_id)

    async def agent_changed(self, agent_id: int) -> None:
        self._note("agent_changed", agent_id)

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        self._note("pause_agent", agent_id, pause_code, actor=actor)

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None:
        self._note("unpause_agent", agent_id, actor=actor)

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        self._note("log_out_agent", agent_id, actor=actor)

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None:
        self._note("end_wrap_up", agent_id, actor=actor)

    async def set_disposition(
        self,
        agent_id: int,
        disposition: str,
        *,
        attempt_id: uuid.UUID | None,
        actor: Actor,
        callback_at: datetime | None = None,
        callback_kind: str = "personal",
    ) -> None:
        self._note("set_disposition", agent_id, disposition, attempt_id=attempt_id, actor=actor)

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        self._note("accept_offer", agent_id, actor=actor)
        return self.attempt_id

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None:
        self._note("skip_offer", agent_id, reason, actor=actor)

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        self._note("manual_dial", agent_id, campaign_id=campaign_id, number=number, contact_id=contact_id, actor=actor)
        return self.attempt_id

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]:
        self._note("live_calls", campaign_id=campaign_id, agent_id=agent_id)
        return [c for c in self.live if agent_id is None or c.agent_id == agent_id]

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        self._note("hang_up", attempt_id, actor=actor)

    async def transfer(self, agent_id: int, kind: str, target: dict[str, Any], *, actor: Actor) -> TransferStatus:
        self._note("transfer", agent_id, kind, target, actor=actor)
        return TransferStatus(
            attempt_id=self.attempt_id,
            kind=kind,
            state="consulting" if kind == "attended" else "completed",
            from_agent_id=agent_id,
            target=next(iter(target)).removesuffix("_id"),
            to_agent_id=target.get("agent_id"),
            number=target.get("number"),
        )

    async def transfer_action(self, agent_id: int, action: str, *, actor: Actor) -> TransferStatus:
        self._note("transfer_action", agent_id, action, actor=actor)
        state = {"complete": "completed", "cancel": "cancelled", "conference": "conference"}[action]
        return TransferStatus(
            attempt_id=self.attempt_id, kind="attended", state=state, from_agent_id=agent_id, target="agent"
        )

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        self._note("pause_recording", agent_id, actor=actor)
        span = RecordingPauseSpan(seq=1, paused_at=datetime.now(UTC), paused_by=actor.name)
        return RecordingPauseStatus(attempt_id=self.attempt_id, recording_id=uuid.uuid4(), paused=True, spans=[span])

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        self._note("resume_recording", agent_id, actor=actor)
        return RecordingPauseStatus(attempt_id=self.attempt_id, recording_id=uuid.uuid4(), paused=False, spans=[])


CSV_HEADER = b"id,campaign_id,agent_id,outcome\n"


@dataclass
class FakeCdrs:
    rows: list[Cdr] = field(default_factory=list)
    filters: list[CdrFilter] = field(default_factory=list)

    async def query(self, flt: CdrFilter, *, limit: int, cursor: str | None) -> CdrPage:
        self.filters.append(flt)
        items = [r for r in self.rows if flt.agent_id is None or r.agent_id == flt.agent_id]
        return CdrPage(items=items[:limit])

    async def export_csv(self, flt: CdrFilter) -> AsyncIterator[bytes]:
        self.filters.append(flt)
        yield CSV_HEADER
        for r in self.rows:
            if flt.agent_id is None or r.agent_id == flt.agent_id:
                yield f"{r.id},{r.campaign_id},{r.agent_id},{r.outcome}\n".encode()


AUDIO = b"RIFF" + bytes(range(256)) * 40


@dataclass
class FakeRecordings:
    directory: Path
    recording: Recording
    holds: list[dict[str, Any]] = field(default_factory=list)

    async def list(self, flt: RecordingFilter, *, limit: int, cursor: str | None) -> RecordingPage:
        return RecordingPage(items=[self.recording][:limit])

    async def get(self, recording_id: uuid.UUID) -> Recording:
        if recording_id != self.recording.id:
            raise NotFound("no such recording")
        return self.recording

    async def open(self, recording_id: uuid.UUID) -> RecordingFile:
        rec = await self.get(recording_id)
        path = self.directory / f"{rec.id}.wav"
        path.write_bytes(AUDIO)
        return RecordingFile(path=path, content_type="audio/wav", filename=f"{rec.id}.wav")

    async def hold(
        self, recording_id: uuid.UUID, *, reason: str, case_id: str | None, until: datetime | None, actor: Actor
    ) -> Recording:
        rec = await self.get(recording_id)
        self.holds.append({"op": "hold", "reason": reason, "case_id": case_id, "until": until, "actor": actor})
        held_until = until or rec.created_at + timedelta(days=540)
        return rec.model_copy(update={"hold_reason": reason, "hold_case_id": case_id, "held_until": held_until})

    async def release(self, recording_id: uuid.UUID, *, actor: Actor) -> Recording:
        rec = await self.get(recording_id)
        self.holds.append({"op": "release", "actor": actor})
        return rec


@dataclass
class FakePrivacy:
    directory: Path
    known_phone: str = "+358401234567"
    actions: list[tuple[str, SubjectRef, Actor, Any]] = field(default_factory=list)

    def _check(self, subject: SubjectRef) -> None:
        if subject.phone != self.known_phone:
            raise NotFound("nothing is held about this subject", code="unknown_subject")

    async def export(self, subject: SubjectRef, *, include_audio: bool, actor: Actor) -> SubjectExport:
        self._check(subject)
        self.actions.append(("export", subject, actor, include_audio))
        data = {"subject": subject.model_dump(exclude_none=True), "contacts": [{"id": 1}]}
        if not include_audio:
            return SubjectExport(data=data)
        archive = self.directory / f"export-{uuid.uuid4().hex}.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("subject.json", json.dumps(data))
            z.writestr("recordings/1.wav", AUDIO)
        return SubjectExport(data=data, archive=archive)

    async def rectify(self, subject: SubjectRef, changes: Rectification, *, actor: Actor) -> SubjectResult:
        self._check(subject)
        self.actions.append(("rectify", subject, actor, changes))
        return SubjectResult(action="rectify", contacts=1, details={"fields": sorted(changes.model_fields_set)})

    async def erase(self, subject: SubjectRef, *, actor: Actor) -> ErasureResult:
        self._check(subject)
        self.actions.append(("erase", subject, actor, None))
        return ErasureResult(action="erase", contacts=1, recordings_deleted=2, suppressed=True)

    async def restrict(self, subject: SubjectRef, restricted: bool, *, actor: Actor) -> SubjectResult:
        self._check(subject)
        self.actions.append(("restrict", subject, actor, restricted))
        return SubjectResult(action="restrict" if restricted else "unrestrict", contacts=1)

    async def object_to_marketing(self, subject: SubjectRef, *, actor: Actor) -> SubjectResult:
        self._check(subject)
        self.actions.append(("object", subject, actor, None))
        return SubjectResult(action="object", contacts=1)


@dataclass
class FakeReplay:
    replayed: list[tuple[list[int], str, str | None, str | None]] = field(default_factory=list)

    async def replay(
        self, delivery_ids: Sequence[int], *, actor: str, actor_role: str | None = None, source_ip: str | None = None
    ) -> list[int]:
        self.replayed.append((list(delivery_ids), actor, actor_role, source_ip))
        return list(delivery_ids)


def make_recording(campaign_id: int = 1, attempt_id: uuid.UUID | None = None) -> Recording:
    created = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    return Recording(
        id=uuid.UUID("0b0e5b4e-7a35-4c1e-9b2a-3f4f3c0a0001"),
        attempt_id=attempt_id or uuid.uuid4(),
        campaign_id=campaign_id,
        sha256="0" * 64,
        size_bytes=len(AUDIO),
        duration_s=12.5,
        format="wav",
        created_at=created,
        retention_until=created + timedelta(days=182),
    )


@dataclass
class Api:
    """The real app on a test server, its dependencies and helpers."""

    client: test_utils.TestClient
    deps: ApiDeps
    auth: AuthService
    registry: Registry
    clock: Clock
    dialer: FakeDialer
    cdrs: FakeCdrs
    recordings: FakeRecordings
    privacy: FakePrivacy
    replay: FakeReplay
    ari: dict[str, bool]

    @property
    def pool(self) -> asyncpg.Pool:
        return self.deps.pool

    async def user(self, username: str, role: Role | str, password: str | None = PASSWORD) -> int:
        row = await self.auth.create_user(username=username, role=role, password=password, actor=SYSTEM)
        return row["id"]

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        resp = await self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}

    async def token(self, user_id: int, scopes: Sequence[str] | None = None) -> dict[str, str]:
        row = await self.auth.get_user(user_id)
        wanted = scopes if scopes is not None else sorted(self.auth.scopes_for(Role(row["role"])))
        grant = await self.auth.create_token(user_id=user_id, name="test", scopes=wanted, expires_at=None, actor=SYSTEM)
        return {"Authorization": f"Bearer {grant.token}"}

    async def as_role(self, role: Role) -> dict[str, str]:
        """Credentials of a new user with `role` (an API token for integration)."""
        name = f"{role.value}-{uuid.uuid4().hex[:6]}"
        if role is Role.INTEGRATION:
            return await self.token(await self.user(name, role, password=None))
        await self.user(name, role)
        return await self.login(name)

    async def audit_rows(self, action: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT *, host(source_ip) AS ip FROM audit_log WHERE action = $1 ORDER BY id", action
        )


@pytest.fixture
async def api(db: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Api]:
    clock = Clock()
    ari = {"connected": True}
    dialer, cdrs, replay = FakeDialer(), FakeCdrs(), FakeReplay()
    recordings = FakeRecordings(tmp_path, make_recording())
    privacy = FakePrivacy(tmp_path)
    deps = ApiDeps(
        pool=db,
        metrics=CollectorRegistry(),
        dialer=dialer,
        cdrs=cdrs,
        recordings=recordings,
        privacy=privacy,
        webhooks=replay,
        ari_connected=lambda: ari["connected"],
        monitoring=FakeMonitoring(),
        passwords=FAST_PASSWORDS,
        throttle=ThrottlePolicy(),
        clock=clock,
        webhook_targets=WebhookTargets(resolve=public_dns),
    )
    registry = build_registry()
    app = create_app(deps, registry=registry)
    auth = AuthService(db, passwords=FAST_PASSWORDS, clock=clock, role_scopes=registry.role_scopes())
    client = test_utils.TestClient(test_utils.TestServer(app))
    await client.start_server()
    try:
        yield Api(client, deps, auth, registry, clock, dialer, cdrs, recordings, privacy, replay, ari)
    finally:
        await client.close()


@dataclass
class World:
    """One of everything, for routes that need ids; the agent belongs to `agent_user`."""

    ids: dict[str, Any]
    credentials: dict[Role, dict[str, str]]


async def make_world(api: Api) -> World:
    creds = {role: await api.as_role(role) for role in Role}
    agent_user = await api.pool.fetchval("SELECT id FROM users WHERE role = 'agent' ORDER BY id LIMIT 1")
    async with api.pool.acquire() as conn:
        campaign_id = await conn.fetchval(
            "INSERT INTO campaigns (name, mode, caller_id) VALUES ('World', 'progressive', '+358401111111')"
            " RETURNING id"
        )
        list_id = await conn.fetchval("INSERT INTO contact_lists (name) VALUES ('World list') RETURNING id")
        await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign_id, list_id)
        contact_id = await conn.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, '+358401234567', 'Matti') RETURNING id",
            list_id,
        )
        agent_id = await conn.fetchval(
            "INSERT INTO agents (number, name, user_id) VALUES ('101', 'Agent One', $1) RETURNING id", agent_user
        )
        await conn.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", agent_id, campaign_id)
        # the supervisor's phone row: they supervise the world's campaign, its agent, calls and contacts
        phone_id = await conn.fetchval(
            "INSERT INTO agents (number, name, user_id) VALUES ('199', 'Supervisor phone',"
            " (SELECT id FROM users WHERE role = 'supervisor' ORDER BY id LIMIT 1)) RETURNING id"
        )
        await conn.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", phone_id, campaign_id)
        attempt_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO live_attempts (id, campaign_id, contact_id, dialled_number, caller_id, agent_id, mode,
                                          state, retention_until)
               VALUES ($1, $2, $3, '+358401234567', '+358401111111', $4, 'progressive', 'bridged',
                       now() + interval '1 year')""",
            attempt_id,
            campaign_id,
            contact_id,
            agent_id,
        )
        entry_id = await conn.fetchval(
            "INSERT INTO dnc_entries (phone_e164, source) VALUES ('+358409999999', 'manual') RETURNING id"
        )
        # a personal callback of the world's agent, so that the agent reaches it too
        callback_id = await conn.fetchval(
            """INSERT INTO callbacks (campaign_id, contact_id, agent_id, kind, due_at, timezone, created_by)
               VALUES ($1, $2, $3, 'personal', now() + interval '1 day', 'Europe/Helsinki', 'test') RETURNING id""",
            campaign_id,
            contact_id,
            agent_id,
        )
        # owned by the integration user, so that its routes reach it (an admin reaches every one)
        subscription_id = await conn.fetchval(
            "INSERT INTO webhook_subscriptions (url, secret, event_types, owner_id) VALUES"
            " ('https://crm.example/hook', 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0', '{*}',"
            " (SELECT id FROM users WHERE role = 'integration' ORDER BY id LIMIT 1)) RETURNING id"
        )
        outbox_id = await conn.fetchval(
            "INSERT INTO webhook_outbox (event_type, subject, payload) VALUES ('call.ended', 'call:1', '{}')"
            " RETURNING id"
        )
        delivery_id = await conn.fetchval(
            "INSERT INTO webhook_deliveries (outbox_id, subscription_id, state) VALUES ($1, $2, 'dead') RETURNING id",
            outbox_id,
            subscription_id,
        )
    other_user = await api.user(f"other-{uuid.uuid4().hex[:6]}", Role.SUPERVISOR)
    grant = await api.auth.create_token(
        user_id=other_user, name="spare", scopes=["campaigns:read"], expires_at=None, actor=SYSTEM
    )
    api.recordings.recording = make_recording(campaign_id, attempt_id)
    ids = {
        "campaign_id": campaign_id,
        "list_id": list_id,
        "contact_id": contact_id,
        "agent_id": agent_id,
        "attempt_id": attempt_id,
        "entry_id": entry_id,
        "callback_id": callback_id,
        "subscription_id": subscription_id,
        "delivery_id": delivery_id,
        "user_id": other_user,
        "token_id": grant.record["id"],
        "recording_id": api.recordings.recording.id,
        "monitor_id": 1,  # the session a supervisor or admin starts on the attempt (FakeMonitoring)
    }
    return World(ids, creds)

"""The REST API over the real records and privacy services (what `hitcall serve` wires in
app.py), on the embedded Postgres: the dialing engine and webhook replay are the only
fakes. Holds no tests itself."""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from hitcall_pbx.api import ApiDeps, build_registry, create_app
from hitcall_pbx.auth import AuthService, Passwords, Role, ThrottlePolicy
from hitcall_pbx.core.netaddr import IPNetwork
from hitcall_pbx.core.retention import RetentionPolicy, add_months
from hitcall_pbx.privacy.api import ApiPrivacy
from hitcall_pbx.privacy.service import PrivacyService
from hitcall_pbx.records.api import ApiCdrs, ApiRecordings
from hitcall_pbx.records.recordings import Recording, RecordingStore
from tests.integration.monitoring_fake import FakeMonitoring
from tests.integration.test_api_support import FAST_PASSWORDS, PASSWORD, SYSTEM, Clock, FakeDialer, FakeReplay


@dataclass
class ServiceApi:
    client: test_utils.TestClient
    deps: ApiDeps
    auth: AuthService
    clock: Clock
    data_dir: Path
    store: RecordingStore

    @property
    def pool(self) -> asyncpg.Pool:
        return self.deps.pool

    async def login_as(self, role: Role) -> dict[str, str]:
        name = f"{role.value}-{uuid.uuid4().hex[:6]}"
        await self.auth.create_user(username=name, role=role, password=PASSWORD, actor=SYSTEM)
        resp = await self.client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}


@asynccontextmanager
async def running_api(
    db: asyncpg.Pool,
    data_dir: Path,
    *,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    passwords: Passwords = FAST_PASSWORDS,
) -> AsyncIterator[ServiceApi]:
    """The API as app.py builds it: recordings under <data dir>/recordings, subject exports
    written to <data dir>/exports (neither created beforehand)."""
    store = RecordingStore(data_dir / "recordings")
    clock = Clock()
    deps = ApiDeps(
        pool=db,
        metrics=CollectorRegistry(),
        dialer=FakeDialer(),
        cdrs=ApiCdrs(db),
        recordings=ApiRecordings(db, store),
        privacy=ApiPrivacy(PrivacyService(db, store, export_dir=data_dir / "exports")),
        webhooks=FakeReplay(),
        ari_connected=lambda: True,
        monitoring=FakeMonitoring(),
        passwords=passwords,
        throttle=ThrottlePolicy(),
        clock=clock,
    )
    registry = build_registry()
    app = create_app(deps, registry=registry, trusted_proxies=trusted_proxies)
    auth = AuthService(db, passwords=passwords, clock=clock, role_scopes=registry.role_scopes())
    client = test_utils.TestClient(test_utils.TestServer(app))
    await client.start_server()
    try:
        yield ServiceApi(client, deps, auth, clock, data_dir, store)
    finally:
        await client.close()


@pytest.fixture
async def service_api(db: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[ServiceApi]:
    async with running_api(db, tmp_path / "var") as api:
        yield api


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real 16-bit mono PCM WAV file (what Asterisk's MixMonitor/ARI recording writes)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes((i * 37) % 256 for i in range(int(seconds * rate) * 2)))
    return buf.getvalue()


async def seed_recorded_call(
    pool: asyncpg.Pool,
    store: RecordingStore,
    tmp: Path,
    *,
    number: str,
    name: str,
    email: str | None = None,
    days_ago: int = 3,
) -> dict[str, object]:
    """A contact on a list of a campaign, one ended call to it and the call's WAV recording."""
    campaign = await pool.fetchval(
        "INSERT INTO campaigns (name, mode) VALUES ($1, 'progressive') RETURNING id", f"c-{uuid.uuid4().hex[:6]}"
    )
    list_id = await pool.fetchval("INSERT INTO contact_lists (name) VALUES ($1) RETURNING id", f"l-{uuid.uuid4().hex}")
    await pool.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign, list_id)
    contact = await pool.fetchval(
        "INSERT INTO contacts (list_id, phone_e164, name, email) VALUES ($1, $2, $3, $4) RETURNING id",
        list_id,
        number,
        name,
        email,
    )
    attempt = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(days=days_ago)
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, contact_id, dialled_number, caller_id, mode, created_at,
                                      retention_until, state, ended_at, outcome)
           VALUES ($1, $2, $3, $4, '+358931234567', 'progressive', $5, $6, 'ended', $5, 'answered_human')""",
        attempt,
        campaign,
        contact,
        number,
        created,
        add_months(created, 24),
    )
    audio = wav_bytes()
    source = tmp / f"{attempt}.wav"
    source.write_bytes(audio)
    recording: Recording = await store.finalize(
        pool,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=created,
        policy=RetentionPolicy(),
        format="wav",
    )
    return {
        "campaign": campaign,
        "list": list_id,
        "contact": contact,
        "attempt": attempt,
        "recording": recording,
        "audio": audio,
    }

"""The OpenAPI document: valid OpenAPI 3.1, generated from the registry (every route in
it), served with a docs page; and a bounded schemathesis fuzz run against a live server
on embedded Postgres that must never produce a 5xx."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from hitcall_pbx.api import ApiDeps, build_openapi, build_registry, create_app
from hitcall_pbx.auth import Role
from hitcall_pbx.store.db import create_pool, dsn_with_database

from .monitoring_fake import FakeMonitoring
from .test_api_support import (
    FAST_PASSWORDS,
    SYSTEM,
    Api,
    FakeCdrs,
    FakeDialer,
    FakePrivacy,
    FakeRecordings,
    FakeReplay,
    api,  # noqa: F401  (fixture)
    make_recording,
)

SPEC = build_openapi(build_registry())


def test_document_is_valid_openapi_31_and_covers_every_route() -> None:
    validate(SPEC)
    assert SPEC["openapi"] == "3.1.0"
    registry = build_registry()
    documented = {(m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in registry.routes}
    for route in registry.routes:
        op = SPEC["paths"][route.path][route.method.lower()]
        assert op["operationId"] == route.operation_id
        if route.roles is None:
            assert op["security"] == []
        else:
            assert op["security"] == [{"bearer": []}]
            assert op["x-roles"] == sorted(r.value for r in route.roles)
            assert {"401", "403"} <= set(op["responses"])
        if route.body is not None:
            assert {"400", "413", "422"} <= set(op["responses"])
    # request and response bodies come from the handlers' own pydantic models
    create = SPEC["paths"]["/api/v1/campaigns"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CampaignCreate"
    }
    ring = SPEC["components"]["schemas"]["CampaignCreate"]["properties"]["ring_timeout_s"]
    assert (ring["minimum"], ring["maximum"]) == (15, 180)


async def test_served_document_and_docs_page(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json")
    assert resp.status == 200 and await resp.json() == SPEC
    resp = await api.client.get("/api/v1/docs")
    page = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert "<script" not in page and "http://" not in page and "https://" not in page.replace("https://crm.example", "")
    for route in api.registry.routes:
        assert route.path in page


# ------------------------------------------------------------------------------ fuzz


@dataclass
class LiveApi:
    base_url: str
    headers: dict[str, str]


class _ServerThread:
    """The real app on a real socket in its own event loop (schemathesis calls it with a
    blocking HTTP client), on a fresh migrated database."""

    def __init__(self, pg_dsn: str, template: str, tmp: object) -> None:
        self._pg_dsn, self._template, self._tmp = pg_dsn, template, tmp
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._database = f"test_fuzz_{uuid.uuid4().hex[:12]}"

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)  # type: ignore[arg-type]  # coro is any awaitable the caller built; typed object to keep _run generic

    def start(self) -> LiveApi:
        self._thread.start()
        return self._run(self._start())  # type: ignore[return-value]  # _run returns object; _start returns the LiveApi

    async def _start(self) -> LiveApi:
        admin = await asyncpg.connect(self._pg_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self._database}" TEMPLATE "{self._template}"')
        finally:
            await admin.close()
        self.pool = await create_pool(dsn_with_database(self._pg_dsn, self._database), max_size=5)
        deps = ApiDeps(
            pool=self.pool,
            metrics=CollectorRegistry(),
            dialer=FakeDialer(),
            cdrs=FakeCdrs(),
            recordings=FakeRecordings(self._tmp, make_recording()),
            privacy=FakePrivacy(self._tmp),  # type: ignore[arg-type]  # a fake with only the methods the API calls
            webhooks=FakeReplay(),
            ari_connected=lambda: True,
            monitoring=FakeMonitoring(),
            passwords=FAST_PASSWORDS,
        )
        app = create_app(deps)
        from hitcall_pbx.auth import AuthService

        registry = build_registry()
        auth = AuthService(self.pool, passwords=FAST_PASSWORDS, role_scopes=registry.role_scopes())
        # Objects with low ids first, so that fuzzed ids (1, 2, ...) hit them rather than the
        # fuzzing admin's own user and token.
        for i in range(5):
            uid = (await auth.create_user(username=f"seed{i}", role=Role.SUPERVISOR, password=None, actor=SYSTEM))["id"]
            await auth.create_token(user_id=uid, name="seed", scopes=["campaigns:read"], expires_at=None, actor=SYSTEM)
        uid = (await auth.create_user(username="fuzzer", role=Role.ADMIN, password=None, actor=SYSTEM))["id"]
        grant = await auth.create_token(
            user_id=uid, name="fuzz", scopes=sorted(auth.scopes_for(Role.ADMIN)), expires_at=None, actor=SYSTEM
        )
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return LiveApi(f"http://{host}:{port}", {"Authorization": f"Bearer {grant.token}"})

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.pool.close()
        admin = await asyncpg.connect(self._pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="module")
def live_api(pg_dsn: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    server = _ServerThread(pg_dsn, migrated_template, tmp_path_factory.mktemp("fuzz"))
    info = server.start()
    try:
        yield info
    finally:
        server.stop()


@schemathesis.serializer("text/csv")
def _csv(ctx: object, value: object) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


# Bounded: explicit examples and 6 generated cases (valid and invalid) per operation; the
# boundary-value coverage phase multiplies the cases by the fields and is left out.
FUZZ = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}, "generation": {"max-examples": 6}})
schema = schemathesis.openapi.from_dict(SPEC, config=FUZZ)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors(case: schemathesis.Case, live_api: LiveApi) -> None:
    case.call_and_validate(base_url=live_api.base_url, headers=live_api.headers, checks=CHECKS)

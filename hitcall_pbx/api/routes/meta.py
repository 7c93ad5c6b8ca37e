"""Health, metrics, the OpenAPI document and its docs page, and the audit log."""

from __future__ import annotations

import asyncio
import hmac
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AwareDatetime, Field

from ...auth import Role
from ...auth.tokens import bearer_token
from ...errors import NotFound, Unauthorized
from ..openapi import docs_html
from ..registry import V1, Ctx, Registry
from ..repos import audit as repo
from ..types import Out, Page

SPEC_KEY: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
DB_TIMEOUT_S = 2.0
AUDIT_READERS = frozenset({Role.ADMIN, Role.COMPLIANCE})


class Health(Out):
    status: str


class Readiness(Out):
    status: str = Field(description="ready or not_ready")
    checks: dict[str, str] = Field(description="each dependency: ok, or why not")


class AuditFilter(Page):
    actor: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=200, description="exact action or a dotted prefix (user)")
    object_type: str | None = Field(default=None, max_length=100)
    object_id: str | None = Field(default=None, max_length=200)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class AuditEntry(Out):
    id: int
    at: datetime
    actor: str
    actor_role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    details: dict[str, Any]
    source_ip: str | None


class AuditPage(Out):
    items: list[AuditEntry]


def metrics_response(request: web.Request, metrics: CollectorRegistry, token: str | None) -> web.Response:
    """The Prometheus exposition of `metrics`; when `token` is set, only for a request that
    carries it as its bearer token (compared in constant time)."""
    if token is not None:
        given = bearer_token(request.headers.get("Authorization")) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("the metrics bearer token is required", code="unauthorized")
    return web.Response(body=generate_latest(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _database(ctx: Ctx) -> str:
    try:
        async with asyncio.timeout(DB_TIMEOUT_S):
            await ctx.pool.fetchval("SELECT 1")
    except Exception as exc:  # any failure means not ready
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def register(reg: Registry) -> None:
    @reg.add("GET", "/healthz", summary="Liveness: the process answers", tag="health", roles=None, response=Health)
    async def healthz(ctx: Ctx) -> Health:
        return Health(status="ok")

    @reg.add(
        "GET",
        "/readyz",
        summary="Readiness: database and Asterisk ARI are up",
        tag="health",
        roles=None,
        response=Readiness,
        other_responses=((503, Readiness),),
        description="503 with the reasons when a dependency is down or the service is draining (shutting down).",
    )
    async def readyz(ctx: Ctx) -> web.Response:
        checks = {"database": await _database(ctx), "ari": "ok" if ctx.deps.ari_connected() else "disconnected"}
        if ctx.deps.draining():
            checks["service"] = "draining"
        ready = all(v == "ok" for v in checks.values())
        body = Readiness(status="ready" if ready else "not_ready", checks=checks)
        return web.Response(status=200 if ready else 503, body=body.model_dump_json(), content_type="application/json")

    @reg.add(
        "GET",
        "/metrics",
        summary="Prometheus metrics",
        tag="health",
        roles=None,
        media="text/plain",
        description="Text exposition format. With HITCALL_METRICS_TOKEN set it needs `Authorization: Bearer"
        " <that token>` (401 otherwise); with HITCALL_METRICS_PORT set it is served on that listener only (404"
        " here). With neither, expose the API port only to trusted networks.",
    )
    async def metrics(ctx: Ctx) -> web.Response:
        if not ctx.deps.metrics_on_api:
            raise NotFound("metrics are served on their own listener")
        return metrics_response(ctx.request, ctx.deps.metrics, ctx.deps.metrics_token)

    @reg.add(
        "GET",
        f"{V1}/openapi.json",
        summary="This API's OpenAPI 3.1 document",
        tag="meta",
        roles=None,
        media="application/json",
    )
    async def openapi_document(ctx: Ctx) -> web.Response:
        return web.json_response(ctx.request.app[SPEC_KEY])

    @reg.add("GET", f"{V1}/docs", summary="Documentation page", tag="meta", roles=None, media="text/html")
    async def docs_page(ctx: Ctx) -> web.Response:
        return web.Response(text=docs_html(ctx.request.app[SPEC_KEY]), content_type="text/html")

    @reg.add(
        "GET",
        f"{V1}/audit",
        summary="Read the audit log",
        tag="audit",
        roles=AUDIT_READERS,
        scope="audit:read",
        query=AuditFilter,
        response=AuditPage,
    )
    async def read_audit(ctx: Ctx) -> AuditPage:
        q: AuditFilter = ctx.query
        rows = await repo.find(
            ctx.pool,
            actor=q.actor,
            action=q.action,
            object_type=q.object_type,
            object_id=q.object_id,
            since=q.since,
            until=q.until,
            limit=q.limit,
            after_id=q.after_id,
        )
        return AuditPage(items=[AuditEntry.model_validate(dict(r)) for r in rows])

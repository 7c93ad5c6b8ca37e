"""The aiohttp application: `create_app(deps)` builds the routes of the registry under
/api/v1 (plus /healthz, /readyz, /metrics), the error and metrics middlewares and the
OpenAPI document."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..auth import AuthService
from ..core.netaddr import IPNetwork, client_address, is_trusted, parse_address
from .deps import ApiDeps
from .errors import error_middleware
from .openapi import build_openapi
from .registry import CSV_LIMIT, V1, Registry
from .routes import (
    agents,
    auth,
    callbacks,
    calls,
    campaigns,
    contacts,
    dispositions,
    dnc,
    meta,
    monitoring,
    records,
    reports,
    transfers,
    users,
    webhooks,
    workspace,
)

MODULES = (
    auth,
    users,
    campaigns,
    dispositions,
    contacts,
    dnc,
    agents,
    callbacks,
    transfers,
    workspace,
    calls,
    monitoring,
    records,
    reports,
    webhooks,
    meta,
)


def build_registry() -> Registry:
    reg = Registry()
    for module in MODULES:
        module.register(reg)
    return reg


def _metrics_middleware(deps: ApiDeps) -> Any:
    requests = Counter(
        "hitcall_http_requests", "REST API requests", ["method", "operation", "status"], registry=deps.metrics
    )
    latency = Histogram(
        "hitcall_http_request_duration_seconds",
        "REST API request time",
        ["operation"],
        registry=deps.metrics,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    )

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route = request.match_info.route
            operation = route.name or "unmatched"
            requests.labels(request.method, operation, str(status)).inc()
            latency.labels(operation).observe(time.perf_counter() - started)

    return metrics_middleware


def _client_middleware(trusted: tuple[IPNetwork, ...]) -> Any:
    """`request.remote` is the client: behind a trusted proxy, the right-most address of
    X-Forwarded-For that is not a trusted proxy; from any other peer the header is ignored.
    Everything after it (audit rows, sessions, login throttling) sees that address. A
    trusted proxy's ``X-Forwarded-Proto: https`` makes the request secure (`request.secure`:
    the workspace's session cookie is then sent with Secure)."""

    @web.middleware
    async def client_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        client = client_address(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)
        changes: dict[str, Any] = {}
        if client is not None and client != request.remote:
            changes["remote"] = client
        peer = parse_address(request.remote or "")
        if peer is not None and is_trusted(peer, trusted) and not request.secure:
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
            if proto == "https":
                changes["scheme"] = "https"
        if changes:
            request = request.clone(**changes)
        return await handler(request)

    return client_middleware


# Public documents with nothing personal in them; every other /api/v1 answer is not to be stored.
_CACHEABLE = frozenset({f"{V1}/openapi.json", f"{V1}/docs"})


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """`Cache-Control: no-store` on every /api/v1 response (errors and streamed files
    included): contacts, CDRs, recordings, exports, users and the audit log must not be
    kept by browsers or proxies."""
    path = request.path
    if (path == V1 or path.startswith(V1 + "/")) and path not in _CACHEABLE:
        response.headers["Cache-Control"] = "no-store"


def create_app(
    deps: ApiDeps, *, registry: Registry | None = None, trusted_proxies: tuple[IPNetwork, ...] = ()
) -> web.Application:
    """The REST API application. The composition root runs it (web.AppRunner) and owns
    the pool and services in `deps`. `trusted_proxies`: reverse proxies whose
    X-Forwarded-For names the client (HITCALL_TRUSTED_PROXIES)."""
    registry = registry or build_registry()
    auth_service = AuthService(
        deps.pool,
        passwords=deps.passwords,
        policy=deps.throttle,
        session_ttl=deps.session_ttl,
        clock=deps.clock,
        role_scopes=registry.role_scopes(),
    )
    app = web.Application(
        middlewares=[_client_middleware(trusted_proxies), _metrics_middleware(deps), error_middleware],
        client_max_size=CSV_LIMIT,
    )
    app.on_response_prepare.append(_no_store)
    app[meta.SPEC_KEY] = build_openapi(registry)
    registry.install(app, deps, auth_service)
    return app


def create_metrics_app(metrics: CollectorRegistry, *, token: str | None) -> web.Application:
    """/metrics on a listener of its own (HITCALL_METRICS_HOST / HITCALL_METRICS_PORT), with
    the same bearer token check as on the API port."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return meta.metrics_response(request, metrics, token)

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/metrics", handler, allow_head=False)
    return app

"""The route registry: each route declares method, path, models, roles, scope and summary.
The same declarations produce the aiohttp routes (with authentication, role and scope
checks, input parsing and response serialisation) and the OpenAPI document."""

from __future__ import annotations

import ipaddress
import json
import re
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..auth import Actor, AuthService, Principal, Role
from ..auth.tokens import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, SESSION_PREFIX, bearer_token, csrf_valid
from ..errors import Forbidden, HitCallError, NotFound, Unauthorized
from ..logs import get_logger
from ..store import audit, supervision
from ..store.db import Connection, Executor
from .deps import ApiDeps
from .types import BIGINT_MAX

V1 = "/api/v1"
JSON_LIMIT = 1 << 20  # 1 MiB
JSON_MAX_DEPTH = 32  # arrays / objects nested deeper than any request model: refused before validation
CSV_LIMIT = 20 << 20  # 20 MiB
UUID_PARAMS = frozenset({"attempt_id", "recording_id"})
_PARAM_RE = re.compile(r"\{([a-z_]+)\}")
_ROUTE_PATTERNS = {
    int: r"[0-9]{1,19}",
    uuid.UUID: r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
}

_log = get_logger("hitcall.api")

Handler = Callable[["Ctx"], Awaitable[Any]]


class BodyTooLarge(HitCallError):
    status = 413
    code = "body_too_large"


class MalformedBody(HitCallError):
    status = 400
    code = "malformed_body"


class RequestInvalid(HitCallError):
    """Input that fails its model: 422 with one entry per field."""

    status = 422
    code = "validation_error"

    @classmethod
    def from_pydantic(cls, exc: ValidationError, where: str) -> RequestInvalid:
        fields = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or where,
                "in": where,
                "message": err["msg"].removeprefix("Value error, "),
                "type": err["type"],
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
        names = ", ".join(dict.fromkeys(f["field"] for f in fields))
        return cls(f"invalid {where}: {names}", details={"fields": fields})


@dataclass(frozen=True, kw_only=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    roles: frozenset[Role] | None  # None = public, no credentials
    scope: str | None = None  # API tokens need this scope
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None  # None (and no media) = 204 No Content
    status: int = 200
    media: str | None = None  # response media type when the handler streams a non-JSON body
    body_media: str = "application/json"  # or "text/csv" (the handler gets the text)
    max_body: int = JSON_LIMIT
    own_agent: bool = False  # {agent_id}: an agent only its own, a supervisor one of their campaigns'
    description: str | None = None
    other_responses: tuple[tuple[int, type[BaseModel]], ...] = ()  # further documented (status, body)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def path_params(self) -> dict[str, type]:
        return {n: (uuid.UUID if n in UUID_PARAMS else int) for n in _PARAM_RE.findall(self.path)}

    @property
    def aiohttp_path(self) -> str:
        types = self.path_params
        return _PARAM_RE.sub(lambda m: f"{{{m[1]}:{_ROUTE_PATTERNS[types[m[1]]]}}}", self.path)


class Registry:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            route = Route(method=method, path=path, handler=handler, **kw)
            for other in self.routes:
                if other.operation_id == route.operation_id:
                    raise ValueError(f"duplicate operation id {route.operation_id}")
                if (other.method, other.path) == (route.method, route.path):
                    raise ValueError(f"duplicate route {method} {path}")
            self.routes.append(route)
            return handler

        return register

    def role_scopes(self) -> dict[Role, frozenset[str]]:
        """Scopes an API token of each role can use: those of routes the role may call."""
        return {
            role: frozenset(r.scope for r in self.routes if r.scope and r.roles is not None and role in r.roles)
            for role in Role
        }

    def install(self, app: web.Application, deps: ApiDeps, auth: AuthService) -> None:
        for route in self.routes:
            app.router.add_route(
                route.method, route.aiohttp_path, _endpoint(route, deps, auth), name=route.operation_id
            )


@dataclass
class Ctx:
    """What a handler gets: parsed input, the caller and the dependencies."""

    request: web.Request
    deps: ApiDeps
    auth: AuthService
    route: Route
    principal: Principal | None
    params: dict[str, Any]
    query: Any
    body: Any
    source_ip: str | None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.deps.pool

    @property
    def me(self) -> Principal:
        assert self.principal is not None, "route is public"
        return self.principal

    @property
    def actor(self) -> Actor:
        return self.me.actor(self.source_ip)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def audit(
        self,
        conn: Executor,
        action: str,
        object_type: str | None = None,
        object_id: object = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await audit.record(
            conn,
            **self.actor.audit_fields(),
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            details=details,
        )

    async def notify_dialer(self, prompt: Awaitable[None]) -> None:
        """Tell the dialing engine about a committed change; the database stays the truth
        when that fails, so a failure is logged, not returned."""
        try:
            await prompt
        except Exception:
            _log.warning("dialer_notify_failed", route=self.route.operation_id, exc_info=True)

    async def stream(self, headers: dict[str, str], chunks: AsyncIterator[bytes]) -> web.StreamResponse:
        """Stream a body. A failure before the first chunk is an ordinary error response; a
        failure later is logged and the connection is cut, so the client sees a broken
        transfer rather than a short file."""
        it = aiter(chunks)
        first = await anext(it, b"")
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(self.request)
        await resp.write(first)
        try:
            async for chunk in it:
                await resp.write(chunk)
        except Exception:
            _log.error("api_stream_failed", route=self.route.operation_id, error_id=uuid.uuid4().hex, exc_info=True)
            if self.request.transport is not None:
                self.request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    def own_agent_only(self, agent_id: int | None) -> None:
        """Refuse an agent acting on anything but its own agent."""
        me = self.me
        if me.role is Role.AGENT and (me.agent_id is None or agent_id != me.agent_id):
            raise Forbidden("agents may act only on their own agent and calls", code="not_own_agent")

    async def supervised(self) -> frozenset[int] | None:
        """The campaigns a supervisor may reach (their phone's); None for the other roles,
        whose routes' roles and the agent's own-agent rule limit them."""
        me = self.me
        if me.role is not Role.SUPERVISOR:
            return None
        return await supervision.supervised_campaigns(self.pool, me.user_id)

    async def supervised_campaign_only(self, campaign_id: int | None) -> None:
        """Refuse a supervisor acting on a campaign they do not supervise."""
        mine = await self.supervised()
        if mine is not None and campaign_id not in mine:
            if campaign_id is not None and not await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1)", campaign_id
            ):
                raise NotFound(f"campaign {campaign_id} not found", details={"campaign_id": campaign_id})
            raise Forbidden(
                "the campaign is not one you supervise",
                details={"field": "campaign_id"},
                code="campaign_not_supervised",
            )

    async def supervised_list_only(self, *, list_id: int | None = None, contact_id: int | None = None) -> None:
        """Refuse a supervisor reaching a contact list (or a contact of one) of a campaign they do
        not supervise."""
        me = self.me
        if me.role is not Role.SUPERVISOR:
            return
        if contact_id is not None:
            list_id = await self.pool.fetchval("SELECT list_id FROM contacts WHERE id = $1", contact_id)
            if list_id is None:
                return  # no such contact: the route answers 404
        if list_id is not None and not await supervision.supervises_list(self.pool, me.user_id, list_id):
            raise Forbidden(
                "the list is of a campaign you do not supervise",
                details={"field": "contact_id" if contact_id is not None else "list_id"},
                code="campaign_not_supervised",
            )

    async def supervised_agent_only(self, agent_id: int | None) -> None:
        """Refuse a supervisor acting on an agent of no campaign they supervise."""
        me = self.me
        if me.role is Role.SUPERVISOR and (
            agent_id is None or not await supervision.supervises_agent(self.pool, me.user_id, agent_id)
        ):
            raise Forbidden(
                "the agent works on no campaign you supervise",
                details={"field": "agent_id"},
                code="agent_not_supervised",
            )


def found(row: Any, what: str, key: str, row_id: int) -> Any:
    """The row, or NotFound naming the missing resource and its id."""
    if row is None:
        raise NotFound(f"{what} {row_id} not found", details={key: row_id})
    return row


def source_ip(request: web.Request) -> str | None:
    remote = request.remote
    if not remote:
        return None
    try:
        return str(ipaddress.ip_address(remote))
    except ValueError:
        return None


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes", details={"limit_bytes": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes", details={"limit_bytes": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def _too_deep() -> MalformedBody:
    return MalformedBody(
        f"request body is nested more than {JSON_MAX_DEPTH} levels deep", details={"max_depth": JSON_MAX_DEPTH}
    )


def _nested_deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


def _parse_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        values = request.query.getall(name, [])
        if not values:
            continue
        data[name] = values if _is_list(info.annotation) else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid.from_pydantic(exc, "query") from None


async def _parse_body(route: Route, request: web.Request) -> Any:
    raw = await read_body(request, route.max_body)
    if route.body_media != "application/json":
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MalformedBody("request body is not UTF-8 text") from None
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise MalformedBody(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # the decoder's own depth guard: a body nested past the interpreter's limit
        raise _too_deep() from None
    if _nested_deeper_than(data, JSON_MAX_DEPTH):
        raise _too_deep()
    assert route.body is not None
    try:
        return route.body.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid.from_pydantic(exc, "body") from None


async def _authenticate(request: web.Request, auth: AuthService) -> Principal | None:
    """The caller: a bearer token, else the browser workspace's session cookie. A request
    by cookie that may change something needs the session's CSRF token in a header (a
    browser sends the cookie along with requests other sites make it send)."""
    token = bearer_token(request.headers.get("Authorization"))
    if token:
        return await auth.authenticate(token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not cookie.startswith(SESSION_PREFIX) or len(cookie) > 256:
        return None
    principal = await auth.authenticate(cookie)
    if (
        principal is not None
        and request.method not in SAFE_METHODS
        and not csrf_valid(cookie, request.headers.get(CSRF_HEADER))
    ):
        raise Forbidden(
            f"a request with the session cookie needs the {CSRF_HEADER} header of its session",
            details={"header": CSRF_HEADER},
            code="csrf_failed",
        )
    return principal


def _endpoint(route: Route, deps: ApiDeps, auth: AuthService) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    path_params = route.path_params

    async def endpoint(request: web.Request) -> web.StreamResponse:
        principal: Principal | None = None
        if route.roles is not None:
            principal = await _authenticate(request, auth)
            if principal is None:
                raise Unauthorized("a valid bearer token is required", code="unauthorized")
            if principal.role not in route.roles:
                raise Forbidden(f"role {principal.role.value} may not use this operation", code="forbidden_role")
            if not principal.allows_scope(route.scope):
                raise Forbidden(
                    f"this API token lacks scope {route.scope}",
                    details={"required_scope": route.scope},
                    code="insufficient_scope",
                )
        params: dict[str, Any] = {}
        for name, kind in path_params.items():
            text = request.match_info[name]
            value: Any = uuid.UUID(text) if kind is uuid.UUID else int(text)
            if kind is int and not 1 <= value <= BIGINT_MAX:
                raise NotFound(f"{name} {text} not found", details={name: text})
            params[name] = value
        ctx = Ctx(request, deps, auth, route, principal, params, None, None, source_ip(request))
        if route.own_agent:
            ctx.own_agent_only(params.get("agent_id"))
            await ctx.supervised_agent_only(params.get("agent_id"))
        if "campaign_id" in params:
            await ctx.supervised_campaign_only(params["campaign_id"])
        if "list_id" in params or "contact_id" in params:
            await ctx.supervised_list_only(list_id=params.get("list_id"), contact_id=params.get("contact_id"))
        if route.query is not None:
            ctx.query = _parse_query(route.query, request)
        if route.body is not None or route.body_media != "application/json":
            ctx.body = await _parse_body(route, request)
        result = await route.handler(ctx)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        assert route.response is not None, f"{route.operation_id} returned a body without a response model"
        model = result if isinstance(result, route.response) else route.response.model_validate(result)
        return web.Response(status=route.status, body=model.model_dump_json().encode(), content_type="application/json")

    endpoint.__name__ = route.operation_id
    return endpoint

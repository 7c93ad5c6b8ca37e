"""The HitCall workspace in the browser: login, the agent's desk, the supervisor's
wallboard, reports and the user's own settings, served beside the REST API on its port.

Sessions are the API's sessions (AuthService: argon2 users, login throttling, audited
logins); the token lives in an HttpOnly, SameSite=Strict cookie (Secure behind TLS).
The pages' JavaScript calls the REST API itself with that cookie and the session's CSRF
token in a header, so a page can do exactly what its user's role may do through the
API, checked by the same code. Every form carries the CSRF token too. Every page has a
strict Content-Security-Policy (no inline script); personal pages are `no-store`; no
personal data is put in a URL.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web
from aiohttp_sse import sse_response

from ..auth import AuthService, LoginThrottled, Principal, Role
from ..auth.tokens import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, SESSION_PREFIX, csrf_token, csrf_valid
from ..core.phone import validate_timezone
from ..errors import HitCallError, Unauthorized, ValidationFailed
from ..logs import get_logger
from ..store import audit, supervision
from .i18n import DEFAULT_LOCALE, DEFAULT_TIMEZONE, LOCALES, MESSAGES, PAUSE_CODES, Translator, locale_or_default
from .live import LiveHub, agent_message

log = get_logger("hitcall.web")

HERE = Path(__file__).parent
WEB = "/web"
LOGIN_COOKIE = "hitcall_login"  # the login form's own CSRF token (double submit), before any session
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The compliance report is a self-contained document with its own stylesheet: still no script at all.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
AGENT_ROLES = frozenset({Role.AGENT})
SUPERVISOR_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR})
REPORT_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE})
HUB_KEY = web.AppKey("hitcall_web_hub", LiveHub)


@dataclass
class WebDeps:
    pool: asyncpg.Pool
    auth: AuthService  # the API's users and sessions (login throttling, audited logins)
    hub: LiveHub | None = None  # None: no live pushes (the pages still load and act)
    ping_s: float = 15.0


@dataclass
class Viewer:
    """The logged-in user of a page request."""

    principal: Principal
    token: str
    locale: str
    timezone: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    @property
    def t(self) -> Translator:
        return Translator(self.locale)


# ---------------------------------------------------------------- headers ---
async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    path = request.path
    if path != "/" and not path.startswith(WEB):
        return
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if not path.startswith(f"{WEB}/static/"):
        h["Cache-Control"] = "no-store"


# ----------------------------------------------------------------- helpers ---
async def _viewer(request: web.Request, deps: WebDeps) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or not token.startswith(SESSION_PREFIX) or len(token) > 256:
        return None
    principal = await deps.auth.authenticate(token)
    if principal is None:
        return None
    row = await deps.pool.fetchrow("SELECT locale, timezone FROM users WHERE id = $1", principal.user_id)
    locale = locale_or_default(row["locale"] if row else None)
    tz = row["timezone"] if row else DEFAULT_TIMEZONE
    return Viewer(principal, token, locale, tz)


def _source_ip(request: web.Request) -> str | None:
    from ..api.registry import source_ip

    return source_ip(request)


def _browser_locale(request: web.Request) -> str:
    """Before login: the browser's preferred language among ours (default Finnish)."""
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LOCALES:
            return tag
    return DEFAULT_LOCALE


async def _colleagues(pool: Any, agent_id: int) -> list[dict[str, Any]]:
    """The agents of this agent's campaigns (transfer targets), by name."""
    rows = await pool.fetch(
        """SELECT DISTINCT a.id, a.name, a.number FROM agents a
           JOIN agent_campaigns ac ON ac.agent_id = a.id
           WHERE ac.campaign_id IN (SELECT campaign_id FROM agent_campaigns WHERE agent_id = $1)
             AND a.id <> $1
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id AND u.role <> 'agent')
           ORDER BY a.name, a.id""",
        agent_id,
    )
    return [dict(r) for r in rows]


def _render(request: web.Request, template: str, ctx: dict[str, Any], *, status: int = 200) -> web.Response:
    locale = ctx.get("locale", DEFAULT_LOCALE)
    ctx.setdefault("t", Translator(locale))
    # Inside <script type="application/json">: no "<" may end the element early.
    ctx.setdefault("messages_json", json.dumps(MESSAGES[locale], ensure_ascii=False).replace("<", "\\u003c"))
    response = aiohttp_jinja2.render_template(template, request, ctx, status=status)
    return response


def _page_ctx(viewer: Viewer, **extra: Any) -> dict[str, Any]:
    p = viewer.principal
    return {
        "locale": viewer.locale,
        "timezone": viewer.timezone,
        "csrf": viewer.csrf,
        "csrf_header": CSRF_HEADER,
        "csrf_field": CSRF_FIELD,
        "user": {"username": p.username, "role": p.role.value, "agent_id": p.agent_id},
        "can_agent": p.role in AGENT_ROLES and p.agent_id is not None,
        "can_wallboard": p.role in SUPERVISOR_ROLES,
        "can_reports": p.role in REPORT_ROLES,
        "page": None,
        **extra,
    }


def _refuse(request: web.Request, viewer: Viewer, message_key: str, status: int = 403) -> web.Response:
    t = viewer.t
    message = t(message_key, role=t(f"role.{viewer.principal.role.value}"))
    return _render(request, "error.html", _page_ctx(viewer, message=message), status=status)


Handler = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]


def _page(deps: WebDeps, roles: frozenset[Role] | None = None) -> Callable[[Handler], Any]:
    """A page for a logged-in user (of `roles`): to the login page without a session, a
    403 page for another role."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            viewer = await _viewer(request, deps)
            if viewer is None:
                if request.headers.get("Accept", "").startswith("text/event-stream"):
                    raise web.HTTPUnauthorized()
                raise web.HTTPSeeOther(f"{WEB}/login")
            if roles is not None and viewer.principal.role not in roles:
                return _refuse(request, viewer, "error.forbidden")
            return await fn(request, viewer)

        return handler

    return wrap


async def _form(request: web.Request, viewer: Viewer | None = None) -> dict[str, str]:
    """The posted form; a session's form must carry its CSRF token (403 otherwise)."""
    data = await request.post()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    if viewer is not None and not csrf_valid(viewer.token, form.get(CSRF_FIELD)):
        raise _CsrfRefused()
    return form


class _CsrfRefused(Exception):
    pass


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _cookie_args(request: web.Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": request.secure, "path": "/"}


# ------------------------------------------------------------------ setup ---
def setup_web(app: web.Application, deps: WebDeps) -> None:
    """Add the workspace's routes to the API's application."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static"] = lambda name: f"{WEB}/static/{name}"
    app.on_response_prepare.append(_security_headers)
    if deps.hub is not None:
        hub = deps.hub
        app[HUB_KEY] = hub

        async def _stop_streams(_app: web.Application) -> None:
            await hub.close()

        app.on_shutdown.append(_stop_streams)
    r = app.router
    r.add_static(f"{WEB}/static/", HERE / "static", name="web_static", append_version=False)

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{WEB}/")

    async def login_page(request: web.Request) -> web.StreamResponse:
        viewer = await _viewer(request, deps)
        if viewer is not None:
            raise web.HTTPSeeOther(f"{WEB}/")
        return _login_form(request, status=200, notice="login.logged_out" if "bye" in request.query else None)

    def _login_form(
        request: web.Request,
        *,
        status: int,
        error: str | None = None,
        notice: str | None = None,
        seconds: int | None = None,
    ) -> web.Response:
        locale = _browser_locale(request)
        token = secrets.token_urlsafe(32)
        t = Translator(locale)
        resp = _render(
            request,
            "login.html",
            {
                "locale": locale,
                "csrf": token,
                "csrf_field": CSRF_FIELD,
                "error": t(error, seconds=seconds or 0) if error else None,
                "notice": t(notice) if notice else None,
            },
            status=status,
        )
        resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, **{**_cookie_args(request), "path": f"{WEB}/login"})
        return resp

    async def login_submit(request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, form.get(CSRF_FIELD, "")):
            return _login_form(request, status=403, error="login.expired")
        username = form.get("username", "")[:64]
        password = form.get("password", "")[:1024]
        if not username or not password:
            return _login_form(request, status=422, error="login.failed")
        try:
            grant = await deps.auth.login(
                username, password, source_ip=_source_ip(request), user_agent=request.headers.get("User-Agent")
            )
        except LoginThrottled as exc:
            seconds = int((exc.details or {}).get("retry_after_s", 60))
            resp = _login_form(request, status=429, error="login.throttled", seconds=seconds)
            resp.headers["Retry-After"] = str(seconds)
            return resp
        except Unauthorized:
            return _login_form(request, status=401, error="login.failed")
        resp = _see_other(f"{WEB}/")
        max_age = int((grant.expires_at - datetime.now(UTC)).total_seconds())
        resp.set_cookie(SESSION_COOKIE, grant.token, max_age=max(max_age, 60), **_cookie_args(request))
        resp.del_cookie(LOGIN_COOKIE, path=f"{WEB}/login")
        return resp

    @_page(deps)
    async def logout(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        await _form(request, viewer)
        actor = viewer.principal.actor(_source_ip(request))
        await deps.auth.logout(viewer.principal, actor)
        resp = _see_other(f"{WEB}/login?bye=1")
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    @_page(deps)
    async def home(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        role = viewer.principal.role
        if role in AGENT_ROLES:
            raise web.HTTPSeeOther(f"{WEB}/agent")
        if role in SUPERVISOR_ROLES:
            raise web.HTTPSeeOther(f"{WEB}/supervisor")
        if role in REPORT_ROLES:
            raise web.HTTPSeeOther(f"{WEB}/reports")
        return _refuse(request, viewer, "error.forbidden")

    @_page(deps, AGENT_ROLES)
    async def agent_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        agent_id = viewer.principal.agent_id
        if agent_id is None:
            return _refuse(request, viewer, "error.no_agent")
        agent = await deps.pool.fetchrow("SELECT id, number, name FROM agents WHERE id = $1", agent_id)
        if agent is None:  # the agent was deleted since the session began
            return _refuse(request, viewer, "error.no_agent")
        return _render(
            request,
            "agent.html",
            _page_ctx(
                viewer,
                agent={"id": agent["id"], "number": agent["number"], "name": agent["name"]},
                colleagues=await _colleagues(deps.pool, agent_id),
                pause_codes=PAUSE_CODES,
                page="agent",
            ),
        )

    @_page(deps, SUPERVISOR_ROLES)
    async def supervisor_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        campaigns = await deps.pool.fetch("SELECT id, name, state, mode FROM campaigns ORDER BY id")
        if viewer.principal.role is Role.SUPERVISOR:  # their phone's campaigns only
            mine = await supervision.supervised_campaigns(deps.pool, viewer.principal.user_id)
            campaigns = [c for c in campaigns if c["id"] in mine]
        chosen: int | None = None
        text = request.query.get("campaign", "")
        if text.isdigit() and any(c["id"] == int(text) for c in campaigns):
            chosen = int(text)
        elif campaigns:
            running = [c for c in campaigns if c["state"] == "running"]
            chosen = (running or list(campaigns))[0]["id"]
        return _render(
            request,
            "supervisor.html",
            _page_ctx(
                viewer,
                campaigns=[dict(c) for c in campaigns],
                campaign_id=chosen,
                pause_codes=PAUSE_CODES,
                page="supervisor",
                today=datetime.now(UTC).date().isoformat(),
            ),
        )

    @_page(deps, REPORT_ROLES)
    async def reports_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        today = datetime.now(ZoneInfo(viewer.timezone)).date().isoformat()
        return _render(request, "reports.html", _page_ctx(viewer, today=today, page="reports"))

    @_page(deps, REPORT_ROLES)
    async def compliance_report(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        from ..report.compute import InboundDay
        from ..report.query import load_inbound_without_campaign, load_report
        from ..report.render import render

        try:
            day = date.fromisoformat(request.query.get("day", ""))
        except ValueError:
            day = datetime.now(UTC).date()
        reports = await load_report(deps.pool, day, None)
        unmatched: InboundDay | None = await load_inbound_without_campaign(deps.pool, day)
        if viewer.principal.role is Role.SUPERVISOR:  # their campaigns only; calls of no campaign are not theirs
            mine = await supervision.supervised_campaigns(deps.pool, viewer.principal.user_id)
            reports = [r for r in reports if r.campaign_id in mine]
            unmatched = None
        await audit.record(
            deps.pool,
            **viewer.principal.actor(_source_ip(request)).audit_fields(),
            action="report.view",
            object_type="report",
            object_id=f"compliance:{day.isoformat()}",
        )
        text = render(
            reports,
            "html",
            day=day,
            inbound_without_campaign=unmatched,
            locale=viewer.locale,
            zone=ZoneInfo(viewer.timezone),
        )
        resp = web.Response(text=text, content_type="text/html")
        resp.headers["Content-Security-Policy"] = REPORT_CSP
        return resp

    @_page(deps)
    async def settings_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        return _settings(request, viewer, notice=None, error=None)

    def _settings(
        request: web.Request, viewer: Viewer, *, notice: str | None, error: str | None, status: int = 200
    ) -> web.Response:
        zones = sorted(z for z in _zones() if "/" in z)
        return _render(
            request,
            "settings.html",
            _page_ctx(viewer, zones=zones, locales=LOCALES, notice=notice, error=error, page="settings"),
            status=status,
        )

    @_page(deps)
    async def settings_submit(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        form = await _form(request, viewer)
        locale = form.get("locale", "")
        tz = form.get("timezone", "")
        if locale not in LOCALES:
            return _settings(request, viewer, notice=None, error=viewer.t("settings.language"), status=422)
        try:
            validate_timezone(tz)
        except (ValidationFailed, HitCallError):
            return _settings(request, viewer, notice=None, error=viewer.t("settings.bad_timezone"), status=422)
        async with deps.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE users SET locale = $2, timezone = $3 WHERE id = $1", viewer.principal.user_id, locale, tz
            )
            await audit.record(
                conn,
                **viewer.principal.actor(_source_ip(request)).audit_fields(),
                action="user.preferences",
                object_type="user",
                object_id=viewer.principal.user_id,
                details={"locale": locale, "timezone": tz},
            )
        viewer = Viewer(viewer.principal, viewer.token, locale, tz)
        return _settings(request, viewer, notice=viewer.t("settings.saved"), error=None)

    @_page(deps, AGENT_ROLES)
    async def agent_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        hub = deps.hub
        agent_id = viewer.principal.agent_id
        if hub is None or agent_id is None:
            raise web.HTTPNotFound()
        if _gone(request):
            return web.Response(status=204)  # the page went away before its stream started
        sub = hub.agent_events(agent_id)
        try:
            async with sse_response(request, ping_interval=deps.ping_s) as resp:
                await resp.send(json.dumps({"type": "hello"}), event="hello")
                while resp.is_connected() and not sub.closed:
                    event = await sub.get(timeout=deps.ping_s)
                    if event is None:
                        continue
                    if sub.lagged:
                        sub.lagged = False
                        await resp.send(json.dumps({"type": "resync"}), event="resync")
                    await resp.send(json.dumps(agent_message(event)), event="agent")
                return resp
        except ConnectionResetError:  # the page went away
            return web.Response(status=204)
        finally:
            hub.untrack(sub)

    @_page(deps, SUPERVISOR_ROLES)
    async def wallboard_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        hub = deps.hub
        text = request.query.get("campaign", "")
        if hub is None or not text.isdigit():
            raise web.HTTPNotFound()
        if viewer.principal.role is Role.SUPERVISOR and int(text) not in await supervision.supervised_campaigns(
            deps.pool, viewer.principal.user_id
        ):
            raise web.HTTPForbidden()
        board = await hub.watch(int(text))
        sub = hub.campaign_events(board)
        try:
            if _gone(request):
                return web.Response(status=204)
            async with sse_response(request, ping_interval=deps.ping_s) as resp:
                await resp.send(json.dumps(board.snapshot(), default=str), event="snapshot")
                sent = board.version
                while resp.is_connected() and not sub.closed and not hub.closed:
                    event = await sub.get(timeout=0.25)
                    if event is not None:
                        hub.apply(board, event)
                        await resp.send(json.dumps(agent_message(event)), event="live")
                    if board.version != sent:  # also between events, however busy the campaign
                        sent = board.version
                        await resp.send(json.dumps(board.snapshot(), default=str), event="snapshot")
                return resp
        except ConnectionResetError:  # the page went away
            return web.Response(status=204)
        finally:
            hub.untrack(sub)
            hub.unwatch(board)

    r.add_get("/", root, allow_head=False)
    r.add_get(f"{WEB}", root, allow_head=False)
    r.add_get(f"{WEB}/", home, allow_head=False)
    r.add_get(f"{WEB}/login", login_page, allow_head=False)
    r.add_post(f"{WEB}/login", login_submit)
    r.add_post(f"{WEB}/logout", logout)
    r.add_get(f"{WEB}/agent", agent_page, allow_head=False)
    r.add_get(f"{WEB}/supervisor", supervisor_page, allow_head=False)
    r.add_get(f"{WEB}/reports", reports_page, allow_head=False)
    r.add_get(f"{WEB}/reports/compliance", compliance_report, allow_head=False)
    r.add_get(f"{WEB}/settings", settings_page, allow_head=False)
    r.add_post(f"{WEB}/settings", settings_submit)
    r.add_get(f"{WEB}/live/agent", agent_stream, allow_head=False)
    r.add_get(f"{WEB}/live/wallboard", wallboard_stream, allow_head=False)

    @web.middleware
    async def csrf_refusal(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except _CsrfRefused:
            viewer = await _viewer(request, deps)
            t = Translator(viewer.locale if viewer else _browser_locale(request))
            ctx = (
                _page_ctx(viewer, message=t("error.csrf"))
                if viewer
                else {"locale": t.locale, "message": t("error.csrf")}
            )
            return _render(request, "error.html", ctx, status=403)

    app.middlewares.append(csrf_refusal)


def _zones() -> set[str]:
    from zoneinfo import available_timezones

    return available_timezones()

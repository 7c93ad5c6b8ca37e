"""One JSON error shape for every failure: ``{"error": code, "message": str, "details": ...}``.

Typed errors keep their status; database constraint violations become 409 / 422 naming
the field; aiohttp's own 404 / 405 / 413 become JSON; anything unexpected is a 500 whose
``details.error_id`` is logged with the traceback.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from ..errors import Conflict, HitCallError, ValidationFailed
from ..logs import get_logger

_log = get_logger("hitcall.api")

# Constraints whose field is not in their name.
_CONSTRAINT_FIELDS = {
    "campaigns_window_check": "window_end",
    "campaigns_window_days_check": "window_days",
    "campaigns_caller_id_required": "caller_id",
    "campaigns_info_message_required": "info_message_sound",
    "campaign_lists_one_campaign_per_list": "campaign_id",
    "campaign_lists_pkey": "campaign_id",
    "contacts_list_phone_key": "phone",
    "contacts_list_external_key": "external_id",
    "contacts_permission_vs_prohibition": "marketing_permission",
    "dnc_entries_global_key": "phone",
    "dnc_entries_campaign_key": "phone",
    "users_username_key": "username",
    "agent_campaigns_pkey": "campaign_ids",
    "api_tokens_expiry_check": "expires_at",
    "recordings_hold_case_id_format": "case_id",
}
_UNAVAILABLE = (
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
_KEY_RE = re.compile(r"Key \(([a-z_]+)\)")


def json_error(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "message": message, "details": details}, status=status, headers=headers)


def _field(exc: asyncpg.PostgresError) -> str | None:
    name = getattr(exc, "constraint_name", None)
    if name in _CONSTRAINT_FIELDS:
        return _CONSTRAINT_FIELDS[name]
    column = getattr(exc, "column_name", None)
    if column:
        return column
    m = _KEY_RE.search(getattr(exc, "detail", None) or "")
    if m:
        return m[1]
    table = getattr(exc, "table_name", None) or ""
    if name and table and name.startswith(table + "_"):
        return re.sub(r"_(check|key|fkey)$", "", name[len(table) + 1 :])
    return None


def translate_db_error(exc: asyncpg.PostgresError) -> HitCallError | None:
    """The typed error for a constraint or data error, or None when it is not the caller's fault."""
    field = _field(exc)
    details = {"field": field} if field else None
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(f"{field or 'value'} already exists", details=details, code="already_exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        if "still referenced" in (exc.detail or ""):
            return Conflict("still in use by other records", details=details, code="in_use")
        return ValidationFailed(f"{field or 'a reference'} names something that does not exist", details=details)
    if isinstance(exc, (asyncpg.CheckViolationError, asyncpg.NotNullViolationError)):
        return ValidationFailed(f"{field or 'a value'} is not allowed here", details=details)
    if isinstance(exc, asyncpg.DataError):
        return ValidationFailed(f"invalid value: {str(exc).splitlines()[0]}", details=details)
    return None


def _validation_details(exc: HitCallError) -> Any:
    """ValidationFailed details always carry a ``fields`` list, like pydantic's 422s."""
    details = exc.details
    if isinstance(details, dict) and "field" in details and "fields" not in details:
        return {**details, "fields": [{"field": details["field"], "message": exc.message}]}
    return details


def _from_http(exc: web.HTTPException) -> web.Response:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return json_error(
            405,
            "method_not_allowed",
            f"{exc.method} is not allowed here",
            {"allowed": allowed},
            headers={"Allow": ", ".join(allowed)},
        )
    if isinstance(exc, web.HTTPNotFound):
        return json_error(404, "not_found", "no such resource")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return json_error(413, "body_too_large", "request body is too large")
    code = re.sub(r"[^a-z]+", "_", (exc.reason or "error").lower()).strip("_") or "error"
    return json_error(exc.status, code, exc.reason or "error")


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except HitCallError as exc:
        if exc.status >= 500:
            _log.warning("api_error", method=request.method, path=request.path, code=exc.code, error=exc.message)
        details = _validation_details(exc) if exc.status == 422 else exc.details
        headers = None
        if exc.status == 429 and isinstance(details, dict) and "retry_after_s" in details:
            headers = {"Retry-After": str(details["retry_after_s"])}
        return json_error(exc.status, exc.code, exc.message, details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc)
    except _UNAVAILABLE as exc:
        _log.warning("api_unavailable", method=request.method, path=request.path, error=repr(exc))
        return json_error(503, "unavailable", "a backing service is unavailable; try again")
    except asyncpg.PostgresError as exc:
        typed = translate_db_error(exc)
        if typed is None:
            return _internal(request, exc)
        details = _validation_details(typed) if typed.status == 422 else typed.details
        return json_error(typed.status, typed.code, typed.message, details)
    except Exception as exc:
        return _internal(request, exc)


def _internal(request: web.Request, exc: BaseException) -> web.Response:
    error_id = uuid.uuid4().hex
    _log.error("api_internal_error", error_id=error_id, method=request.method, path=request.path, exc_info=exc)
    return json_error(500, "internal_error", "internal error; quote error_id when reporting it", {"error_id": error_id})

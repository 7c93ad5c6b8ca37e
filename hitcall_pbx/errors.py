"""Typed errors shared by every layer.

Each error carries an HTTP-ish status, a stable machine code and details, so the
REST layer, the CLI and the logs all report the same thing.
"""

from __future__ import annotations

from typing import Any


class HitCallError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


class ConfigError(HitCallError):
    status = 500
    code = "config_error"


class ValidationFailed(HitCallError):
    status = 422
    code = "validation_error"


class NotFound(HitCallError):
    status = 404
    code = "not_found"


class Conflict(HitCallError):
    status = 409
    code = "conflict"


class Forbidden(HitCallError):
    status = 403
    code = "forbidden"


class Unauthorized(HitCallError):
    status = 401
    code = "unauthorized"


class Unavailable(HitCallError):
    status = 503
    code = "unavailable"

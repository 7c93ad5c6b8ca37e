"""Errors raised by the ARI client.

`http_status` is the status Asterisk answered with (None when it could not be reached);
`message` is the ARI error message. The class `status` is what the service itself reports
when such an error reaches its own API: a failing PBX is a bad gateway, an absent one unavailable.
"""

from __future__ import annotations

from hitcall_pbx.errors import HitCallError


class AriError(HitCallError):
    status = 502
    code = "ari_error"

    def __init__(self, message: str, *, http_status: int | None = None, endpoint: str | None = None) -> None:
        super().__init__(message, details={"http_status": http_status, "endpoint": endpoint})
        self.http_status = http_status
        self.endpoint = endpoint


class AriHttpError(AriError):
    """Asterisk answered with a 4xx/5xx status."""

    code = "ari_http_error"


class AriBadRequest(AriHttpError):
    """400 or 422: invalid parameters or body."""

    code = "ari_bad_request"


class AriNotFound(AriHttpError):
    """404: the channel, bridge, recording, ... does not exist (any more)."""

    code = "ari_not_found"


# What `POST /bridges/{id}/addChannel` answers when a side is no longer there: 400 for a
# channel gone, 404 for a bridge gone, 422 for a channel that has left Stasis (hung up).
BRIDGE_SIDE_GONE: tuple[type[AriHttpError], ...] = (AriBadRequest, AriNotFound)


class AriConflict(AriHttpError):
    """409: the resource exists already or is in the wrong state."""

    code = "ari_conflict"


class AriUnavailable(AriError):
    """Asterisk could not be reached: connection refused or reset, timeout."""

    status = 503
    code = "ari_unavailable"

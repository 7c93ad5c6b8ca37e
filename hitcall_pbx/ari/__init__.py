"""Thin ARI client on aiohttp: REST calls, typed resource and event models, typed errors."""

from hitcall_pbx.ari.client import AriClient, AriStats, Resync
from hitcall_pbx.ari.errors import (
    BRIDGE_SIDE_GONE,
    AriBadRequest,
    AriConflict,
    AriError,
    AriHttpError,
    AriNotFound,
    AriUnavailable,
)
from hitcall_pbx.ari.events import EVENT_MODELS, AnyEvent, AriEvent, UnknownEvent, parse_event
from hitcall_pbx.ari.models import (
    Application,
    AriDatetime,
    AsteriskInfo,
    Bridge,
    CallerID,
    Channel,
    LiveRecording,
    Playback,
    StoredRecording,
)
from hitcall_pbx.ari.port import AriPort, AriRestPort
from hitcall_pbx.ari.rest import ENDPOINTS, AriRest, Endpoint

__all__ = [
    "BRIDGE_SIDE_GONE",
    "ENDPOINTS",
    "EVENT_MODELS",
    "AnyEvent",
    "Application",
    "AriBadRequest",
    "AriClient",
    "AriConflict",
    "AriDatetime",
    "AriError",
    "AriEvent",
    "AriHttpError",
    "AriNotFound",
    "AriPort",
    "AriRest",
    "AriRestPort",
    "AriStats",
    "AriUnavailable",
    "AsteriskInfo",
    "Bridge",
    "CallerID",
    "Channel",
    "Endpoint",
    "LiveRecording",
    "Playback",
    "Resync",
    "StoredRecording",
    "UnknownEvent",
    "parse_event",
]

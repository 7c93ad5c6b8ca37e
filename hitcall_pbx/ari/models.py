"""ARI resource models, written from the `models` sections of the ARI Swagger 1.1 spec (Asterisk 22).

Properties the spec marks required are required here; the rest default to None. Unknown properties are
kept (`extra="allow"`) so that a newer Asterisk never breaks parsing. Instances are immutable snapshots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("ARI timestamp without a UTC offset")
    return value


AriDatetime = Annotated[datetime, AfterValidator(_require_aware)]
"""An ARI `Date` such as "2026-11-25T11:40:12.345+0000", parsed into an aware datetime."""


class AriModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class CallerID(AriModel):
    name: str
    number: str


class DialplanCEP(AriModel):
    context: str
    exten: str
    priority: int
    app_name: str
    app_data: str


class Channel(AriModel):
    id: str
    protocol_id: str
    name: str
    state: str
    caller: CallerID
    connected: CallerID
    accountcode: str
    dialplan: DialplanCEP
    creationtime: AriDatetime
    language: str
    channelvars: dict[str, str] | None = None
    caller_rdnis: str | None = None
    tenantid: str | None = None


class Bridge(AriModel):
    id: str
    technology: str
    bridge_type: str
    bridge_class: str
    creator: str
    name: str
    channels: list[str]
    video_mode: str | None = None
    video_source_id: str | None = None
    creationtime: AriDatetime
    bridgevars: dict[str, str] | None = None


class LiveRecording(AriModel):
    name: str
    format: str
    target_uri: str
    state: str
    duration: int | None = None
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None


class StoredRecording(AriModel):
    name: str
    format: str


class Playback(AriModel):
    id: str
    media_uri: str
    next_media_uri: str | None = None
    target_uri: str
    language: str | None = None
    state: str


class BuildInfo(AriModel):
    os: str
    kernel: str
    options: str
    machine: str
    date: str
    user: str


class SystemInfo(AriModel):
    version: str
    entity_id: str


class SetId(AriModel):
    user: str
    group: str


class ConfigInfo(AriModel):
    name: str
    default_language: str
    max_channels: int | None = None
    max_open_files: int | None = None
    max_load: float | None = None
    setid: SetId


class StatusInfo(AriModel):
    startup_time: AriDatetime
    last_reload_time: AriDatetime


class AsteriskInfo(AriModel):
    build: BuildInfo | None = None
    system: SystemInfo | None = None
    config: ConfigInfo | None = None
    status: StatusInfo | None = None


class AsteriskPing(AriModel):
    asterisk_id: str
    ping: str
    timestamp: str


class Module(AriModel):
    name: str
    description: str
    use_count: int
    status: str
    support_level: str


class Variable(AriModel):
    value: str


class Application(AriModel):
    name: str
    channel_ids: list[str]
    bridge_ids: list[str]
    endpoint_ids: list[str]
    device_names: list[str]
    events_allowed: list[dict[str, Any]]
    events_disallowed: list[dict[str, Any]]


class Endpoint(AriModel):
    technology: str
    resource: str
    state: str | None = None
    channel_ids: list[str]

"""Typed models of the events the ARI WebSocket delivers, from events.json of the ARI Swagger spec.

`parse_event` turns one decoded WebSocket message into one of these models. It never raises: a type the
service does not model, or a payload that fails validation, comes back as `UnknownEvent` with the raw data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hitcall_pbx.ari.models import AriDatetime, AriModel, Bridge, Channel, LiveRecording, Playback
from hitcall_pbx.logs import get_logger

log = get_logger(__name__)


class AriEvent(AriModel):
    """Fields of the spec's `Message` and `Event` base models, shared by every event."""

    type: str
    application: str
    timestamp: AriDatetime
    asterisk_id: str | None = None


class StasisStart(AriEvent):
    type: Literal["StasisStart"] = "StasisStart"
    args: list[str]
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(AriEvent):
    type: Literal["StasisEnd"] = "StasisEnd"
    channel: Channel


class ChannelCreated(AriEvent):
    type: Literal["ChannelCreated"] = "ChannelCreated"
    channel: Channel


class ChannelDestroyed(AriEvent):
    type: Literal["ChannelDestroyed"] = "ChannelDestroyed"
    cause: int
    cause_txt: str
    tech_cause: int | None = None
    channel: Channel


class ChannelStateChange(AriEvent):
    type: Literal["ChannelStateChange"] = "ChannelStateChange"
    channel: Channel


class ChannelHangupRequest(AriEvent):
    type: Literal["ChannelHangupRequest"] = "ChannelHangupRequest"
    cause: int | None = None
    tech_cause: int | None = None
    soft: bool | None = None
    channel: Channel


class ChannelDtmfReceived(AriEvent):
    type: Literal["ChannelDtmfReceived"] = "ChannelDtmfReceived"
    digit: str
    duration_ms: int
    channel: Channel


class ChannelEnteredBridge(AriEvent):
    type: Literal["ChannelEnteredBridge"] = "ChannelEnteredBridge"
    bridge: Bridge
    channel: Channel | None = None


class ChannelLeftBridge(AriEvent):
    type: Literal["ChannelLeftBridge"] = "ChannelLeftBridge"
    bridge: Bridge
    channel: Channel


class ChannelVarset(AriEvent):
    """`channel` is absent when a global variable was set."""

    type: Literal["ChannelVarset"] = "ChannelVarset"
    variable: str
    value: str
    channel: Channel | None = None


class ChannelDialplan(AriEvent):
    type: Literal["ChannelDialplan"] = "ChannelDialplan"
    channel: Channel
    dialplan_app: str
    dialplan_app_data: str


class ChannelCallerId(AriEvent):
    type: Literal["ChannelCallerId"] = "ChannelCallerId"
    caller_presentation: int
    caller_presentation_txt: str
    channel: Channel


class ChannelConnectedLine(AriEvent):
    type: Literal["ChannelConnectedLine"] = "ChannelConnectedLine"
    channel: Channel


class ChannelHold(AriEvent):
    type: Literal["ChannelHold"] = "ChannelHold"
    channel: Channel
    musicclass: str | None = None


class ChannelUnhold(AriEvent):
    type: Literal["ChannelUnhold"] = "ChannelUnhold"
    channel: Channel


class PlaybackStarted(AriEvent):
    type: Literal["PlaybackStarted"] = "PlaybackStarted"
    playback: Playback


class PlaybackContinuing(AriEvent):
    type: Literal["PlaybackContinuing"] = "PlaybackContinuing"
    playback: Playback


class PlaybackFinished(AriEvent):
    type: Literal["PlaybackFinished"] = "PlaybackFinished"
    playback: Playback


class RecordingStarted(AriEvent):
    type: Literal["RecordingStarted"] = "RecordingStarted"
    recording: LiveRecording


class RecordingFinished(AriEvent):
    type: Literal["RecordingFinished"] = "RecordingFinished"
    recording: LiveRecording


class RecordingFailed(AriEvent):
    type: Literal["RecordingFailed"] = "RecordingFailed"
    recording: LiveRecording


class Dial(AriEvent):
    type: Literal["Dial"] = "Dial"
    caller: Channel | None = None
    peer: Channel
    forward: str | None = None
    forwarded: Channel | None = None
    dialstring: str | None = None
    dialstatus: str


class BridgeCreated(AriEvent):
    type: Literal["BridgeCreated"] = "BridgeCreated"
    bridge: Bridge


class BridgeDestroyed(AriEvent):
    type: Literal["BridgeDestroyed"] = "BridgeDestroyed"
    bridge: Bridge


class ApplicationReplaced(AriEvent):
    """Another WebSocket registered the same application name; this connection no longer receives events."""

    type: Literal["ApplicationReplaced"] = "ApplicationReplaced"


AnyEvent = Annotated[
    StasisStart
    | StasisEnd
    | ChannelCreated
    | ChannelDestroyed
    | ChannelStateChange
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | ChannelVarset
    | ChannelDialplan
    | ChannelCallerId
    | ChannelConnectedLine
    | ChannelHold
    | ChannelUnhold
    | PlaybackStarted
    | PlaybackContinuing
    | PlaybackFinished
    | RecordingStarted
    | RecordingFinished
    | RecordingFailed
    | Dial
    | BridgeCreated
    | BridgeDestroyed
    | ApplicationReplaced,
    Field(discriminator="type"),
]
"""Every modelled event, discriminated on `type`."""

EVENT_MODELS: dict[str, type[AriEvent]] = {
    model.model_fields["type"].default: model for model in get_args(get_args(AnyEvent)[0])
}

_ADAPTER: TypeAdapter[AriEvent] = TypeAdapter(AnyEvent)


class UnknownEvent(BaseModel):
    """A message that is not one of the modelled events; `error` is set when a known type failed validation."""

    model_config = ConfigDict(frozen=True)

    type: str
    raw: Any
    error: str | None = None


def _describe(exc: ValidationError) -> str:
    # Locations and messages only: the input values may hold phone numbers and names.
    # Each location starts with the union tag (the event type), which the caller already knows.
    return "; ".join(
        f"{'.'.join(map(str, err['loc'][1:])) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )


def parse_event(data: dict[str, Any]) -> AriEvent | UnknownEvent:
    """Parse one decoded ARI WebSocket message. Never raises."""
    raw_type = data.get("type") if isinstance(data, dict) else None
    event_type = raw_type if isinstance(raw_type, str) else ""
    if event_type not in EVENT_MODELS:
        log.warning("ari.event.unknown", event_type=event_type)
        return UnknownEvent(type=event_type, raw=data)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        error = _describe(exc)
        log.warning("ari.event.invalid", event_type=event_type, error=error)
        return UnknownEvent(type=event_type, raw=data, error=error)

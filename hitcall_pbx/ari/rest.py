"""REST half of the ARI client, on aiohttp.

Every call the service makes is declared in `ENDPOINTS` with its swagger path template, method, query
parameters and body keys; tests/unit/test_ari_contract.py checks that table against the ARI Swagger spec,
and `AriRest._call` refuses any parameter the table does not declare.

About 540 lines: one typed method per ARI operation the service uses, each a few lines
over the shared request path; grouping them by resource would only spread that table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel
from yarl import URL

from hitcall_pbx.ari import models
from hitcall_pbx.ari.errors import AriBadRequest, AriConflict, AriHttpError, AriNotFound, AriUnavailable

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

M = TypeVar("M", bound=BaseModel)

QueryValue = str | int | bool | Sequence[str] | None
ChannelVariables = Mapping[str, str | Mapping[str, str | bool]]
"""Channel variables for a body `variables` key: a value, or {"value": ..., "report_events": true}."""


@dataclass(frozen=True)
class Endpoint:
    """One ARI operation: method, swagger path template, query parameter names, JSON body keys."""

    method: str
    path: str
    query: frozenset[str] = frozenset()
    body: frozenset[str] = frozenset()
    whole_body: bool = False
    """The one declared body parameter is the JSON body itself (a swagger body param of type
    `object`, e.g. eventFilter's `filter`), not a key in it."""
    urgent: bool = False
    """Sent over the client's own connections for the answer path, never queued for a
    connection behind a burst of originates."""

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.path))

    def render(self, path_params: Mapping[str, str]) -> str:
        if set(path_params) != self.placeholders:
            raise ValueError(f"{self.path} takes path params {sorted(self.placeholders)}, got {sorted(path_params)}")
        return _PLACEHOLDER.sub(lambda match: quote(str(path_params[match[1]]), safe=""), self.path)


def _ep(
    method: str, path: str, query: str = "", body: str = "", *, whole_body: bool = False, urgent: bool = False
) -> Endpoint:
    return Endpoint(method, path, frozenset(query.split()), frozenset(body.split()), whole_body, urgent)


_ORIGINATE = "endpoint extension context priority label app appArgs callerId timeout otherChannelId originator formats"
_RECORD = "name format maxDurationSeconds maxSilenceSeconds ifExists beep terminateOn"

ENDPOINTS: dict[str, Endpoint] = {
    "channels.list": _ep("GET", "/channels"),
    "channels.get": _ep("GET", "/channels/{channelId}"),
    "channels.originate": _ep("POST", "/channels/{channelId}", _ORIGINATE, body="variables"),
    "channels.create": _ep(
        "POST", "/channels/create", "endpoint app appArgs channelId otherChannelId originator formats", "variables"
    ),
    "channels.hangup": _ep("DELETE", "/channels/{channelId}", "reason reason_code"),
    "channels.answer": _ep("POST", "/channels/{channelId}/answer"),
    "channels.ring": _ep("POST", "/channels/{channelId}/ring"),
    "channels.ring_stop": _ep("DELETE", "/channels/{channelId}/ring"),
    "channels.continue": _ep("POST", "/channels/{channelId}/continue", "context extension priority label"),
    "channels.play": _ep("POST", "/channels/{channelId}/play", "media lang offsetms skipms playbackId"),
    "channels.record": _ep("POST", "/channels/{channelId}/record", _RECORD),
    "channels.snoop": _ep("POST", "/channels/{channelId}/snoop", "spy whisper app appArgs snoopId"),
    "channels.get_variable": _ep("GET", "/channels/{channelId}/variable", "variable"),
    "channels.set_variable": _ep("POST", "/channels/{channelId}/variable", "variable value"),
    "channels.send_dtmf": _ep("POST", "/channels/{channelId}/dtmf", "dtmf before between duration after"),
    "channels.mute": _ep("POST", "/channels/{channelId}/mute", "direction"),
    "channels.unmute": _ep("DELETE", "/channels/{channelId}/mute", "direction"),
    "channels.hold": _ep("POST", "/channels/{channelId}/hold"),
    "channels.unhold": _ep("DELETE", "/channels/{channelId}/hold"),
    "channels.start_moh": _ep("POST", "/channels/{channelId}/moh", "mohClass"),
    "channels.stop_moh": _ep("DELETE", "/channels/{channelId}/moh"),
    "bridges.list": _ep("GET", "/bridges"),
    "bridges.get": _ep("GET", "/bridges/{bridgeId}"),
    "bridges.create": _ep("POST", "/bridges", "type name"),
    "bridges.create_with_id": _ep("POST", "/bridges/{bridgeId}", "type name"),
    "bridges.destroy": _ep("DELETE", "/bridges/{bridgeId}"),
    "bridges.add_channel": _ep(
        "POST",
        "/bridges/{bridgeId}/addChannel",
        "channel role absorbDTMF mute inhibitConnectedLineUpdates",
        urgent=True,
    ),
    "bridges.remove_channel": _ep("POST", "/bridges/{bridgeId}/removeChannel", "channel"),
    "bridges.play": _ep("POST", "/bridges/{bridgeId}/play", "media lang offsetms skipms playbackId"),
    "bridges.record": _ep("POST", "/bridges/{bridgeId}/record", _RECORD),
    "bridges.start_moh": _ep("POST", "/bridges/{bridgeId}/moh", "mohClass"),
    "bridges.stop_moh": _ep("DELETE", "/bridges/{bridgeId}/moh"),
    "recordings.list_stored": _ep("GET", "/recordings/stored"),
    "recordings.get_stored": _ep("GET", "/recordings/stored/{recordingName}"),
    "recordings.get_stored_file": _ep("GET", "/recordings/stored/{recordingName}/file"),
    "recordings.copy_stored": _ep("POST", "/recordings/stored/{recordingName}/copy", "destinationRecordingName"),
    "recordings.delete_stored": _ep("DELETE", "/recordings/stored/{recordingName}"),
    "recordings.get_live": _ep("GET", "/recordings/live/{recordingName}"),
    "recordings.stop_live": _ep("POST", "/recordings/live/{recordingName}/stop"),
    "recordings.pause_live": _ep("POST", "/recordings/live/{recordingName}/pause"),
    "recordings.unpause_live": _ep("DELETE", "/recordings/live/{recordingName}/pause"),
    "recordings.mute_live": _ep("POST", "/recordings/live/{recordingName}/mute"),
    "recordings.unmute_live": _ep("DELETE", "/recordings/live/{recordingName}/mute"),
    "playbacks.get": _ep("GET", "/playbacks/{playbackId}"),
    "playbacks.stop": _ep("DELETE", "/playbacks/{playbackId}"),
    "asterisk.info": _ep("GET", "/asterisk/info", "only"),
    "asterisk.ping": _ep("GET", "/asterisk/ping"),
    "asterisk.list_modules": _ep("GET", "/asterisk/modules"),
    "asterisk.get_module": _ep("GET", "/asterisk/modules/{moduleName}"),
    "asterisk.get_global_var": _ep("GET", "/asterisk/variable", "variable"),
    "applications.list": _ep("GET", "/applications"),
    "applications.get": _ep("GET", "/applications/{applicationName}"),
    "applications.subscribe": _ep("POST", "/applications/{applicationName}/subscription", "eventSource"),
    "applications.unsubscribe": _ep("DELETE", "/applications/{applicationName}/subscription", "eventSource"),
    "applications.filter": _ep("PUT", "/applications/{applicationName}/eventFilter", body="filter", whole_body=True),
    "endpoints.get": _ep("GET", "/endpoints/{tech}/{resource}"),
}


def _encode(value: str | int | bool | Sequence[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return ",".join(value)


def _ari_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


_ERRORS: dict[int, type[AriHttpError]] = {400: AriBadRequest, 422: AriBadRequest, 404: AriNotFound, 409: AriConflict}


class AriRest:
    """Typed ARI REST calls. `base_url` ends in /ari; `headers` carry Authorization (aiohttp.encode_basic_auth)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        *,
        urgent: aiohttp.ClientSession | None = None,
    ) -> None:
        self._session = session
        self._urgent = urgent or session
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)

    async def _send(
        self,
        name: str,
        path_params: Mapping[str, str],
        query: Mapping[str, QueryValue] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> bytes:
        endpoint = ENDPOINTS[name]
        query = query or {}
        body = {k: v for k, v in (body or {}).items() if v is not None}
        if unknown := set(query) - endpoint.query:
            raise ValueError(f"{name}: undeclared query parameters {sorted(unknown)}")
        if unknown := set(body) - endpoint.body:
            raise ValueError(f"{name}: undeclared body keys {sorted(unknown)}")
        url = URL(self._base_url + endpoint.render(path_params), encoded=True)
        params = {k: _encode(v) for k, v in query.items() if v is not None}
        payload_json = next(iter(body.values()), None) if endpoint.whole_body else body or None
        try:
            session = self._urgent if endpoint.urgent else self._session
            async with session.request(
                endpoint.method, url, params=params, json=payload_json, headers=self._headers
            ) as response:
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AriUnavailable(f"ARI {endpoint.method} {endpoint.path}: {exc!r}", endpoint=name) from exc
        if response.status >= 400:
            error = _ERRORS.get(response.status, AriHttpError)
            raise error(_ari_message(payload) or response.reason or "", http_status=response.status, endpoint=name)
        return payload

    async def _call(
        self,
        name: str,
        path_params: Mapping[str, str],
        query: Mapping[str, QueryValue] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        payload = await self._send(name, path_params, query, body)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise AriHttpError(f"ARI {name}: response is not JSON", endpoint=name) from exc

    async def _one(self, model: type[M], name: str, path_params: Mapping[str, str], **kw: Any) -> M:
        return model.model_validate(await self._call(name, path_params, **kw))

    async def _many(self, model: type[M], name: str, path_params: Mapping[str, str], **kw: Any) -> list[M]:
        return [model.model_validate(item) for item in await self._call(name, path_params, **kw)]

    # channels

    async def list_channels(self) -> list[models.Channel]:
        return await self._many(models.Channel, "channels.list", {})

    async def channel_states(self) -> dict[str, tuple[str, str]]:
        """Every channel's id → (state, dialplan application), read from the raw listing
        without building models: cheap enough to poll with hundreds of channels up."""
        return {
            c["id"]: (c.get("state", ""), (c.get("dialplan") or {}).get("app_name", ""))
            for c in await self._call("channels.list", {}) or ()
        }

    async def get_channel(self, channel_id: str) -> models.Channel:
        return await self._one(models.Channel, "channels.get", {"channelId": channel_id})

    async def originate(
        self,
        endpoint: str,
        channel_id: str,
        *,
        app: str | None = None,
        app_args: str | Sequence[str] | None = None,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
        caller_id: str | None = None,
        timeout: int | None = None,
        other_channel_id: str | None = None,
        originator: str | None = None,
        formats: str | Sequence[str] | None = None,
        variables: ChannelVariables | None = None,
    ) -> models.Channel:
        query = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": app_args,
            "context": context,
            "extension": extension,
            "priority": priority,
            "label": label,
            "callerId": caller_id,
            "timeout": timeout,
            "otherChannelId": other_channel_id,
            "originator": originator,
            "formats": formats,
        }
        return await self._one(
            models.Channel, "channels.originate", {"channelId": channel_id}, query=query, body={"variables": variables}
        )

    async def create_channel(
        self,
        endpoint: str,
        app: str,
        *,
        channel_id: str | None = None,
        app_args: str | Sequence[str] | None = None,
        other_channel_id: str | None = None,
        originator: str | None = None,
        formats: str | Sequence[str] | None = None,
        variables: ChannelVariables | None = None,
    ) -> models.Channel:
        query = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": app_args,
            "channelId": channel_id,
            "otherChannelId": other_channel_id,
            "originator": originator,
            "formats": formats,
        }
        return await self._one(models.Channel, "channels.create", {}, query=query, body={"variables": variables})

    async def hangup(self, channel_id: str, *, reason: str | None = None, reason_code: str | None = None) -> None:
        await self._call("channels.hangup", {"channelId": channel_id}, {"reason": reason, "reason_code": reason_code})

    async def answer(self, channel_id: str) -> None:
        await self._call("channels.answer", {"channelId": channel_id})

    async def ring(self, channel_id: str) -> None:
        await self._call("channels.ring", {"channelId": channel_id})

    async def ring_stop(self, channel_id: str) -> None:
        await self._call("channels.ring_stop", {"channelId": channel_id})

    async def continue_in_dialplan(
        self,
        channel_id: str,
        *,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        query = {"context": context, "extension": extension, "priority": priority, "label": label}
        await self._call("channels.continue", {"channelId": channel_id}, query)

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        *,
        playback_id: str | None = None,
        lang: str | None = None,
        offsetms: int | None = None,
        skipms: int | None = None,
    ) -> models.Playback:
        query = {"media": media, "playbackId": playback_id, "lang": lang, "offsetms": offsetms, "skipms": skipms}
        return await self._one(models.Playback, "channels.play", {"channelId": channel_id}, query=query)

    async def record(
        self,
        channel_id: str,
        name: str,
        format: str,
        *,
        max_duration: int | None = None,
        max_silence: int | None = None,
        if_exists: str | None = None,
        beep: bool | None = None,
        terminate_on: str | None = None,
    ) -> models.LiveRecording:
        query = _record_query(name, format, max_duration, max_silence, if_exists, beep, terminate_on)
        return await self._one(models.LiveRecording, "channels.record", {"channelId": channel_id}, query=query)

    async def snoop(
        self,
        channel_id: str,
        app: str,
        *,
        spy: str | None = None,
        whisper: str | None = None,
        app_args: str | Sequence[str] | None = None,
        snoop_id: str | None = None,
    ) -> models.Channel:
        query = {"app": app, "spy": spy, "whisper": whisper, "appArgs": app_args, "snoopId": snoop_id}
        return await self._one(models.Channel, "channels.snoop", {"channelId": channel_id}, query=query)

    async def get_variable(self, channel_id: str, variable: str) -> str:
        found = await self._one(
            models.Variable, "channels.get_variable", {"channelId": channel_id}, query={"variable": variable}
        )
        return found.value

    async def set_variable(self, channel_id: str, variable: str, value: str | None) -> None:
        await self._call("channels.set_variable", {"channelId": channel_id}, {"variable": variable, "value": value})

    async def send_dtmf(
        self,
        channel_id: str,
        dtmf: str,
        *,
        before: int | None = None,
        between: int | None = None,
        duration: int | None = None,
        after: int | None = None,
    ) -> None:
        query = {"dtmf": dtmf, "before": before, "between": between, "duration": duration, "after": after}
        await self._call("channels.send_dtmf", {"channelId": channel_id}, query)

    async def mute(self, channel_id: str, direction: str | None = None) -> None:
        await self._call("channels.mute", {"channelId": channel_id}, {"direction": direction})

    async def unmute(self, channel_id: str, direction: str | None = None) -> None:
        await self._call("channels.unmute", {"channelId": channel_id}, {"direction": direction})

    async def hold(self, channel_id: str) -> None:
        await self._call("channels.hold", {"channelId": channel_id})

    async def unhold(self, channel_id: str) -> None:
        await self._call("channels.unhold", {"channelId": channel_id})

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self._call("channels.start_moh", {"channelId": channel_id}, {"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self._call("channels.stop_moh", {"channelId": channel_id})

    # bridges

    async def list_bridges(self) -> list[models.Bridge]:
        return await self._many(models.Bridge, "bridges.list", {})

    async def get_bridge(self, bridge_id: str) -> models.Bridge:
        return await self._one(models.Bridge, "bridges.get", {"bridgeId": bridge_id})

    async def create_bridge(
        self, bridge_id: str | None = None, type: str | Sequence[str] = "mixing", name: str | None = None
    ) -> models.Bridge:
        query = {"type": type, "name": name}
        if bridge_id is None:
            return await self._one(models.Bridge, "bridges.create", {}, query=query)
        return await self._one(models.Bridge, "bridges.create_with_id", {"bridgeId": bridge_id}, query=query)

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._call("bridges.destroy", {"bridgeId": bridge_id})

    async def add_channel(
        self,
        bridge_id: str,
        channel: str | Sequence[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
        inhibit_connected_line_updates: bool | None = None,
    ) -> None:
        query = {
            "channel": channel,
            "role": role,
            "absorbDTMF": absorb_dtmf,
            "mute": mute,
            "inhibitConnectedLineUpdates": inhibit_connected_line_updates,
        }
        await self._call("bridges.add_channel", {"bridgeId": bridge_id}, query)

    async def remove_channel(self, bridge_id: str, channel: str | Sequence[str]) -> None:
        await self._call("bridges.remove_channel", {"bridgeId": bridge_id}, {"channel": channel})

    async def play_on_bridge(
        self,
        bridge_id: str,
        media: str | Sequence[str],
        *,
        playback_id: str | None = None,
        lang: str | None = None,
        offsetms: int | None = None,
        skipms: int | None = None,
    ) -> models.Playback:
        query = {"media": media, "playbackId": playback_id, "lang": lang, "offsetms": offsetms, "skipms": skipms}
        return await self._one(models.Playback, "bridges.play", {"bridgeId": bridge_id}, query=query)

    async def record_bridge(
        self,
        bridge_id: str,
        name: str,
        format: str,
        *,
        max_duration: int | None = None,
        max_silence: int | None = None,
        if_exists: str | None = None,
        beep: bool | None = None,
        terminate_on: str | None = None,
    ) -> models.LiveRecording:
        query = _record_query(name, format, max_duration, max_silence, if_exists, beep, terminate_on)
        return await self._one(models.LiveRecording, "bridges.record", {"bridgeId": bridge_id}, query=query)

    async def start_bridge_moh(self, bridge_id: str, moh_class: str | None = None) -> None:
        await self._call("bridges.start_moh", {"bridgeId": bridge_id}, {"mohClass": moh_class})

    async def stop_bridge_moh(self, bridge_id: str) -> None:
        await self._call("bridges.stop_moh", {"bridgeId": bridge_id})

    # recordings

    async def list_stored(self) -> list[models.StoredRecording]:
        return await self._many(models.StoredRecording, "recordings.list_stored", {})

    async def get_stored(self, name: str) -> models.StoredRecording:
        return await self._one(models.StoredRecording, "recordings.get_stored", {"recordingName": name})

    async def get_stored_file(self, name: str) -> bytes:
        return await self._send("recordings.get_stored_file", {"recordingName": name})

    async def copy_stored(self, name: str, destination: str) -> models.StoredRecording:
        return await self._one(
            models.StoredRecording,
            "recordings.copy_stored",
            {"recordingName": name},
            query={"destinationRecordingName": destination},
        )

    async def delete_stored(self, name: str) -> None:
        await self._call("recordings.delete_stored", {"recordingName": name})

    async def get_live(self, name: str) -> models.LiveRecording:
        return await self._one(models.LiveRecording, "recordings.get_live", {"recordingName": name})

    async def stop_live(self, name: str) -> None:
        await self._call("recordings.stop_live", {"recordingName": name})

    async def pause_live(self, name: str) -> None:
        """Pause a live recording: nothing is written until it is unpaused (the paused time is left out)."""
        await self._call("recordings.pause_live", {"recordingName": name})

    async def unpause_live(self, name: str) -> None:
        await self._call("recordings.unpause_live", {"recordingName": name})

    async def mute_live(self, name: str) -> None:
        """Mute a live recording: silence is written in place of the audio until it is unmuted."""
        await self._call("recordings.mute_live", {"recordingName": name})

    async def unmute_live(self, name: str) -> None:
        await self._call("recordings.unmute_live", {"recordingName": name})

    # playbacks

    async def get_playback(self, playback_id: str) -> models.Playback:
        return await self._one(models.Playback, "playbacks.get", {"playbackId": playback_id})

    async def stop_playback(self, playback_id: str) -> None:
        await self._call("playbacks.stop", {"playbackId": playback_id})

    # asterisk

    async def get_info(self, only: str | Sequence[str] | None = None) -> models.AsteriskInfo:
        return await self._one(models.AsteriskInfo, "asterisk.info", {}, query={"only": only})

    async def ping(self) -> models.AsteriskPing:
        return await self._one(models.AsteriskPing, "asterisk.ping", {})

    async def list_modules(self) -> list[models.Module]:
        return await self._many(models.Module, "asterisk.list_modules", {})

    async def get_module(self, name: str) -> models.Module:
        return await self._one(models.Module, "asterisk.get_module", {"moduleName": name})

    async def get_global_var(self, variable: str) -> str:
        found = await self._one(models.Variable, "asterisk.get_global_var", {}, query={"variable": variable})
        return found.value

    # applications

    async def list_applications(self) -> list[models.Application]:
        return await self._many(models.Application, "applications.list", {})

    async def get_application(self, app: str) -> models.Application:
        return await self._one(models.Application, "applications.get", {"applicationName": app})

    async def subscribe(self, app: str, event_source: str | Sequence[str]) -> models.Application:
        query = {"eventSource": event_source}
        return await self._one(models.Application, "applications.subscribe", {"applicationName": app}, query=query)

    async def unsubscribe(self, app: str, event_source: str | Sequence[str]) -> models.Application:
        query = {"eventSource": event_source}
        return await self._one(models.Application, "applications.unsubscribe", {"applicationName": app}, query=query)

    async def filter_events(self, app: str, *, disallowed: Sequence[str]) -> models.Application:
        """Asterisk stops sending the app these event types (it never serialises or writes them)."""
        body = {"filter": {"disallowed": [{"type": t} for t in disallowed]}}
        return await self._one(models.Application, "applications.filter", {"applicationName": app}, body=body)

    # endpoints

    async def get_endpoint(self, tech: str, resource: str) -> models.Endpoint:
        return await self._one(models.Endpoint, "endpoints.get", {"tech": tech, "resource": resource})


def _record_query(
    name: str,
    format: str,
    max_duration: int | None,
    max_silence: int | None,
    if_exists: str | None,
    beep: bool | None,
    terminate_on: str | None,
) -> dict[str, QueryValue]:
    return {
        "name": name,
        "format": format,
        "maxDurationSeconds": max_duration,
        "maxSilenceSeconds": max_silence,
        "ifExists": if_exists,
        "beep": beep,
        "terminateOn": terminate_on,
    }

"""A small in-memory `AriPort` for unit and integration tests of one layer: it records
every request in order and answers with minimal well-formed models. It proves nothing
about Asterisk; the tests in tests/asterisk do that."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hitcall_pbx.ari import AriPort, AriRestPort
from hitcall_pbx.ari.models import Application, Bridge, Channel, LiveRecording, Playback

_CALLER = {"name": "", "number": ""}
_DIALPLAN = {"context": "", "exten": "", "priority": 1, "app_name": "", "app_data": ""}
_CREATED = "2026-11-25T12:00:00.000+0000"


@dataclass(frozen=True)
class Request:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FakeAriRest:
    """Every `AriRestPort` request, recorded; bridges created here are remembered."""

    requests: list[Request] = field(default_factory=list)
    bridges: dict[str, list[str]] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)

    def _note(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.requests.append(Request(method, args, kwargs))

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    async def originate(self, endpoint: str, channel_id: str, **kw: Any) -> Channel:
        self._note("originate", endpoint, channel_id, **kw)
        return Channel.model_validate(
            {
                "id": channel_id,
                "protocol_id": "",
                "name": f"{endpoint}-00000001;1",
                "state": "Down",
                "caller": _CALLER,
                "connected": _CALLER,
                "accountcode": "",
                "dialplan": _DIALPLAN,
                "creationtime": _CREATED,
                "language": "en",
            }
        )

    async def channel_states(self) -> dict[str, tuple[str, str]]:
        self._note("channel_states")
        return {}

    async def hangup(self, channel_id: str, **kw: Any) -> None:
        self._note("hangup", channel_id, **kw)

    async def answer(self, channel_id: str) -> None:
        self._note("answer", channel_id)

    async def snoop(self, channel_id: str, app: str, **kw: Any) -> Channel:
        self._note("snoop", channel_id, app, **kw)
        snoop_id = kw.get("snoop_id") or f"snoop-{len(self.requests)}"
        return Channel.model_validate(
            {
                "id": snoop_id,
                "protocol_id": "",
                "name": f"Snoop/{channel_id}-00000001",
                "state": "Up",
                "caller": _CALLER,
                "connected": _CALLER,
                "accountcode": "",
                "dialplan": _DIALPLAN,
                "creationtime": _CREATED,
                "language": "en",
            }
        )

    async def continue_in_dialplan(self, channel_id: str, **kw: Any) -> None:
        self._note("continue_in_dialplan", channel_id, **kw)

    async def play(self, channel_id: str, media: str | Sequence[str], **kw: Any) -> Playback:
        self._note("play", channel_id, media, **kw)
        first = media if isinstance(media, str) else media[0]
        return Playback(
            id=kw.get("playback_id") or f"pb-{len(self.requests)}",
            media_uri=first,
            target_uri=f"channel:{channel_id}",
            state="queued",
        )

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        self._note("start_moh", channel_id, moh_class)

    async def stop_moh(self, channel_id: str) -> None:
        self._note("stop_moh", channel_id)

    def _bridge(self, bridge_id: str) -> Bridge:
        return Bridge.model_validate(
            {
                "id": bridge_id,
                "technology": "simple_bridge",
                "bridge_type": "mixing",
                "bridge_class": "stasis",
                "creator": "Stasis",
                "name": bridge_id,
                "channels": list(self.bridges.get(bridge_id, [])),
                "creationtime": _CREATED,
            }
        )

    async def get_bridge(self, bridge_id: str) -> Bridge:
        self._note("get_bridge", bridge_id)
        return self._bridge(bridge_id)

    async def create_bridge(
        self, bridge_id: str | None = None, type: str | Sequence[str] = "mixing", name: str | None = None
    ) -> Bridge:
        self._note("create_bridge", bridge_id, type=type, name=name)
        bridge_id = bridge_id or f"bridge-{len(self.requests)}"
        self.bridges.setdefault(bridge_id, [])
        return self._bridge(bridge_id)

    async def destroy_bridge(self, bridge_id: str) -> None:
        self._note("destroy_bridge", bridge_id)
        self.bridges.pop(bridge_id, None)

    async def add_channel(self, bridge_id: str, channel: str | Sequence[str], **kw: Any) -> None:
        self._note("add_channel", bridge_id, channel, **kw)
        self.bridges.setdefault(bridge_id, []).extend([channel] if isinstance(channel, str) else channel)

    async def remove_channel(self, bridge_id: str, channel: str | Sequence[str]) -> None:
        self._note("remove_channel", bridge_id, channel)
        gone = {channel} if isinstance(channel, str) else set(channel)
        self.bridges[bridge_id] = [c for c in self.bridges.get(bridge_id, []) if c not in gone]

    async def record_bridge(self, bridge_id: str, name: str, format: str, **kw: Any) -> LiveRecording:
        self._note("record_bridge", bridge_id, name, format, **kw)
        return LiveRecording(name=name, format=format, target_uri=f"bridge:{bridge_id}", state="queued")

    async def stop_live(self, name: str) -> None:
        self._note("stop_live", name)

    async def mute_live(self, name: str) -> None:
        self._note("mute_live", name)

    async def set_variable(self, channel_id: str, variable: str, value: str | None) -> None:
        self._note("set_variable", channel_id, variable, value)

    async def unmute_live(self, name: str) -> None:
        self._note("unmute_live", name)

    async def get_global_var(self, variable: str) -> str:
        self._note("get_global_var", variable)
        return self.globals.get(variable, "")

    async def get_stored_file(self, name: str) -> bytes:
        self._note("get_stored_file", name)
        return self.stored[name]

    async def delete_stored(self, name: str) -> None:
        self._note("delete_stored", name)
        self.stored.pop(name, None)

    async def stop_playback(self, playback_id: str) -> None:
        self._note("stop_playback", playback_id)

    async def subscribe(self, app: str, event_source: str | Sequence[str]) -> Application:
        self._note("subscribe", app, event_source)
        return Application(
            name=app,
            channel_ids=[],
            bridge_ids=[],
            endpoint_ids=[],
            device_names=[],
            events_allowed=[],
            events_disallowed=[],
        )


@dataclass
class FakeAri:
    """An `AriPort`: the fake REST half, the Stasis app name, and the connected flag."""

    rest: FakeAriRest = field(default_factory=FakeAriRest)
    app: str = "hitcall"
    connected: asyncio.Event = field(default_factory=asyncio.Event)


def _satisfies(ari: FakeAri, rest: FakeAriRest) -> tuple[AriPort, AriRestPort]:
    return ari, rest  # checked by mypy: the fakes stay in step with the Protocols

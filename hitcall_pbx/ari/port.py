"""What the call-handling parts use of the ARI client, as Protocols.

The dialer, the agent sessions, the inbound router and the recorder take an `AriPort`,
not the aiohttp client: `AriClient` satisfies it as it is, and so does any small fake
with these members. Signatures are those of `AriRest`; a part that needs another call
adds it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from .models import Application, Bridge, Channel, LiveRecording, Playback
from .rest import ChannelVariables

__all__ = ["AriPort", "AriRestPort"]


class AriRestPort(Protocol):
    """The ARI REST requests the call-handling parts send (a subset of `AriRest`)."""

    # channels
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
    ) -> Channel: ...

    async def channel_states(self) -> dict[str, tuple[str, str]]: ...

    async def hangup(self, channel_id: str, *, reason: str | None = None, reason_code: str | None = None) -> None: ...

    async def answer(self, channel_id: str) -> None: ...

    async def snoop(
        self,
        channel_id: str,
        app: str,
        *,
        spy: str | None = None,
        whisper: str | None = None,
        app_args: str | Sequence[str] | None = None,
        snoop_id: str | None = None,
    ) -> Channel: ...

    async def continue_in_dialplan(
        self,
        channel_id: str,
        *,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None: ...

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        *,
        playback_id: str | None = None,
        lang: str | None = None,
        offsetms: int | None = None,
        skipms: int | None = None,
    ) -> Playback: ...

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None: ...

    async def stop_moh(self, channel_id: str) -> None: ...

    # bridges
    async def get_bridge(self, bridge_id: str) -> Bridge: ...

    async def create_bridge(
        self, bridge_id: str | None = None, type: str | Sequence[str] = "mixing", name: str | None = None
    ) -> Bridge: ...

    async def destroy_bridge(self, bridge_id: str) -> None: ...

    async def start_bridge_moh(self, bridge_id: str, moh_class: str | None = None) -> None: ...

    async def stop_bridge_moh(self, bridge_id: str) -> None: ...

    async def add_channel(
        self,
        bridge_id: str,
        channel: str | Sequence[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
        inhibit_connected_line_updates: bool | None = None,
    ) -> None: ...

    async def remove_channel(self, bridge_id: str, channel: str | Sequence[str]) -> None: ...

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
    ) -> LiveRecording: ...

    # recordings and playbacks
    async def stop_live(self, name: str) -> None: ...

    async def mute_live(self, name: str) -> None: ...

    async def set_variable(self, channel_id: str, variable: str, value: str | None) -> None: ...

    async def unmute_live(self, name: str) -> None: ...

    async def get_stored_file(self, name: str) -> bytes: ...

    # asterisk
    async def get_global_var(self, variable: str) -> str: ...

    async def delete_stored(self, name: str) -> None: ...

    async def stop_playback(self, playback_id: str) -> None: ...

    # applications
    async def subscribe(self, app: str, event_source: str | Sequence[str]) -> Application: ...


class AriPort(Protocol):
    """The ARI client as the call-handling parts see it: its REST requests, the Stasis
    application it registered, and whether the events socket is connected now."""

    @property
    def rest(self) -> AriRestPort: ...

    @property
    def app(self) -> str: ...

    @property
    def connected(self) -> asyncio.Event: ...

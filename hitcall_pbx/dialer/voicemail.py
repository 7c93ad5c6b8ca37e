"""Voicemail drop: with AMD on, a campaign may leave its recorded message on an answering
machine instead of hanging up.

AMD's MACHINE verdict comes back from the dialplan as Stasis arguments (`connect`). For
a campaign with voicemail drop the machine's channel is continued into the dialplan
context `hitcall-voicemail` with the message's sound name in ``HITCALL_VM_MESSAGE``: it
waits for the end of the greeting and its beep (a second of silence, `WaitForSilence`),
plays the message (`Playback`) and comes back to Stasis as
``voicemail,<WAITSTATUS>,<PLAYBACKSTATUS>``. The message counts as left only when it came
back with SILENCE and SUCCESS: a machine that hangs up during the message never comes
back (its channel is destroyed in the dialplan), one that never went silent comes back
with TIMEOUT. Either way HitCall then hangs up; the outcome stays answered_machine and
the CDR says ``voicemail_dropped``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..ari import AriError
from ..logs import get_logger
from .calls import LiveCall

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.voicemail")

VOICEMAIL_CONTEXT = "hitcall-voicemail"
# A machine may take this long for the rest of its greeting, its beep and the message
# (the dialplan waits up to 20 s for the beep; keep messages under a minute).
VOICEMAIL_MAX_S = 90.0
MESSAGE_VARIABLE = "HITCALL_VM_MESSAGE"
# A sound name (no extension): up to four segments of A-Z a-z 0-9 _ -, no dots, so no path
# traversal; the same rule as campaigns.voicemail_message.
SOUND_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}")


def message_left(results: list[str]) -> bool:
    """Whether the Stasis arguments after ``voicemail`` say the message was played to the end."""
    wait = results[0] if results else ""
    played = results[1] if len(results) > 1 else ""
    return wait == "SILENCE" and played == "SUCCESS"


def voicemail_time(call: LiveCall) -> float:
    """The extra time an answered call may stay unbridged: a machine leaving a message."""
    wanted = call.fsm.amd_status == "MACHINE" and call.campaign.voicemail_drop
    return VOICEMAIL_MAX_S if wanted else 0.0


class VoicemailDrop:
    def __init__(self, dialer: Dialer, *, context: str = VOICEMAIL_CONTEXT) -> None:
        self.d = dialer
        self.context = context

    def wanted(self, call: LiveCall) -> bool:
        message = call.campaign.voicemail_message
        return call.campaign.voicemail_drop and message is not None and SOUND_NAME.fullmatch(message) is not None

    async def leave(self, call: LiveCall) -> None:
        """An answering machine of a campaign with voicemail drop: into the dialplan that
        waits for the beep and plays the message (hung up when that cannot start)."""
        assert call.campaign.voicemail_message is not None
        try:
            await self.d.ari.rest.set_variable(call.channel_id, MESSAGE_VARIABLE, call.campaign.voicemail_message)
            await self.d.ari.rest.continue_in_dialplan(call.channel_id, context=self.context, extension="s", priority=1)
            log.info("voicemail.waiting_for_beep", attempt_id=str(call.attempt.id))
        except AriError as exc:
            log.warning("voicemail.failed", attempt_id=str(call.attempt.id), error=exc.message)
            await self.d.hangup(call.channel_id)

    async def returned(self, call: LiveCall, results: list[str]) -> None:
        """The machine is back from the dialplan: note whether the message was left, hang up."""
        call.voicemail_dropped = message_left(results)
        log.info(
            "voicemail.done",
            attempt_id=str(call.attempt.id),
            dropped=call.voicemail_dropped,
            wait=results[0] if results else None,
            playback=results[1] if len(results) > 1 else None,
        )
        await self.d.hangup(call.channel_id)

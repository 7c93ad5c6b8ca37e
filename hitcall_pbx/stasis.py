"""The Stasis application arguments: the contract between the dialplan (dialplan/,
`Stasis(${HITCALL_APP},<kind>,...)`) and the service. Every kind is named here once."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

__all__ = ["StasisKind", "answer_overtakes", "app_args", "is_answer", "parse_args"]


class StasisKind(enum.StrEnum):
    CUSTOMER = "customer"  # an originated customer answered: customer,<attempt id>
    AMD = "amd"  # the customer after AMD in the dialplan: amd,<AMDSTATUS>,<AMDCAUSE>
    AGENT_LOGIN = "agent-login"  # an agent's phone dialled the login extension: agent-login,<endpoint>
    INBOUND = "inbound"  # a caller on the return-call line: inbound,<campaign id>,<contact id>
    VOICEMAIL = "voicemail"  # a machine back from voicemail drop: voicemail,<WAITSTATUS>,<PLAYBACKSTATUS>
    TRANSFER = "transfer"  # an external transfer target answered: transfer,<attempt id>
    SNOOP = "snoop"  # a supervisor's snoop channel on an agent's phone: snoop,<monitoring session key>
    PEER = "peer"  # a call from the other server's node for an agent here ([hitcall-peer-in]): peer,<token>
    PEER_LEG = "peer-leg"  # the trunk leg to the other server answered: peer-leg,<the caller's channel id>


def app_args(kind: StasisKind, *values: object) -> str:
    """The appArgs string for an originate into Stasis."""
    return ",".join([kind.value, *(str(v) for v in values)])


def parse_args(args: Sequence[str] | None) -> tuple[StasisKind | None, list[str]]:
    """A StasisStart's arguments as (kind, the rest); kind None when unknown or absent."""
    items = list(args or [])
    if not items:
        return None, []
    try:
        return StasisKind(items[0]), items[1:]
    except ValueError:
        return None, items[1:]


_ANSWERS = frozenset({StasisKind.CUSTOMER.value, StasisKind.AMD.value})


def is_answer(event: dict[str, Any]) -> bool:
    """A decoded event is an outbound customer's answer (straight, or back from AMD): the
    StasisStart someone on the line waits on, dispatched ahead of the events queued before
    it (`ari.backlog`)."""
    if event.get("type") != "StasisStart":
        return False
    args = event.get("args")
    return isinstance(args, list) and bool(args) and args[0] in _ANSWERS


def answer_overtakes(event: dict[str, Any]) -> bool:
    """An event of an answering channel that its answer may pass while both wait: the
    channel's change to Up, the same news (the dialer acts only on Ringing)."""
    if event.get("type") != "ChannelStateChange":
        return False
    channel = event.get("channel")
    return isinstance(channel, dict) and channel.get("state") == "Up"

"""The Stasis application arguments: the contract between the dialplan (dialplan/,
`Stasis(${HITCALL_APP},<kind>,...)`) and the service. Every kind is named here once."""

from __future__ import annotations

import enum
from collections.abc import Sequence

__all__ = ["StasisKind", "app_args", "parse_args"]


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

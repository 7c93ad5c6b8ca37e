"""Roles, the authenticated principal of a request and the actor written to the audit log."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Role(enum.StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"  # own agent state and own calls only
    COMPLIANCE = "compliance"  # recordings, holds, subject rights
    INTEGRATION = "integration"  # CRM integrations, API tokens only


ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True)
class Actor:
    """Who performs a change, for the audit row written in the change's transaction."""

    name: str  # username, "token:<id>" or a worker / CLI name
    role: str  # a Role value or "system"
    source_ip: str | None = None

    def audit_fields(self) -> dict[str, Any]:
        return {"actor": self.name, "actor_role": self.role, "source_ip": self.source_ip}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user through a session, or an API token of a user."""

    user_id: int
    username: str
    role: Role
    agent_id: int | None = None  # the agent row linked to this user (role agent)
    token_id: int | None = None  # set when authenticated by an API token
    scopes: frozenset[str] | None = None  # API token scopes; None = session (no scope limit)
    session_hash: str | None = None  # sha256 of the session token

    @property
    def actor_name(self) -> str:
        return self.username if self.token_id is None else f"token:{self.token_id}"

    def allows_scope(self, scope: str | None) -> bool:
        return scope is None or self.scopes is None or scope in self.scopes

    def actor(self, source_ip: str | None) -> Actor:
        return Actor(self.actor_name, self.role.value, source_ip)

"""Login, logout, the caller's own identity and password."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...auth import ALL_ROLES, Role
from ..registry import V1, Ctx, Registry
from ..types import In, Out


class LoginRequest(In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(Out):
    token: str = Field(description="bearer token; send as `Authorization: Bearer <token>`")
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type name, not a credential
    expires_at: datetime
    user_id: int
    username: str
    role: Role


class Me(Out):
    user_id: int
    username: str
    role: Role
    agent_id: int | None = Field(description="the caller's agent (role agent)")
    token_id: int | None = Field(description="set when authenticated by an API token")
    scopes: list[str] | None = Field(description="the API token's scopes; null for a session")


class PasswordChange(In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


def register(reg: Registry) -> None:
    @reg.add(
        "POST",
        f"{V1}/auth/login",
        summary="Log in with username and password",
        tag="auth",
        roles=None,
        body=LoginRequest,
        response=LoginResponse,
        description="5 failed logins of one username from one client lock that username for that client for"
        " 5 minutes, 20 from one client lock the client (429 with Retry-After); other clients are not affected."
        " An unknown username and a wrong password answer alike. Failures are audited; tries refused while"
        " locked are counted in one audit row per lock.",
    )
    async def login(ctx: Ctx) -> LoginResponse:
        b: LoginRequest = ctx.body
        grant = await ctx.auth.login(
            b.username, b.password, source_ip=ctx.source_ip, user_agent=ctx.request.headers.get("User-Agent")
        )
        return LoginResponse(
            token=grant.token,
            expires_at=grant.expires_at,
            user_id=grant.user_id,
            username=grant.username,
            role=grant.role,
        )

    @reg.add("POST", f"{V1}/auth/logout", summary="End the current session", tag="auth", roles=ALL_ROLES)
    async def logout(ctx: Ctx) -> None:
        await ctx.auth.logout(ctx.me, ctx.actor)

    @reg.add("GET", f"{V1}/me", summary="Who the caller is", tag="auth", roles=ALL_ROLES, response=Me)
    async def get_me(ctx: Ctx) -> Me:
        me = ctx.me
        return Me(
            user_id=me.user_id,
            username=me.username,
            role=me.role,
            agent_id=me.agent_id,
            token_id=me.token_id,
            scopes=None if me.scopes is None else sorted(me.scopes),
        )

    @reg.add(
        "POST",
        f"{V1}/me/password",
        summary="Change the caller's own password",
        tag="auth",
        roles=ALL_ROLES,
        body=PasswordChange,
        description="The caller's other sessions end.",
    )
    async def change_password(ctx: Ctx) -> None:
        b: PasswordChange = ctx.body
        await ctx.auth.change_own_password(ctx.me, b.current_password, b.new_password, ctx.actor)

"""Users (admin) and API tokens (admin)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, Field

from ...auth import Role
from ..registry import V1, Ctx, Registry
from ..types import UNSET, Id, In, Out, Patch, Query

ADMIN = frozenset({Role.ADMIN})
USERNAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class User(Out):
    id: int
    username: str
    role: Role
    disabled: bool
    has_password: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserList(Out):
    items: list[User]


class UserCreate(In):
    username: str = Field(pattern=USERNAME)
    role: Role
    password: str | None = Field(
        default=None, min_length=12, max_length=1024, description="null = no password login (API tokens only)"
    )


class UserUpdate(Patch):
    role: Role = UNSET
    disabled: bool = UNSET
    password: str = Field(default=UNSET, min_length=12, max_length=1024)
    unlock: bool = Field(default=False, description="clear a login lock and the failure count")


class Token(Out):
    id: int
    user_id: int
    name: str
    prefix: str | None = Field(description="first characters of the token")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenList(Out):
    items: list[Token]


class TokenCreate(In):
    user_id: Id
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    scopes: list[str] = Field(min_length=1, max_length=100, description="see GET /api/v1/tokens/scopes")
    expires_at: AwareDatetime | None = Field(default=None, description="null = no expiry")


class TokenCreated(Token):
    token: str = Field(description="the bearer token; shown only in this response")


class TokenFilter(Query):
    user_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


class ScopeList(Out):
    scopes: list[str]
    by_role: dict[str, list[str]]


def register(reg: Registry) -> None:
    @reg.add(
        "GET", f"{V1}/users", summary="List users", tag="users", roles=ADMIN, scope="users:read", response=UserList
    )
    async def list_users(ctx: Ctx) -> UserList:
        return UserList(items=[User.model_validate(dict(r)) for r in await ctx.auth.list_users()])

    @reg.add(
        "POST",
        f"{V1}/users",
        summary="Create a user",
        tag="users",
        roles=ADMIN,
        scope="users:write",
        body=UserCreate,
        response=User,
        status=201,
    )
    async def create_user(ctx: Ctx) -> User:
        b: UserCreate = ctx.body
        row = await ctx.auth.create_user(username=b.username, role=b.role, password=b.password, actor=ctx.actor)
        return User.model_validate(dict(row))

    @reg.add(
        "GET",
        f"{V1}/users/{{user_id}}",
        summary="Get a user",
        tag="users",
        roles=ADMIN,
        scope="users:read",
        response=User,
    )
    async def get_user(ctx: Ctx) -> User:
        return User.model_validate(dict(await ctx.auth.get_user(ctx.params["user_id"])))

    @reg.add(
        "PATCH",
        f"{V1}/users/{{user_id}}",
        summary="Change a user's role, password, lock or enabled state",
        tag="users",
        roles=ADMIN,
        scope="users:write",
        body=UserUpdate,
        response=User,
        description="Disabling a user or setting its password ends its sessions. Users are disabled, not deleted,"
        " so that the audit log's usernames stay unambiguous.",
    )
    async def update_user(ctx: Ctx) -> User:
        c = ctx.body.changes()
        row = await ctx.auth.update_user(
            ctx.params["user_id"],
            actor=ctx.actor,
            role=c.get("role"),
            disabled=c.get("disabled"),
            password=c.get("password"),
            unlock=c.get("unlock", False),
        )
        return User.model_validate(dict(row))

    @reg.add(
        "GET",
        f"{V1}/tokens/scopes",
        summary="API token scopes, by role",
        tag="tokens",
        roles=ADMIN,
        scope="tokens:read",
        response=ScopeList,
    )
    async def list_scopes(ctx: Ctx) -> ScopeList:
        by_role = {role.value: sorted(ctx.auth.scopes_for(role)) for role in Role}
        return ScopeList(scopes=sorted({s for v in by_role.values() for s in v}), by_role=by_role)

    @reg.add(
        "GET",
        f"{V1}/tokens",
        summary="List API tokens",
        tag="tokens",
        roles=ADMIN,
        scope="tokens:read",
        query=TokenFilter,
        response=TokenList,
    )
    async def list_tokens(ctx: Ctx) -> TokenList:
        rows = await ctx.auth.list_tokens(ctx.query.user_id)
        return TokenList(items=[Token.model_validate(dict(r)) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/tokens",
        summary="Create an API token (shown once)",
        tag="tokens",
        roles=ADMIN,
        scope="tokens:write",
        body=TokenCreate,
        response=TokenCreated,
        status=201,
        description="The token acts with its user's role, limited to its scopes; only its sha256 is stored.",
    )
    async def create_token(ctx: Ctx) -> TokenCreated:
        b: TokenCreate = ctx.body
        grant = await ctx.auth.create_token(
            user_id=b.user_id, name=b.name, scopes=b.scopes, expires_at=b.expires_at, actor=ctx.actor
        )
        return TokenCreated.model_validate({**dict(grant.record), "token": grant.token})

    @reg.add(
        "GET",
        f"{V1}/tokens/{{token_id}}",
        summary="Get an API token",
        tag="tokens",
        roles=ADMIN,
        scope="tokens:read",
        response=Token,
    )
    async def get_token(ctx: Ctx) -> Token:
        return Token.model_validate(dict(await ctx.auth.get_token(ctx.params["token_id"])))

    @reg.add(
        "DELETE",
        f"{V1}/tokens/{{token_id}}",
        summary="Revoke an API token",
        tag="tokens",
        roles=ADMIN,
        scope="tokens:write",
    )
    async def revoke_token(ctx: Ctx) -> None:
        await ctx.auth.revoke_token(ctx.params["token_id"], ctx.actor)

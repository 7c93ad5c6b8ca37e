"""Authentication and account management: logins, sessions, API tokens, users.

Every change writes its audit row in the same transaction.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from ..errors import Conflict, Forbidden, HitCallError, NotFound, Unauthorized, ValidationFailed
from ..store import audit
from ..store.db import Connection
from . import repo
from .passwords import Passwords, validate_password
from .roles import Actor, Principal, Role
from .throttle import Scope, ThrottlePolicy
from .tokens import API_TOKEN_PREFIX, SESSION_PREFIX, display_prefix, new_token, token_hash

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOUCH_INTERVAL = timedelta(seconds=60)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# The audit actor of a login with a user name that names no user (the text typed is not kept).
UNKNOWN_ACTOR = "unknown"


class LoginThrottled(HitCallError):
    status = 429
    code = "login_throttled"


def validate_username(username: object, *, field: str = "username") -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise ValidationFailed(
            "username must be 1-64 characters of letters, digits, '.', '_', '@', '-', starting with a letter or digit",
            details={"field": field},
        )
    return username


@dataclass(frozen=True)
class SessionGrant:
    token: str
    expires_at: datetime
    user_id: int
    username: str
    role: Role


@dataclass(frozen=True)
class TokenGrant:
    token: str
    record: asyncpg.Record


class AuthService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        passwords: Passwords,
        policy: ThrottlePolicy | None = None,
        session_ttl: timedelta = timedelta(hours=12),
        clock: Clock = utcnow,
        role_scopes: Mapping[Role, frozenset[str]] | None = None,
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._policy = policy or ThrottlePolicy()
        self._ttl = session_ttl
        self._clock = clock
        self._role_scopes = role_scopes or {}

    # ----------------------------------------------------------------- login / logout

    async def login(
        self, username: str, password: str, *, source_ip: str | None, user_agent: str | None = None
    ) -> SessionGrant:
        """A new session for valid credentials.

        Failures are counted per (client, user name as typed) and per client (`ThrottlePolicy`);
        an unknown user name and a wrong password answer alike (401, same body, one password
        verification each). Each failure is audited until its key is locked (the failure that
        locks it says so); tries refused while locked are only counted, and summarised in
        one ``auth.login_throttled`` row per lock when it is over."""
        now = self._clock()
        client = source_ip or "unknown"
        name_key = username.lower()[:64]
        await self._summarise_locks(now)
        refusal: HitCallError
        async with self._pool.acquire() as conn, conn.transaction():
            whole, pair = await repo.throttle_windows(conn, client, name_key, now)
            locked = [(s, w) for s, w in ((Scope.CLIENT, whole), (Scope.USER, pair)) if self._policy.is_locked(w, now)]
            if locked:
                for scope, w in locked:
                    await repo.save_throttle_window(
                        conn, client, "" if scope is Scope.CLIENT else name_key, self._policy.after_refusal(w)
                    )
                until = max(w.locked_until for _, w in locked if w.locked_until is not None)
                refusal = LoginThrottled(
                    "too many failed logins; try again later",
                    details={"retry_after_s": int((until - now).total_seconds()) + 1},
                    code="login_locked" if locked[0][0] is Scope.USER else None,
                )
            else:
                user = await repo.user_for_login(conn, username)
                ok = await self._passwords.verify_async(user["password_hash"] if user else None, password)
                if ok and user is not None and not user["disabled"]:
                    token = new_token(SESSION_PREFIX)
                    expires = now + self._ttl
                    await repo.insert_session(
                        conn, token_hash(token), user["id"], now, expires, source_ip, (user_agent or "")[:256] or None
                    )
                    await repo.record_login_success(conn, user["id"], now)
                    await repo.delete_throttle_window(conn, client, name_key)
                    await audit.record(
                        conn,
                        actor=user["username"],
                        actor_role=user["role"],
                        action="auth.login",
                        object_type="user",
                        object_id=user["id"],
                        source_ip=source_ip,
                    )
                    return SessionGrant(token, expires, user["id"], user["username"], Role(user["role"]))
                reason = "disabled" if user is not None and user["disabled"] and ok else "bad_credentials"
                new_pair = self._policy.after_failure(pair, Scope.USER, now)
                new_whole = self._policy.after_failure(whole, Scope.CLIENT, now)
                await repo.save_throttle_window(conn, client, name_key, new_pair)
                await repo.save_throttle_window(conn, client, "", new_whole)
                details: dict[str, object] = {"reason": reason}
                starts = [(s, w) for s, w in ((Scope.USER, new_pair), (Scope.CLIENT, new_whole)) if w.locked_at == now]
                if starts:
                    details["locked"] = [str(s) for s, _ in starts]
                    details["locked_until"] = max(w.locked_until for _, w in starts if w.locked_until).isoformat()
                if user is not None:
                    await repo.record_login_failure(
                        conn,
                        user["id"],
                        user["failed_logins"] + 1,
                        new_pair.locked_until if new_pair.locked_at == now else None,
                    )
                # The actor is a real user's name, never the text typed: a password typed into the
                # user name field must not land in the append-only audit log.
                await audit.record(
                    conn,
                    actor=user["username"] if user is not None else UNKNOWN_ACTOR,
                    action="auth.login_failed",
                    object_type="user" if user is not None else None,
                    object_id=user["id"] if user is not None else None,
                    details=details,
                    source_ip=source_ip,
                )
                refusal = Unauthorized("invalid username or password", code="invalid_credentials")
        raise refusal

    async def _summarise_locks(self, now: datetime, *, limit: int = 100) -> None:
        """One ``auth.login_throttled`` audit row per lock that is over and refused tries
        (their count), then the key starts afresh; unlocked windows that count nothing any
        more are deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            for row in await repo.ended_throttle_locks(conn, now, limit):
                if row["refused"]:
                    name = row["username"]
                    known = await repo.user_for_login(conn, name) if name else None
                    await audit.record(
                        conn,
                        actor=known["username"] if known is not None else UNKNOWN_ACTOR,
                        action="auth.login_throttled",
                        details={
                            "scope": str(Scope.CLIENT if name == "" else Scope.USER),
                            "refused": row["refused"],
                            "locked_at": row["locked_at"].isoformat(),
                            "locked_until": row["locked_until"].isoformat(),
                        },
                        source_ip=_inet(row["client"]),
                    )
                await repo.delete_throttle_window(conn, row["client"], row["username"])
            await repo.delete_stale_throttle_windows(conn, self._policy.stale_before(now), limit)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a bearer token, or None when it is unknown, expired or revoked,
        or its user is disabled."""
        now = self._clock()
        digest = token_hash(token)
        if token.startswith(SESSION_PREFIX):
            row = await repo.session_principal(self._pool, digest, now)
            if row is None or row["disabled"]:
                return None
            if row["last_seen_at"] is None or now - row["last_seen_at"] > TOUCH_INTERVAL:
                await repo.touch_session(self._pool, digest, now)
            return Principal(row["user_id"], row["username"], Role(row["role"]), row["agent_id"], session_hash=digest)
        if token.startswith(API_TOKEN_PREFIX):
            row = await repo.token_principal(self._pool, digest, now)
            if row is None or row["disabled"]:
                return None
            if row["last_used_at"] is None or now - row["last_used_at"] > TOUCH_INTERVAL:
                await repo.touch_token(self._pool, row["token_id"], now)
            return Principal(
                row["user_id"],
                row["username"],
                Role(row["role"]),
                row["agent_id"],
                token_id=row["token_id"],
                scopes=frozenset(row["scopes"]),
            )
        return None

    async def logout(self, principal: Principal, actor: Actor) -> None:
        if principal.session_hash is None:
            raise Conflict(
                "an API token is not a session: revoke it with DELETE /api/v1/tokens/{id}",
                code="not_a_session",
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await repo.revoke_session(conn, principal.session_hash, self._clock())
            await audit.record(
                conn, **actor.audit_fields(), action="auth.logout", object_type="user", object_id=principal.user_id
            )

    # -------------------------------------------------------------------------- users

    async def list_users(self) -> list[asyncpg.Record]:
        return await repo.list_users(self._pool)

    async def get_user(self, user_id: int) -> asyncpg.Record:
        row = await repo.get_user(self._pool, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", details={"user_id": user_id})
        return row

    async def user_id_by_name(self, username: str) -> int:
        user_id = await repo.user_id_by_name(self._pool, username)
        if user_id is None:
            raise NotFound(f"user {username!r} not found", details={"field": "username"})
        return user_id

    async def create_user(
        self, *, username: str, role: Role | str, password: str | None, actor: Actor
    ) -> asyncpg.Record:
        validate_username(username)
        role = _role(role)
        phc = None if password is None else await self._passwords.hash_async(validate_password(password))
        async with self._pool.acquire() as conn, conn.transaction():
            if await repo.user_id_by_name(conn, username) is not None:
                raise Conflict(f"username {username!r} is taken", details={"field": "username"})
            row = await repo.insert_user(conn, username, role.value, phc)
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="user.create",
                object_type="user",
                object_id=row["id"],
                details={"role": role.value, "password": phc is not None},
            )
        return row

    async def update_user(
        self,
        user_id: int,
        *,
        actor: Actor,
        role: Role | str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        unlock: bool = False,
    ) -> asyncpg.Record:
        """Change role, enabled state, password or lock. Disabling or changing the password
        ends the user's sessions and revokes its API tokens; the last enabled admin cannot be
        disabled or demoted."""
        changes: dict[str, object] = {}
        if role is not None:
            changes["role"] = _role(role).value
        if disabled is not None:
            changes["disabled"] = disabled
        if password is not None:
            changes["password_hash"] = await self._passwords.hash_async(validate_password(password))
        if unlock or password is not None:
            changes["failed_logins"] = 0
            changes["locked_until"] = None
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repo.get_user(conn, user_id, for_update=True)
            if current is None:
                raise NotFound(f"user {user_id} not found", details={"user_id": user_id})
            losing_admin = (
                current["role"] == Role.ADMIN
                and not current["disabled"]
                and (disabled is True or changes.get("role", Role.ADMIN) != Role.ADMIN)
            )
            if losing_admin and await repo.count_other_active_admins(conn, user_id) == 0:
                raise Conflict(
                    "the last enabled admin cannot be disabled or given another role",
                    details={"field": "disabled" if disabled else "role"},
                )
            row = await repo.update_user(conn, user_id, changes)
            if unlock or password is not None:
                await repo.clear_user_throttle(conn, current["username"])
            details: dict[str, object] = {"fields": sorted("password" if c == "password_hash" else c for c in changes)}
            if disabled or password is not None:
                # A disabled user's credentials end for good (enabling it again revives none of
                # them), and a new password ends what the old one may have handed out.
                details["sessions_revoked"] = await repo.revoke_user_sessions(conn, user_id, now)
                reason = "user_disabled" if disabled else "password_reset"
                details["tokens_revoked"] = await self._revoke_tokens(conn, user_id, now, reason, actor)
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="user.update",
                object_type="user",
                object_id=user_id,
                details=details,
            )
        assert row is not None
        return row

    @staticmethod
    async def _revoke_tokens(conn: Connection, user_id: int, now: datetime, reason: str, actor: Actor) -> list[int]:
        """Revoke the user's API tokens in the caller's transaction, one token.revoke audit
        row each (with the reason); the ids revoked."""
        revoked = await repo.revoke_user_tokens(conn, user_id, now)
        for token_id in revoked:
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="token.revoke",
                object_type="api_token",
                object_id=token_id,
                details={"user_id": user_id, "reason": reason},
            )
        return revoked

    async def change_own_password(self, principal: Principal, current: str, new: str, actor: Actor) -> None:
        """Change the caller's own password; the caller's other sessions and the user's API
        tokens end."""
        if principal.token_id is not None:
            raise Forbidden("an API token cannot change a password", code="not_a_session")
        phc = await repo.password_hash(self._pool, principal.user_id)
        if not await self._passwords.verify_async(phc, current):
            raise ValidationFailed("current password is wrong", details={"field": "current_password"})
        new_phc = await self._passwords.hash_async(validate_password(new, field="new_password"))
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            await repo.update_user(conn, principal.user_id, {"password_hash": new_phc})
            sessions = await repo.revoke_user_sessions(conn, principal.user_id, now, keep_hash=principal.session_hash)
            tokens = await self._revoke_tokens(conn, principal.user_id, now, "password_changed", actor)
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="user.password_change",
                object_type="user",
                object_id=principal.user_id,
                details={"sessions_revoked": sessions, "tokens_revoked": tokens},
            )

    # --------------------------------------------------------------------- API tokens

    def scopes_for(self, role: Role) -> frozenset[str]:
        return self._role_scopes.get(role, frozenset())

    async def create_token(
        self,
        *,
        user_id: int,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None,
        actor: Actor,
    ) -> TokenGrant:
        """A new API token for a user; the token itself is returned only here."""
        now = self._clock()
        wanted = sorted(set(scopes))
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed("expires_at must be in the future", details={"field": "expires_at"})
        token = new_token(API_TOKEN_PREFIX)
        async with self._pool.acquire() as conn, conn.transaction():
            user = await repo.get_user(conn, user_id)
            if user is None:
                raise ValidationFailed(f"user {user_id} does not exist", details={"field": "user_id"})
            usable = self.scopes_for(Role(user["role"]))
            refused = [s for s in wanted if s not in usable]
            if refused:
                raise ValidationFailed(
                    f"scopes not available to role {user['role']}: {', '.join(refused)}",
                    details={"field": "scopes", "refused": refused, "available": sorted(usable)},
                )
            row = await repo.insert_token(
                conn, user_id, name.strip(), token_hash(token), display_prefix(token), wanted, now, expires_at
            )
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="token.create",
                object_type="api_token",
                object_id=row["id"],
                details={"user_id": user_id, "scopes": wanted},
            )
        return TokenGrant(token, row)

    async def list_tokens(self, user_id: int | None = None) -> list[asyncpg.Record]:
        return await repo.list_tokens(self._pool, user_id)

    async def get_token(self, token_id: int) -> asyncpg.Record:
        row = await repo.get_token(self._pool, token_id)
        if row is None:
            raise NotFound(f"API token {token_id} not found", details={"token_id": token_id})
        return row

    async def revoke_token(self, token_id: int, actor: Actor) -> asyncpg.Record:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await repo.revoke_token(conn, token_id, self._clock())
            if row is None:
                raise NotFound(f"API token {token_id} not found", details={"token_id": token_id})
            await audit.record(
                conn, **actor.audit_fields(), action="token.revoke", object_type="api_token", object_id=token_id
            )
        return row


def _inet(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ValidationFailed(
            f"role must be one of {', '.join(r.value for r in Role)}", details={"field": "role"}
        ) from None

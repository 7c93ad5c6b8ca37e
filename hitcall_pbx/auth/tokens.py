"""Bearer secrets: session tokens and API tokens. Only their sha256 is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_PREFIX = "hcs_"
API_TOKEN_PREFIX = "hct_"  # noqa: S105 - the public kind marker in front of a token, not a secret
DISPLAY_PREFIX_LEN = 12
# The browser workspace keeps its session token in this cookie (HttpOnly, SameSite=Strict); a
# request authenticated by it that changes anything must carry the session's CSRF token in
# CSRF_HEADER (fetch) or CSRF_FIELD (form).
SESSION_COOKIE = "hitcall_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token(prefix: str) -> str:
    """A random bearer token (256 bits) carrying its kind in the prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters, shown in listings so that tokens can be told apart."""
    return token[:DISPLAY_PREFIX_LEN]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 256:
        return None
    return value


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: an HMAC of the session's secret, so it needs no storage,
    ends with the session, and cannot be computed by a page that cannot read the cookie."""
    return hmac.new(session_token.encode(), b"hitcall-csrf", hashlib.sha256).hexdigest()


def csrf_valid(session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(session_token), presented or "")

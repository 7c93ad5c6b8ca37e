"""Bearer secrets: session tokens and API tokens. Only their sha256 is ever stored."""

from __future__ import annotations

import hashlib
import secrets

SESSION_PREFIX = "hcs_"
API_TOKEN_PREFIX = "hct_"  # noqa: S105 - the public kind marker in front of a token, not a secret
DISPLAY_PREFIX_LEN = 12


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

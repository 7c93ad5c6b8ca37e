"""Users, roles, passwords (argon2id), session tokens, API tokens and login throttling."""

from .passwords import Passwords, validate_password, validate_pin
from .roles import ALL_ROLES, Actor, Principal, Role
from .service import AuthService, LoginThrottled, SessionGrant, TokenGrant, utcnow
from .throttle import ThrottlePolicy

__all__ = [
    "ALL_ROLES",
    "Actor",
    "AuthService",
    "LoginThrottled",
    "Passwords",
    "Principal",
    "Role",
    "SessionGrant",
    "ThrottlePolicy",
    "TokenGrant",
    "utcnow",
    "validate_password",
    "validate_pin",
]

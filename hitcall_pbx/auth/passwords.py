"""argon2id hashing for user passwords and agent PINs, and their input rules."""

from __future__ import annotations

import asyncio
import re

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import ValidationFailed

PASSWORD_MIN = 12
PASSWORD_MAX = 1024
_PIN_RE = re.compile(r"[0-9]{4,12}")


def validate_password(password: object, *, field: str = "password") -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationFailed(f"{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", details={"field": field})
    return password


def validate_pin(pin: object, *, field: str = "pin") -> str:
    if not isinstance(pin, str) or not _PIN_RE.fullmatch(pin):
        raise ValidationFailed(f"{field} must be 4 to 12 digits", details={"field": field})
    return pin


class Passwords:
    """argon2id PHC hashes. Hashing and verifying run in a worker thread (tens of ms of CPU)."""

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4) -> None:
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)
        self._dummy: str | None = None

    def hash(self, secret: str) -> str:
        return self._ph.hash(secret)

    def verify(self, phc: str | None, secret: str) -> bool:
        """True when `secret` matches `phc`. A missing hash still costs one verification,
        so the time taken does not tell whether a user exists."""
        if phc is None:
            if self._dummy is None:
                self._dummy = self._ph.hash("hitcall-timing-equaliser")
            phc, secret = self._dummy, secret + "\x00"
        try:
            return self._ph.verify(phc, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def hash_async(self, secret: str) -> str:
        return await asyncio.to_thread(self.hash, secret)

    async def verify_async(self, phc: str | None, secret: str) -> bool:
        return await asyncio.to_thread(self.verify, phc, secret)

"""Pure pieces of authentication: throttling policy, bearer tokens, passwords and PINs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.auth import Actor, Passwords, Principal, Role, ThrottlePolicy, validate_password, validate_pin
from hitcall_pbx.auth.service import validate_username
from hitcall_pbx.auth.throttle import Scope
from hitcall_pbx.auth.tokens import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    bearer_token,
    display_prefix,
    new_token,
    token_hash,
)
from hitcall_pbx.errors import ValidationFailed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST = Passwords(time_cost=1, memory_cost=1024, parallelism=1)


def test_five_failures_of_one_key_lock_it_for_five_minutes() -> None:
    policy = ThrottlePolicy()
    w = None
    for expected in (1, 2, 3, 4):
        w = policy.after_failure(w, Scope.USER, NOW)
        assert (w.failures, w.locked_until) == (expected, None)
    w = policy.after_failure(w, Scope.USER, NOW)
    assert (w.failures, w.locked_at, w.locked_until) == (0, NOW, NOW + timedelta(minutes=5))
    assert policy.is_locked(w, NOW + timedelta(minutes=4, seconds=59))
    assert not policy.is_locked(w, NOW + timedelta(minutes=5)) and policy.lock_ended(w, NOW + timedelta(minutes=5))
    assert not policy.is_locked(None, NOW)
    assert policy.after_refusal(w).refused == 1
    # After the lock the key starts a new window.
    again = policy.after_failure(w, Scope.USER, NOW + timedelta(minutes=5))
    assert (again.failures, again.locked_until, again.window_start) == (1, None, NOW + timedelta(minutes=5))


def test_failures_outside_the_window_start_a_new_one() -> None:
    policy = ThrottlePolicy()
    w = None
    for _ in range(4):
        w = policy.after_failure(w, Scope.USER, NOW)
    w = policy.after_failure(w, Scope.USER, NOW + timedelta(seconds=policy.window_s))
    assert (w.failures, w.locked_until) == (1, None)


@given(st.integers(min_value=1, max_value=60))
def test_a_client_is_locked_at_its_own_limit(failures: int) -> None:
    policy = ThrottlePolicy(ip_max_failures=20, ip_window_s=300)
    w = None
    for _ in range(failures):
        w = policy.after_failure(w, Scope.CLIENT, NOW)
    assert w is not None
    assert policy.is_locked(w, NOW) == (failures % 20 == 0)
    assert policy.limits(Scope.CLIENT) == (20, 300) and policy.limits(Scope.USER) == (5, 300)


def test_tokens_are_random_prefixed_and_hashed() -> None:
    a, b = new_token(SESSION_PREFIX), new_token(API_TOKEN_PREFIX)
    assert a.startswith("hcs_") and b.startswith("hct_") and len(a) >= 40
    assert new_token(SESSION_PREFIX) != a
    assert token_hash(a) == hashlib.sha256(a.encode()).hexdigest()
    assert display_prefix(b) == b[:12] and 4 <= len(display_prefix(b)) <= 16


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("Bearer " + "x" * 257, None),
    ],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_passwords_are_argon2id_and_verify() -> None:
    phc = FAST.hash("correct horse battery")
    assert phc.startswith("$argon2id$")
    assert FAST.verify(phc, "correct horse battery")
    assert not FAST.verify(phc, "wrong")
    assert not FAST.verify("not a hash", "x")
    assert not FAST.verify(None, "anything")  # unknown user: still a verification, always false


def test_password_pin_and_username_rules() -> None:
    assert validate_password("x" * 12) == "x" * 12
    for bad in ("short", "x" * 1025, None):
        with pytest.raises(ValidationFailed) as err:
            validate_password(bad)
        assert err.value.details == {"field": "password"}
    assert validate_pin("0042") == "0042"
    for bad in ("123", "12a4", "1" * 13):
        with pytest.raises(ValidationFailed):
            validate_pin(bad)
    assert validate_username("maija.m@hitcall") == "maija.m@hitcall"
    for bad in ("", "-x", "a b", "x" * 65):
        with pytest.raises(ValidationFailed):
            validate_username(bad)


def test_principal_scopes_and_actor() -> None:
    session = Principal(1, "maija", Role.SUPERVISOR)
    token = Principal(2, "crm", Role.INTEGRATION, token_id=7, scopes=frozenset({"campaigns:read"}))
    assert session.allows_scope("anything:write") and session.actor_name == "maija"
    assert token.allows_scope("campaigns:read") and not token.allows_scope("dnc:read")
    assert token.allows_scope(None)
    assert token.actor("10.0.0.1") == Actor("token:7", "integration", "10.0.0.1")
    assert token.actor("10.0.0.1").audit_fields() == {
        "actor": "token:7",
        "actor_role": "integration",
        "source_ip": "10.0.0.1",
    }

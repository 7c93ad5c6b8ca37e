"""Settings read from the environment: the service's intervals go through `Settings` too."""

from __future__ import annotations

import pytest

from hitcall_pbx.errors import ConfigError
from hitcall_pbx.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HITCALL_PURGE_INTERVAL_S", "HITCALL_SHUTDOWN_GRACE_S"):
        monkeypatch.delenv(name, raising=False)


def test_purge_interval_and_shutdown_grace_defaults() -> None:
    s = load_settings()
    assert (s.purge_interval_s, s.shutdown_grace_s) == (3600.0, 30.0)


def test_purge_interval_and_shutdown_grace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITCALL_PURGE_INTERVAL_S", "86400")
    monkeypatch.setenv("HITCALL_SHUTDOWN_GRACE_S", "2.5")
    s = load_settings()
    assert (s.purge_interval_s, s.shutdown_grace_s) == (86400.0, 2.5)
    monkeypatch.setenv("HITCALL_PURGE_INTERVAL_S", "0")  # no scheduled purge
    monkeypatch.setenv("HITCALL_SHUTDOWN_GRACE_S", "0")  # hang up at once
    s = load_settings()
    assert (s.purge_interval_s, s.shutdown_grace_s) == (0.0, 0.0)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("HITCALL_PURGE_INTERVAL_S", "hourly", "valid number"),
        ("HITCALL_PURGE_INTERVAL_S", "-5", "greater than or equal to 0"),
        ("HITCALL_PURGE_INTERVAL_S", "inf", "finite"),
        ("HITCALL_PURGE_INTERVAL_S", "2592000", "less than or equal to 604800"),
        ("HITCALL_SHUTDOWN_GRACE_S", "nan", "finite"),
        ("HITCALL_SHUTDOWN_GRACE_S", "-1", "greater than or equal to 0"),
        ("HITCALL_SHUTDOWN_GRACE_S", "7200", "less than or equal to 3600"),
    ],
)
def test_a_malformed_interval_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.message.startswith(f"invalid setting {name}: ") and message in err.value.message
    assert "\n" not in err.value.message and err.value.details == {"setting": name}

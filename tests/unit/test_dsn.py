"""PostgreSQL URLs naming several hosts (a primary and its standbys): parsed like libpq,
checked when the settings are read."""

from __future__ import annotations

import pytest

from hitcall_pbx.core.dsn import check_dsn, dsn_host, dsn_hosts
from hitcall_pbx.errors import ConfigError
from hitcall_pbx.settings import load_settings
from hitcall_pbx.store.db import HostWalk

MULTI = "postgresql://svc:secret@db1:5433,db2:5434/hitcall?target_session_attrs=read-write"


@pytest.mark.parametrize(
    ("dsn", "hosts"),
    [
        (MULTI, [("db1", 5433), ("db2", 5434)]),
        ("postgresql://u@db/x", [("db", None)]),
        ("postgresql://u@[::1]:5,db2/x", [("::1", 5), ("db2", None)]),
        ("postgresql://u@/x?host=a,b&port=1,2", [("a", 1), ("b", 2)]),
        ("postgresql://postgres:@/postgres?host=/tmp/sock", [("/tmp/sock", None)]),
    ],
)
def test_hosts_in_order(dsn: str, hosts: list[tuple[str, int | None]]) -> None:
    assert dsn_hosts(dsn) == hosts


def test_messages_name_every_host_and_no_secret() -> None:
    assert dsn_host(MULTI) == "db1:5433,db2:5434"
    assert "secret" not in dsn_host(MULTI)


def test_settings_take_a_multi_host_url() -> None:
    assert load_settings(database_url=MULTI).database_url == MULTI


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://u:hunter2@db1:5432,db2:x/h", "invalid port 'x'"),
        ("postgresql://u:hunter2@db1:5432,db2:70000/h", "invalid port '70000'"),
        ("postgresql://u:hunter2@db1/h?connect_timeout=soon", "connect_timeout must be a number of seconds"),
        ("postgresql://u:hunter2@db1/h?target_session_attrs=writable", "target_session_attrs must be one of"),
    ],
)
def test_settings_refuse_a_bad_url_naming_the_setting(dsn: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid setting DATABASE_URL: .*{message}") as caught:
        load_settings(database_url=dsn)
    assert "hunter2" not in str(caught.value)  # the password is never echoed
    with pytest.raises(ValueError, match=message):
        check_dsn(dsn)


def test_the_walk_takes_connect_timeout_and_asks_for_read_write() -> None:
    walk = HostWalk(MULTI.replace("?", "?connect_timeout=3&"))
    assert walk.timeout == 3.0 and walk.target_session_attrs == "read-write"
    assert "connect_timeout" not in walk.dsn and "target_session_attrs" not in walk.dsn  # not server settings
    assert HostWalk("postgresql://u@db/x").target_session_attrs == "read-write"
    assert HostWalk("postgresql://u@db/x?target_session_attrs=any").target_session_attrs == "any"

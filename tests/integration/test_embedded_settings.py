"""The embedded server runs with HitCall's WAL settings and PostgreSQL's own durability."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.errors import ConfigError
from hitcall_pbx.store.embedded import SERVER_SETTINGS, EmbeddedPostgres

_SHOWN = {
    "wal_compression": "pglz",
    "wal_writer_delay": "10ms",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_buffers": "16MB",
}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hitcall-test-settings-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _show(uri: str, names: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(uri)
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in names}
    finally:
        await conn.close()


async def test_settings_apply_from_the_first_start_and_durability_stays_default(data_dir: Path) -> None:
    assert set(_SHOWN) == set(SERVER_SETTINGS)
    reloadable = [n for n in _SHOWN if n != "wal_buffers"]
    durability = ["fsync", "synchronous_commit", "full_page_writes"]
    for start in (1, 2):
        pg = EmbeddedPostgres(data_dir)
        await asyncio.to_thread(pg.start)
        try:
            shown = await _show(pg.uri, [*_SHOWN, *durability])
        finally:
            await asyncio.to_thread(pg.stop)
        # wal_buffers needs a server start: on a new cluster it applies from the second.
        expected = _SHOWN if start == 2 else {n: _SHOWN[n] for n in reloadable}
        assert {n: shown[n] for n in expected} == expected
        assert [shown[n] for n in durability] == ["on", "on", "on"]
    conf = (data_dir / "pg" / "postgresql.conf").read_text().splitlines()
    assert conf.count("include_if_exists = 'hitcall.conf'") == 1


def test_a_setting_that_would_break_the_config_file_is_refused(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="wal_buffers"):
        EmbeddedPostgres(data_dir, settings={"wal_buffers": "16MB'\ninclude = '/etc/passwd"})

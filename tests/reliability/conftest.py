"""Fault suite: a live campaign on the real sandboxed Asterisk and real Postgres, one
fault injected per test. The sandbox and service fixtures come from tests/live.py."""

import pytest

from .harness import ChannelObserver


@pytest.fixture
async def observer(sandbox):
    """Counts the channels Asterisk creates per id, on its own ARI connection."""
    obs = await ChannelObserver().start()
    try:
        yield obs
    finally:
        await obs.close()


@pytest.fixture
def asterisk_cdrs(sandbox, tmp_path):
    """Asterisk's own CDRs (cdr_csv) written from the start of the test on, for
    `hitcall cdr reconcile` after the fault."""
    from tests.asterisk_cdr import AsteriskCdrs

    return AsteriskCdrs(sandbox, tmp_path)


@pytest.fixture
def product_logging():
    """The service's own JSON logging (as `hitcall serve` configures it): the default
    console renderer draws every logged traceback with its locals, which stalls the
    event loop for seconds while Postgres is down and would distort the timings."""
    import logging

    import structlog

    from hitcall_pbx.logs import configure_logging

    handlers, level = logging.root.handlers[:], logging.root.level
    configure_logging("INFO")
    yield
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)

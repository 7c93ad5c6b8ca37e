"""Helpers the Asterisk tests import; the fixtures live in tests/live.py."""

from tests.live import EventLog, wait_until  # noqa: F401

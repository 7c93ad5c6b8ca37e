"""Fault suite: a live campaign on the real sandboxed Asterisk and real Postgres, one
fault injected per test. The sandbox and service fixtures come from tests/live.py."""

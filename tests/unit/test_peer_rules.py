"""Calls across servers, the pure rules: which pools to ask for an agent, and whether a
peer channel's token may be put through (core.peer)."""

from __future__ import annotations

import pytest

from hitcall_pbx.core.peer import (
    PeerVerdict,
    ReadyElsewhere,
    Reservation,
    check_token,
    peer_endpoint,
    pools_to_ask,
    valid_token,
)

TOKEN = "0123456789abcdef01234567"


def ready(agent_id: int, pool: str, node: str, campaigns: set[int], idle_s: float) -> ReadyElsewhere:
    return ReadyElsewhere(agent_id, pool, node, frozenset(campaigns), idle_s)


def test_pools_with_an_agent_of_the_callers_campaign_are_asked_first():
    agents = [
        ready(1, "ast2", "node-b", {9}, 300.0),  # idle longest, but another campaign
        ready(2, "ast3", "node-c", {5}, 10.0),
        ready(3, "ast2", "node-b", {7}, 20.0),
    ]
    assert pools_to_ask(5, agents, "ast1") == [("ast3", "node-c"), ("ast2", "node-b")]
    assert pools_to_ask(None, agents, "ast1") == [("ast2", "node-b"), ("ast3", "node-c")], "longest idle first"
    assert pools_to_ask(7, agents, "ast1") == [("ast2", "node-b"), ("ast3", "node-c")]


def test_the_callers_own_pool_is_never_asked_and_the_list_is_bounded():
    agents = [ready(1, "ast1", "node-a", {5}, 99.0)] + [ready(i, f"p{i}", f"n{i}", {5}, float(i)) for i in range(2, 7)]
    assert pools_to_ask(5, agents, "ast1") == [("p6", "n6"), ("p5", "n5")]
    assert pools_to_ask(5, agents, "ast1", limit=0) == []
    assert pools_to_ask(5, [ready(1, "ast1", "node-a", {5}, 9.0)], "ast1") == []
    # one pool with several ready agents is asked once, ranked by its best agent
    assert pools_to_ask(5, [ready(1, "ast2", "b", {1}, 50.0), ready(2, "ast2", "b", {5}, 1.0)], "ast1") == [
        ("ast2", "b")
    ]


def test_token_verdicts():
    now = 100.0
    book = {
        TOKEN: Reservation(TOKEN, 7, expires=105.0),
        "f" * 24: Reservation("f" * 24, 8, expires=99.0),
        "e" * 24: Reservation("e" * 24, 9, expires=200.0, used=True),
    }
    assert check_token(TOKEN, book, now) is PeerVerdict.OK
    assert check_token(TOKEN, book, 105.0) is PeerVerdict.EXPIRED, "at its expiry it is expired"
    assert check_token("f" * 24, book, now) is PeerVerdict.EXPIRED
    assert check_token("e" * 24, book, now) is PeerVerdict.USED
    assert check_token("a" * 24, book, now) is PeerVerdict.UNKNOWN
    for bad in ("", "ABCDEF0123456789abcdef01", TOKEN + "0", "../" + TOKEN[3:], "x" * 24):
        assert check_token(bad, book, now) is PeerVerdict.MALFORMED, bad


def test_peer_endpoint_only_for_a_well_formed_token():
    assert valid_token(TOKEN)
    assert peer_endpoint(TOKEN) == f"Local/hitcall-{TOKEN}@hitcall-peer/n"
    with pytest.raises(ValueError):
        peer_endpoint("abc@evil")

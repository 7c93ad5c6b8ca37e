"""The client address behind trusted reverse proxies (core.netaddr)."""

from __future__ import annotations

import pytest

from hitcall_pbx.core.netaddr import client_address, parse_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 2001:db8::/32")


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert client_address("203.0.113.5", ["1.2.3.4"], PROXIES) == "203.0.113.5"
    assert client_address("203.0.113.5", [], ()) == "203.0.113.5"


def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client():
    # The client typed a fake first hop; the proxy appended the real address.
    assert client_address("10.0.0.2", ["6.6.6.6, 198.51.100.7"], PROXIES) == "198.51.100.7"
    # Two trusted proxies in a row, header split over two lines.
    assert client_address("10.0.0.2", ["6.6.6.6, 198.51.100.7", "10.1.1.1"], PROXIES) == "198.51.100.7"
    assert client_address("2001:db8::1", ["[2001:db9::5]:443"], PROXIES) == "2001:db9::5"
    assert client_address("10.0.0.2", ["198.51.100.7:5555"], PROXIES) == "198.51.100.7"


def test_without_a_usable_hop_the_last_trusted_address_is_the_client():
    assert client_address("10.0.0.2", [], PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", ["10.0.0.9"], PROXIES) == "10.0.0.9"
    assert client_address("10.0.0.2", ["198.51.100.7, not-an-address"], PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", ["198.51.100.7, unknown, 10.0.0.3"], PROXIES) == "10.0.0.3"


def test_mapped_and_missing_peers():
    assert client_address("::ffff:10.0.0.2", ["198.51.100.7"], PROXIES) == "198.51.100.7"
    assert client_address(None, ["198.51.100.7"], PROXIES) is None
    assert parse_address("garbage") is None


def test_networks_are_parsed_or_refused_naming_the_entry():
    assert parse_networks("") == ()
    assert [str(n) for n in parse_networks("127.0.0.1 ::1,172.16.0.0/12")] == [
        "127.0.0.1/32",
        "::1/128",
        "172.16.0.0/12",
    ]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("10.0.0.0/8,10.0.0.0/33")

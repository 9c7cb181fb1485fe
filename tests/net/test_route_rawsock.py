"""The route table's prefix cache against the kernel's routes, in a scanner
namespace that the test creates."""

from __future__ import annotations

import json

import pytest
from probe_netns import NamespacePair

pytestmark = pytest.mark.rawsock

DRIVER = """
import json, socket, sys
from pktscan.net.route import RouteTable
table = RouteTable()
report = {}
for address in sys.argv[1:]:
    packed = socket.inet_aton(address)
    route = table.lookup(packed)
    fresh = RouteTable()._request(packed)
    report[address] = {
        "gateway": None if route.gateway is None else socket.inet_ntoa(route.gateway),
        "interface": route.interface,
        "same_as_kernel": route == fresh,
        "prefix_cached": table._prefixes.lookup(packed) is not None,
    }
print(json.dumps(report))
"""


def lookup(pair: NamespacePair, *addresses: str) -> dict[str, dict[str, object]]:
    completed = pair.run_in_scanner("-c", DRIVER, *addresses)
    assert completed.returncode == 0, completed.stderr
    result: dict[str, dict[str, object]] = json.loads(completed.stdout)
    return result


def add_route(pair: NamespacePair, *route: str) -> None:
    pair.exec_in(pair.scanner, "ip", "route", "add", *route)


def test_route_prefix_cached(namespace_pair: NamespacePair) -> None:
    pair = namespace_pair
    add_route(pair, "198.19.0.0/16", "via", pair.target_ip)

    report = lookup(pair, "198.19.1.1", "198.19.200.7")

    for address in ("198.19.1.1", "198.19.200.7"):
        assert report[address]["gateway"] == pair.target_ip
        assert report[address]["same_as_kernel"] is True
        assert report[address]["prefix_cached"] is True


def test_route_more_specific_not_cached(namespace_pair: NamespacePair) -> None:
    """A /24 inside the /16 keeps the /16 out of the prefix cache, so an
    address of the /24 still gets its own route."""
    pair = namespace_pair
    add_route(pair, "198.19.0.0/16", "via", pair.target_ip)
    add_route(pair, "198.19.7.0/24", "dev", pair.scanner_link)

    report = lookup(pair, "198.19.1.1", "198.19.7.9")

    assert report["198.19.1.1"]["prefix_cached"] is False
    assert report["198.19.7.9"]["gateway"] is None
    assert report["198.19.7.9"]["same_as_kernel"] is True


def test_route_policy_rules_disable_cache(namespace_pair: NamespacePair) -> None:
    pair = namespace_pair
    add_route(pair, "198.19.0.0/16", "via", pair.target_ip)
    pair.exec_in(
        pair.scanner, "ip", "rule", "add", "to", "198.20.0.0/16", "lookup", "100"
    )

    report = lookup(pair, "198.19.1.1", "198.19.2.2")

    for address in ("198.19.1.1", "198.19.2.2"):
        assert report[address]["gateway"] == pair.target_ip
        assert report[address]["prefix_cached"] is False

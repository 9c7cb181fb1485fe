"""Run raw-engine exchanges from a test's scanner namespace; print JSON.

Usage: usertcp_client.py SCENARIO ARGS...
  servers IP PORT_BASE CLOSED_PORT FILTERED_PORT
      one exchange per server behaviour of usertcp_server.py, plus a closed
      and a filtered port, with the nftables guard and self-test
  self-test-unguarded
      the self-test without the nftables table, which the kernel's RSTs fail
  foreign-source IP PORT SOURCE
      one exchange with the big server, sent from SOURCE, an address that
      no interface of the scanner namespace carries
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

from pktscan.errors import LocalError
from pktscan.grab.raw import RawSession
from pktscan.net.firewall import list_tables

REQUEST = b"request\n"


class Collect:
    """Keeps every reply byte; done after `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self.data += data

    @property
    def done(self) -> bool:
        return len(self.data) >= self.limit

    @property
    def certificate_complete(self) -> bool:
        return False


async def servers(ip: str, base: int, closed: int, filtered: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with RawSession(max_connections=16) as engine:
        targets = {
            "big": (base, 400_000, 10.0),
            "fin": (base + 1, 1_000_000, 5.0),
            "reset": (base + 2, 1_000_000, 5.0),
            "silent": (base + 3, 1_000_000, 0.5),
            "closed": (closed, 1, 1.0),
            "filtered": (filtered, 1, 1.0),
        }
        for name, (port, limit, timeout) in targets.items():
            reply = Collect(limit)
            # The first SYN after the namespaces came up can be lost while
            # IPv6 neighbour discovery runs, so the SYN is retransmitted
            # after a second.
            exchange = await engine.exchange(
                ip, port, REQUEST, reply, timeout=timeout, syn_wait=1.0
            )
            results[name] = {
                "state": exchange.state,
                "stop": exchange.stop,
                "length": len(reply.data),
                "sha256": hashlib.sha256(reply.data).hexdigest(),
            }
        stats = engine.stats
        results["stats"] = {
            "resets_sent": stats.resets_sent,
            "connections": stats.connections,
            "left": engine.connections,
        }
    results["tables_after"] = list_tables()
    return results


async def self_test_unguarded() -> dict[str, Any]:
    try:
        async with RawSession(guard=False):
            return {"error": None}
    except LocalError as error:
        return {"error": error.message}


async def foreign_source(ip: str, port: int, source: str) -> dict[str, Any]:
    session = RawSession(max_connections=4, source_ip=source)
    async with session as engine:
        tables_during = list_tables()
        responder = engine._arp
        arp_interfaces = sorted(responder.interfaces or ()) if responder else None
        reply = Collect(100_000)
        exchange = await engine.exchange(
            ip, port, REQUEST, reply, timeout=10.0, syn_wait=1.0
        )
    return {
        "state": exchange.state,
        "stop": exchange.stop,
        "length": len(reply.data),
        "sha256_100k": hashlib.sha256(reply.data[:100_000]).hexdigest(),
        "arp_replies": engine.stats.arp_replies,
        "resets_sent": engine.stats.resets_sent,
        "guarded": session.guard is not None,
        "arp_interfaces": arp_interfaces,
        "tables_during": tables_during,
    }


def main() -> None:
    scenario = sys.argv[1]
    if scenario == "servers":
        ip, base, closed, filtered = sys.argv[2:6]
        result = asyncio.run(servers(ip, int(base), int(closed), int(filtered)))
    elif scenario == "foreign-source":
        ip, port, source = sys.argv[2:5]
        result = asyncio.run(foreign_source(ip, int(port), source))
    elif scenario == "self-test-unguarded":
        result = asyncio.run(self_test_unguarded())
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

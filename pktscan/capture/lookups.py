"""Tie DNS exchanges to the addresses they concern, and check PTR lookups.

A forward (A or AAAA) exchange concerns every address in its answer, and a
reverse (PTR) exchange concerns the address its in-addr.arpa or ip6.arpa
name encodes. The scanner makes one PTR lookup per address, not per port,
for every address that answered a probe (SYN/ACK or RST), and makes it before
that address's first ClientHello. `reverse_lookup_deviations` checks exactly
that for one address over all its targets.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pktscan.capture.flows import Connection, ConnectionKind, DnsExchange, Side
from pktscan.capture.walk import Deviation, Token

DNS_A_TYPES = (1, 28)
DNS_PTR_TYPE = 12
ANSWERED_KINDS = (
    ConnectionKind.PROBE,
    ConnectionKind.CLOSED,
    ConnectionKind.HANDSHAKE,
    ConnectionKind.PARTIAL,
)


@dataclass(slots=True)
class AddressLookups:
    """The DNS exchanges that concern one address, in capture order."""

    forward: list[DnsExchange]
    reverse: list[DnsExchange]


def lookups_by_address(exchanges: Iterable[DnsExchange]) -> dict[str, AddressLookups]:
    """Group DNS exchanges by the address they concern."""
    by_address: dict[str, AddressLookups] = defaultdict(lambda: AddressLookups([], []))
    for exchange in exchanges:
        if exchange.qtype in DNS_A_TYPES:
            for answer in exchange.answers:
                by_address[answer].forward.append(exchange)
        elif exchange.qtype == DNS_PTR_TYPE:
            address = address_of_reverse_name(exchange.name)
            if address is not None:
                by_address[address].reverse.append(exchange)
    return by_address


def address_of_reverse_name(name: str) -> str | None:
    """Return the address an in-addr.arpa or ip6.arpa name encodes, or None."""
    labels = name.split(".")
    try:
        if name.endswith(".in-addr.arpa") and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if name.endswith(".ip6.arpa") and len(labels) == 34:
            digits = "".join(reversed(labels[:32]))
            groups = [digits[i : i + 4] for i in range(0, 32, 4)]
            return str(ipaddress.IPv6Address(":".join(groups)))
    except ValueError:
        return None
    return None


def forward_tokens(exchanges: Iterable[DnsExchange]) -> list[Token]:
    """Return a dns_a token per forward exchange."""
    return [
        Token(
            "dns_a",
            exchange.query_number,
            exchange.query_timestamp,
            f"A/AAAA query for {exchange.name}, {_response_text(exchange)}",
        )
        for exchange in exchanges
    ]


def _response_text(exchange: DnsExchange) -> str:
    if exchange.response_number is None:
        return "unanswered"
    return f"answered in packet {exchange.response_number}"


def _first_server_event(connections: Sequence[Connection]) -> tuple[int, float]:
    for connection in connections:
        for event in connection.events:
            if event.sender is Side.SERVER:
                return event.number, event.timestamp
    first = connections[0].events[0]
    return first.number, first.timestamp


def reverse_lookup_deviations(
    address: str,
    targets: Sequence[tuple[tuple[str, int], Sequence[Connection]]],
    reverse: Sequence[DnsExchange],
) -> dict[tuple[str, int], list[Deviation]]:
    """Check the PTR lookups of one address against its targets' connections.

    Args:
        address: the address.
        targets: (server endpoint, its connections) per target of the address,
            in order of first packet.
        reverse: the PTR exchanges for the address, in capture order.

    Returns:
        Deviations keyed by the target they are reported under.
    """
    found: dict[tuple[str, int], list[Deviation]] = defaultdict(list)
    answering = [
        (server, connections)
        for server, connections in targets
        if any(connection.kind in ANSWERED_KINDS for connection in connections)
    ]
    if not reverse:
        if answering:
            server, connections = answering[0]
            number, time = _first_server_event(connections)
            found[server].append(
                Deviation(number, time, f"PTR query and answer for {address}", "none")
            )
        return found

    query = reverse[0]
    first_server = targets[0][0]
    if not answering:
        found[first_server].append(
            Deviation(
                query.query_number,
                query.query_timestamp,
                f"no PTR query for {address}, which did not answer",
                f"PTR query for {query.name}",
            )
        )
        return found
    if all(exchange.response_number is None for exchange in reverse):
        found[answering[0][0]].append(
            Deviation(
                query.query_number,
                query.query_timestamp,
                f"a response to the PTR query for {address}",
                "none",
            )
        )
    for server, connections in targets:
        found[server] += _hellos_before(query, connections)
    return found


def _hellos_before(
    query: DnsExchange, connections: Sequence[Connection]
) -> list[Deviation]:
    deviations = []
    for connection in connections:
        hello = connection.client_stream.packet_at(0)
        if hello is not None and hello.number < query.query_number:
            deviations.append(
                Deviation(
                    hello.number,
                    hello.timestamp,
                    f"ClientHello after the PTR query in packet {query.query_number}",
                    "ClientHello before it",
                )
            )
    return deviations

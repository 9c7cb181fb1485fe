"""Check a capture against a profile's sequences and report per target.

`check_flows` groups connections by server address and port (the target).
It turns each connection's segments, and each target's forward lookups and
connections, into tokens and walks them through the profile's
`SequenceModel`s (see walk.py). Each token that no step accepts is a
`Deviation` with its packet number, time, what was expected and what was
seen. On top of the walks come the profile's `Rule`s across attempts, the
PTR check per address (lookups.py) and a deviation for every byte range
missing from a stream, since missing bytes cannot be checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pktscan.capture.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN
from pktscan.capture.flows import (
    Connection,
    ConnectionKind,
    FlowSet,
    Side,
    TcpEvent,
    flows_from_file,
)
from pktscan.capture.lookups import (
    AddressLookups,
    forward_tokens,
    lookups_by_address,
    reverse_lookup_deviations,
)
from pktscan.capture.reader import Damage
from pktscan.capture.sequence import (
    PROFILES,
    Profile,
    ProfileModel,
    Rule,
)
from pktscan.capture.tlsview import StreamView, view_stream
from pktscan.capture.walk import Deviation, Token, walk_sequence

HTTP_PORT = 80
# Attempt.hello of a connection whose client sent no payload; the connection
# model already reports the missing ClientHello.
NO_DATA = "no data"

PROBE_TOKENS = {
    ConnectionKind.PROBE: "probe_open",
    ConnectionKind.CLOSED: "probe_closed",
    ConnectionKind.UNANSWERED: "probe_filtered",
    ConnectionKind.HANDSHAKE: "attempt",
    ConnectionKind.PARTIAL: "partial",
}
ATTEMPT_TOKENS = {
    ConnectionKind.PROBE: "attempt",
    ConnectionKind.CLOSED: "closed",
    ConnectionKind.UNANSWERED: "filtered",
    ConnectionKind.HANDSHAKE: "attempt",
    ConnectionKind.PARTIAL: "partial",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connection to a target that carried (or should have carried) a hello.

    Attributes:
        number: packet number of its first segment.
        hello_number: packet number of the first client payload byte.
        client_port: the scanner's source port.
        set_number: the protocol set of its ClientHello, or None.
        hello: the label of what the client sent first.
        certificate_number: packet that brought the certificate, or None.
        alert: the server's first cleartext alert, or None.
        close: the first FIN or RST and, if later, the client's last one, for
            example "FIN from target, then RST from scanner"; "none" when the
            capture has neither.
    """

    number: int
    hello_number: int
    client_port: int
    set_number: int | None
    hello: str
    certificate_number: int | None
    alert: str | None
    close: str

    @property
    def certificate(self) -> bool:
        """Whether the server's flight carried a certificate."""
        return self.certificate_number is not None

    def to_json(self) -> dict[str, Any]:
        """Return the attempt as a JSON object."""
        return {
            "packet": self.number,
            "hello_packet": self.hello_number,
            "client_port": self.client_port,
            "set": self.set_number,
            "hello": self.hello,
            "certificate": self.certificate,
            "certificate_packet": self.certificate_number,
            "alert": self.alert,
            "close": self.close,
        }


@dataclass(frozen=True, slots=True)
class TargetVerdict:
    """The verdict for one target's traffic under a profile.

    Attributes:
        target: "address:port", IPv6 addresses in brackets.
        probe: "open", "closed" or "filtered" from the SYN probe or first
            connection, or None.
        attempts: connections that carried a hello, in order.
        deviations: in packet order.
    """

    target: str
    probe: str | None
    attempts: tuple[Attempt, ...]
    deviations: tuple[Deviation, ...]

    @property
    def conforms(self) -> bool:
        """True when the target's traffic showed no deviation."""
        return not self.deviations

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as a JSON object."""
        return {
            "target": self.target,
            "conforms": self.conforms,
            "probe": self.probe,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "deviations": [deviation.to_json() for deviation in self.deviations],
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The verdicts for one capture file.

    Attributes:
        path: the file checked.
        profile: the profile checked against.
        frames: frames read.
        start_time: timestamp of the first frame, or None.
        damage: where reading stopped early, or None.
        targets: one verdict per target, ordered by first packet.
    """

    path: str
    profile: Profile
    frames: int
    start_time: float | None
    damage: Damage | None
    targets: tuple[TargetVerdict, ...]

    @property
    def conforms(self) -> bool:
        """True when every target conforms and the whole file was read."""
        return self.damage is None and all(t.conforms for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON object."""
        damage = None
        if self.damage is not None:
            damage = {
                "packet": self.damage.number,
                "offset": self.damage.offset,
                "reason": self.damage.reason,
            }
        return {
            "file": self.path,
            "profile": self.profile.value,
            "frames": self.frames,
            "start_time": self.start_time,
            "conforms": self.conforms,
            "damage": damage,
            "targets": [target.to_json() for target in self.targets],
        }


def _side_word(model: ProfileModel, side: Side) -> str:
    return model.client if side is Side.CLIENT else model.server


def segment_tokens(model: ProfileModel, events: Iterable[TcpEvent]) -> list[Token]:
    """Turn a connection's segments into connection tokens (see sequence.py)."""
    tokens: list[Token] = []
    for event in events:
        prefix = "c:" if event.sender is Side.CLIENT else "s:"
        who = _side_word(model, event.sender)
        text = f"{event.flag_names} from {who}"
        if event.length:
            text += f" with {event.length} bytes"
        kinds = _segment_kinds(event)
        for kind in kinds:
            tokens.append(Token(prefix + kind, event.number, event.timestamp, text))
    return tokens


def _segment_kinds(event: TcpEvent) -> list[str]:
    flags = event.flags
    if flags & TH_RST:
        return ["RST"]
    if flags & TH_SYN:
        return ["SYN/ACK" if flags & TH_ACK else "SYN"]
    kinds = []
    if event.length:
        kinds.append("RETX" if event.retransmission else "DATA")
    if flags & TH_FIN:
        kinds.append("FIN")
    return kinds or ["ACK"]


def _target_text(server: tuple[str, int]) -> str:
    address, port = server
    if ":" in address:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


@dataclass(slots=True)
class _TargetTraffic:
    server: tuple[str, int]
    connections: list[Connection]


def check_flows(flows: FlowSet, profile: Profile, path: str = "") -> CheckReport:
    """Check grouped flows against a profile and return the report."""
    model = PROFILES[profile]
    targets: dict[tuple[str, int], _TargetTraffic] = {}
    for connection in flows.connections:
        if model.data_only and not _carries_data(connection):
            continue
        traffic = targets.setdefault(
            connection.server, _TargetTraffic(connection.server, [])
        )
        traffic.connections.append(connection)
    lookups = lookups_by_address(flows.dns)
    has_dns = bool(flows.dns)
    by_address = _address_deviations(model, targets, lookups, has_dns)
    verdicts = tuple(
        _check_target(model, traffic, lookups, has_dns, by_address[traffic.server])
        for traffic in targets.values()
    )
    return CheckReport(
        path, profile, flows.frames, flows.start_time, flows.damage, verdicts
    )


def check_file(path: Path, profile: Profile) -> CheckReport:
    """Read a capture file and check it against a profile.

    Raises:
        CaptureError: the file cannot be opened or is not a capture.
    """
    return check_flows(flows_from_file(path), profile, str(path))


def detect_profile(flows: FlowSet) -> Profile:
    """Tell which scanner engine made a capture, from its connections.

    The kernel engine leaves a SYN probe (SYN, SYN/ACK, RST) beside the
    connect() of each attempt, while the raw engine sends its first
    ClientHello on the probe's own connection. So a capture with no probe
    connection but with a connection that carried data is the raw engine's,
    and any other capture is checked as the kernel engine's.
    """
    kinds = {connection.kind for connection in flows.connections}
    if ConnectionKind.PROBE in kinds:
        return Profile.SCAN
    if any(_carries_data(connection) for connection in flows.connections):
        return Profile.RAW
    return Profile.SCAN


def _carries_data(connection: Connection) -> bool:
    return bool(connection.client_stream.chunks or connection.server_stream.chunks)


def _address_deviations(
    model: ProfileModel,
    targets: dict[tuple[str, int], _TargetTraffic],
    lookups: dict[str, AddressLookups],
    has_dns: bool,
) -> dict[tuple[str, int], list[Deviation]]:
    """Check the PTR lookups of every address, when the capture has DNS."""
    found: dict[tuple[str, int], list[Deviation]] = defaultdict(list)
    if Rule.PTR_PER_ADDRESS not in model.rules or not has_dns:
        return found
    by_address: dict[str, list[_TargetTraffic]] = defaultdict(list)
    for traffic in targets.values():
        by_address[traffic.server[0]].append(traffic)
    for address, traffics in by_address.items():
        pairs = [(traffic.server, traffic.connections) for traffic in traffics]
        reverse = lookups[address].reverse if address in lookups else []
        for server, deviations in reverse_lookup_deviations(
            address, pairs, reverse
        ).items():
            found[server] += deviations
    return found


def _check_target(
    model: ProfileModel,
    traffic: _TargetTraffic,
    lookups: dict[str, AddressLookups],
    has_dns: bool,
    address_deviations: list[Deviation],
) -> TargetVerdict:
    kinds = PROBE_TOKENS if model.profile is Profile.SCAN else ATTEMPT_TOKENS
    address = traffic.server[0]
    tokens = forward_tokens(lookups[address].forward) if address in lookups else []
    deviations = list(address_deviations)
    attempts: list[Attempt] = []

    for connection in traffic.connections:
        kind = kinds[connection.kind]
        tokens.append(
            Token(
                kind,
                connection.first_number,
                connection.events[0].timestamp,
                f"{_connection_text(connection)} from {model.client} port "
                f"{connection.client[1]}",
            )
        )
        deviations += _check_connection(model, connection)
        if kind in ("attempt", "partial"):
            attempts.append(_attempt(model, connection))

    tokens.sort(key=lambda token: token.number or 0)
    last = traffic.connections[-1]
    end = Token("end", last.last_number, last.events[-1].timestamp, "no more traffic")
    deviations += walk_sequence(model.target, tokens, end, has_dns=has_dns)
    deviations += _check_rules(model, traffic.server[1], attempts, traffic.connections)
    deviations.sort(key=lambda deviation: deviation.number or 0)

    return TargetVerdict(
        _target_text(traffic.server),
        _probe_state(traffic.connections),
        tuple(attempts),
        tuple(deviations),
    )


def _connection_text(connection: Connection) -> str:
    return {
        ConnectionKind.PROBE: "SYN probe answered by SYN/ACK",
        ConnectionKind.CLOSED: "SYN answered by RST",
        ConnectionKind.UNANSWERED: "unanswered SYN",
        ConnectionKind.HANDSHAKE: "connection",
        ConnectionKind.PARTIAL: "connection without its SYN in the capture",
    }[connection.kind]


def _probe_state(connections: Sequence[Connection]) -> str | None:
    states = {
        ConnectionKind.PROBE: "open",
        ConnectionKind.HANDSHAKE: "open",
        ConnectionKind.CLOSED: "closed",
        ConnectionKind.UNANSWERED: "filtered",
    }
    return states.get(connections[0].kind)


def _check_connection(model: ProfileModel, connection: Connection) -> list[Deviation]:
    sequence = model.connections.get(connection.kind)
    if sequence is None:
        return []
    tokens = segment_tokens(model, connection.events)
    last = connection.events[-1]
    end = Token("end", last.number, last.timestamp, "end of the connection")
    return walk_sequence(sequence, tokens, end) + _gap_deviations(model, connection)


def _gap_deviations(model: ProfileModel, connection: Connection) -> list[Deviation]:
    """Report bytes missing from either stream, since they cannot be checked."""
    times = {event.number: event.timestamp for event in connection.events}
    deviations = []
    for side, stream in (
        (Side.CLIENT, connection.client_stream),
        (Side.SERVER, connection.server_stream),
    ):
        who = _side_word(model, side)
        for gap in stream.gaps:
            missing = gap.end - gap.start
            if gap.reason == "snaplen":
                seen = f"{missing} bytes cut off by the snapshot length"
            else:
                seen = f"{missing} bytes missing before this packet"
            deviations.append(
                Deviation(
                    gap.number,
                    times.get(gap.number),
                    f"every byte from {who} in the capture",
                    seen,
                )
            )
    return deviations


def _attempt(model: ProfileModel, connection: Connection) -> Attempt:
    client_view = view_stream(connection.client_stream.data, from_client=True)
    server_view = view_stream(connection.server_stream.data, from_client=False)
    hello_chunk = connection.client_stream.packet_at(0)
    hello = client_view.messages[0].name if client_view.messages else NO_DATA
    certificate_number = None
    start = server_view.certificate_offset
    end = server_view.certificate_end
    if start is not None and end is not None:
        chunk = connection.server_stream.last_packet_between(start, end)
        certificate_number = chunk.number if chunk is not None else None
    return Attempt(
        connection.first_number,
        hello_chunk.number if hello_chunk is not None else connection.first_number,
        connection.client[1],
        client_view.hello_set,
        hello,
        certificate_number,
        server_view.alert,
        _close_text(model, connection.events),
    )


def _close_text(model: ProfileModel, events: Sequence[TcpEvent]) -> str:
    closing = [event for event in events if event.flags & (TH_RST | TH_FIN)]
    if not closing:
        return "none"

    def describe(event: TcpEvent) -> str:
        what = "RST" if event.flags & TH_RST else "FIN"
        return f"{what} from {_side_word(model, event.sender)}"

    text = describe(closing[0])
    client_closes = [event for event in closing if event.sender is Side.CLIENT]
    if client_closes and client_closes[-1] is not closing[0]:
        text += f", then {describe(client_closes[-1])}"
    return text


def _check_rules(
    model: ProfileModel,
    port: int,
    attempts: Sequence[Attempt],
    connections: Sequence[Connection],
) -> list[Deviation]:
    timestamps = {
        event.number: event.timestamp for c in connections for event in c.events
    }
    deviations: list[Deviation] = []
    previous_set: int | None = None
    certificate_number: int | None = None
    for attempt in attempts:
        if Rule.NONE_AFTER_CERTIFICATE in model.rules and certificate_number:
            deviations.append(
                Deviation(
                    attempt.number,
                    timestamps.get(attempt.number),
                    f"no attempt after the certificate in packet {certificate_number}",
                    f"{attempt.hello} from port {attempt.client_port}",
                )
            )
        time = timestamps.get(attempt.hello_number)
        deviations += _hello_deviations(model, port, attempt, previous_set, time)
        if attempt.set_number is not None:
            previous_set = attempt.set_number
        certificate_number = certificate_number or attempt.certificate_number
    return deviations


def _hello_deviations(
    model: ProfileModel,
    port: int,
    attempt: Attempt,
    previous_set: int | None,
    time: float | None,
) -> list[Deviation]:
    def deviation(expected: str) -> Deviation:
        return Deviation(attempt.hello_number, time, expected, attempt.hello)

    if attempt.hello == NO_DATA:
        return []

    if port == HTTP_PORT:
        is_http = attempt.hello.startswith("HTTP ")
        if Rule.HTTP_ON_PORT_80 in model.rules and not is_http:
            return [deviation("HTTP request")]
        return []
    if attempt.set_number is None:
        if Rule.HELLO_FROM_A_SET in model.rules:
            return [deviation("ClientHello of protocol set 1-4")]
        return []
    increasing = previous_set is None or attempt.set_number > previous_set
    if Rule.SETS_INCREASING in model.rules and not increasing:
        return [deviation(f"ClientHello of a set above {previous_set}")]
    return []


def view_connection(connection: Connection) -> tuple[StreamView, StreamView]:
    """Return the (client, server) message views of a connection."""
    return (
        view_stream(connection.client_stream.data, from_client=True),
        view_stream(connection.server_stream.data, from_client=False),
    )

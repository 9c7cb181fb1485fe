"""Draw connections as ladder diagrams, in ASCII or SVG.

One row per segment: packet number, time since the first packet, the
client's label, an arrow for the direction, the server's label. A label is
the TCP flags, or the names of the messages that start in the segment
(ClientHello (set 1), ServerHello, Certificate, Alert(handshake_failure),
...), or "continuation" for payload that only continues a message.

```
     9  +0.007999  SYN                           --->
    10  +0.008999                                <---  SYN/ACK
    12  +0.010999  ClientHello (set 1)           --->
    14  +0.012999                                <---  Alert(handshake_failure)
    16  +0.014999  RST/ACK                       --->
```
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from pktscan.capture.decode import TH_FIN, TH_RST, TH_SYN
from pktscan.capture.flows import Connection, DnsExchange, Side, TcpEvent
from pktscan.capture.stream import Stream
from pktscan.capture.tlsview import StreamView, view_stream

LABEL_WIDTH = 30
SVG_ROW_PX = 22
SVG_WIDTH_PX = 900
SVG_LEFT_PX = 300
SVG_RIGHT_PX = 600
DNS_TYPE_NAMES = {1: "A", 28: "AAAA", 12: "PTR"}


@dataclass(frozen=True, slots=True)
class Row:
    """One segment of a ladder."""

    number: int
    offset_s: float
    sender: Side
    label: str


def _labels_by_packet(stream: Stream, view: StreamView) -> dict[int, list[str]]:
    labels: dict[int, list[str]] = defaultdict(list)
    for message in view.messages:
        chunk = stream.packet_at(message.offset)
        if chunk is not None:
            labels[chunk.number].append(message.name)
    return labels


def _flag_label(event: TcpEvent) -> str:
    special = event.flags & (TH_SYN | TH_FIN | TH_RST)
    if special or not event.length:
        return event.flag_names
    return ""


def ladder_rows(connection: Connection, start_time: float) -> list[Row]:
    """Return one labelled row per segment of a connection."""
    client_view = view_stream(connection.client_stream.data, from_client=True)
    server_view = view_stream(connection.server_stream.data, from_client=False)
    names = _labels_by_packet(connection.client_stream, client_view)
    names.update(_labels_by_packet(connection.server_stream, server_view))
    rows = []
    for event in connection.events:
        parts = [_flag_label(event)] if _flag_label(event) else []
        if event.retransmission and event.length:
            parts.append(f"retransmission ({event.length} bytes)")
        elif event.number in names:
            parts.extend(names[event.number])
        elif event.length:
            parts.append(f"continuation ({event.length} bytes)")
        offset = event.timestamp - start_time
        rows.append(Row(event.number, offset, event.sender, ", ".join(parts)))
    return rows


def _endpoint(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connection_title(connection: Connection) -> str:
    """Return "client -> server (kind)" for a connection."""
    client, server = _endpoint(connection.client), _endpoint(connection.server)
    return f"{client} -> {server} ({connection.kind.value})"


def render_ladder(connection: Connection, start_time: float) -> str:
    """Draw one connection as an ASCII ladder."""
    lines = [connection_title(connection)]
    for row in ladder_rows(connection, start_time):
        head = f"{row.number:>6}  {row.offset_s:+10.6f}  "
        if row.sender is Side.CLIENT:
            lines.append(f"{head}{row.label:<{LABEL_WIDTH}}  --->")
        else:
            lines.append(f"{head}{'':<{LABEL_WIDTH}}  <---  {row.label}")
    return "\n".join(lines)


def render_dns(exchanges: tuple[DnsExchange, ...], start_time: float) -> str:
    """List DNS exchanges, one line each."""
    lines = []
    for exchange in exchanges:
        offset = exchange.query_timestamp - start_time
        qtype = DNS_TYPE_NAMES.get(exchange.qtype, f"type {exchange.qtype}")
        if exchange.response_number is None:
            answer = "no response"
        else:
            answer = f"packet {exchange.response_number}: " + (
                ", ".join(exchange.answers) or f"rcode {exchange.rcode}"
            )
        lines.append(
            f"{exchange.query_number:>6}  {offset:+10.6f}  DNS {qtype} "
            f"{exchange.name} -> {answer}"
        )
    return "\n".join(lines)


def render_svg(connections: list[Connection], start_time: float) -> str:
    """Draw connections as one SVG ladder, a section per connection."""
    body: list[str] = []
    y = SVG_ROW_PX
    for connection in connections:
        body.append(_svg_text(10, y, connection_title(connection), bold=True))
        top = y + 6
        y += SVG_ROW_PX
        for row in ladder_rows(connection, start_time):
            body.append(_svg_row(row, y))
            y += SVG_ROW_PX
        for x in (SVG_LEFT_PX, SVG_RIGHT_PX):
            body.append(
                f'<line x1="{x}" y1="{top}" x2="{x}" y2="{y - SVG_ROW_PX + 6}" '
                'stroke="#888"/>'
            )
        y += SVG_ROW_PX
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH_PX}" '
        f'height="{y}" font-family="monospace" font-size="12">'
    )
    marker = (
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="8" '
        'refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>'
    )
    return "\n".join([header, marker, *body, "</svg>"]) + "\n"


def _svg_text(
    x: int, y: int, text: str, *, bold: bool = False, end: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    anchor = ' text-anchor="end"' if end else ""
    return f'<text x="{x}" y="{y}"{weight}{anchor}>{escape(text)}</text>'


def _svg_row(row: Row, y: int) -> str:
    start, end = (
        (SVG_LEFT_PX, SVG_RIGHT_PX)
        if row.sender is Side.CLIENT
        else (SVG_RIGHT_PX, SVG_LEFT_PX)
    )
    colour = "#c00" if "RST" in row.label else "#000"
    arrow = (
        f'<line x1="{start}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" '
        'marker-end="url(#head)"/>'
    )
    stamp = _svg_text(10, y + 4, f"{row.number:>6} {row.offset_s:+.6f}")
    label_x = SVG_LEFT_PX - 8 if row.sender is Side.CLIENT else SVG_RIGHT_PX + 8
    label = _svg_text(label_x, y - 4, row.label, end=row.sender is Side.CLIENT)
    return "\n".join([arrow, stamp, label])

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

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from html import escape

from pktscan.capture.decode import TH_FIN, TH_RST, TH_SYN
from pktscan.capture.flows import Connection, DnsExchange, Side, TcpEvent
from pktscan.capture.stream import Stream
from pktscan.capture.tlsview import StreamView, view_stream

LABEL_WIDTH = 30
SVG_ROW_PX = 24
SVG_MARGIN_PX = 10
SVG_CLIENT_PX = 240
SVG_SERVER_PX = 840
SVG_WIDTH_PX = 1060
# 12 px monospace glyphs are about 7.2 px wide, so this many characters fit
# between the lifelines with a margin.
SVG_LABEL_CHARS = 80
SVG_CONTROL_COLOUR = "#000"
SVG_DATA_COLOUR = "#1f5fbf"
SVG_RST_COLOUR = "#c00"
# A label made only of these flag names is a segment without payload.
TCP_FLAG_NAMES = frozenset({"SYN", "FIN", "RST", "PSH", "ACK", "none"})
SVG_LEGEND = (
    "Each arrow is one TCP segment: its packet number and seconds since the "
    "first packet are on the left.",
    "Black: TCP control (SYN, ACK, FIN). Blue: payload, named by the TLS, "
    "SSL 2.0 or HTTP messages that start in it. Red: RST.",
)
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


def render_svg(
    connections: list[Connection],
    start_time: float,
    dns: tuple[DnsExchange, ...] = (),
) -> str:
    """Draw connections as one SVG ladder, a section per connection.

    A legend comes first, then the DNS exchanges that returned or named a
    drawn server's address, as text lines, then each connection with its
    two ends named above their lifelines. Every label
    sits above its arrow between the lifelines, cut with an ellipsis when it
    is longer than `SVG_LABEL_CHARS`; the full text is the label's tooltip.
    """
    body = [
        _svg_text(SVG_MARGIN_PX, SVG_ROW_PX * number, line)
        for number, line in enumerate(SVG_LEGEND, 1)
    ]
    y = SVG_ROW_PX * (len(SVG_LEGEND) + 2)
    dns = _dns_of(connections, dns)
    if dns:
        body.append(_svg_text(SVG_MARGIN_PX, y, "DNS", bold=True))
        y += SVG_ROW_PX
        for line in render_dns(dns, start_time).splitlines():
            body.append(_svg_text(SVG_MARGIN_PX, y, line))
            y += SVG_ROW_PX
        y += SVG_ROW_PX
    for connection in connections:
        section, y = _svg_connection(connection, start_time, y)
        body.extend(section)
        y += SVG_ROW_PX
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH_PX}" '
        f'height="{y}" font-family="monospace" font-size="12">'
    )
    marker = (
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="8" '
        'refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" '
        'fill="context-stroke"/></marker></defs>'
    )
    background = '<rect width="100%" height="100%" fill="#fff"/>'
    return "\n".join([header, marker, background, *body, "</svg>"]) + "\n"


def _dns_of(
    connections: list[Connection], dns: tuple[DnsExchange, ...]
) -> tuple[DnsExchange, ...]:
    addresses = {connection.server[0] for connection in connections}
    reverse_names = {ipaddress.ip_address(a).reverse_pointer for a in addresses}
    return tuple(
        exchange
        for exchange in dns
        if exchange.name in reverse_names or addresses & set(exchange.answers)
    )


def _svg_connection(
    connection: Connection, start_time: float, y: int
) -> tuple[list[str], int]:
    """Draw one connection from height `y`; return its elements and end height."""
    body = [_svg_text(SVG_MARGIN_PX, y, connection_title(connection), bold=True)]
    y += SVG_ROW_PX
    client = f"client {_endpoint(connection.client)}"
    server = f"server {_endpoint(connection.server)}"
    body.append(_svg_text(SVG_MARGIN_PX, y, "packet  time (s)", bold=True))
    body.append(_svg_text(SVG_CLIENT_PX, y, client, bold=True, anchor="middle"))
    body.append(_svg_text(SVG_SERVER_PX, y, server, bold=True, anchor="middle"))
    top = y + 6
    y += SVG_ROW_PX
    for row in ladder_rows(connection, start_time):
        body.append(_svg_row(row, y))
        y += SVG_ROW_PX
    for x in (SVG_CLIENT_PX, SVG_SERVER_PX):
        body.append(
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{y - SVG_ROW_PX + 6}" '
            'stroke="#888"/>'
        )
    return body, y


def _svg_text(
    x: int,
    y: int,
    text: str,
    *,
    bold: bool = False,
    anchor: str = "start",
    fill: str = "#000",
    title: str | None = None,
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    tooltip = f"<title>{escape(title)}</title>" if title is not None else ""
    return (
        f'<text x="{x}" y="{y}" text-anchor="{anchor}" fill="{fill}"{weight} '
        f'xml:space="preserve">{escape(text)}{tooltip}</text>'
    )


def _row_colour(row: Row) -> str:
    parts = row.label.split(", ")
    flags = parts[0].split("/")
    if "RST" in flags:
        return SVG_RST_COLOUR
    if len(parts) == 1 and set(flags) <= TCP_FLAG_NAMES:
        return SVG_CONTROL_COLOUR
    return SVG_DATA_COLOUR


def _svg_row(row: Row, y: int) -> str:
    start, end = (
        (SVG_CLIENT_PX, SVG_SERVER_PX)
        if row.sender is Side.CLIENT
        else (SVG_SERVER_PX, SVG_CLIENT_PX)
    )
    colour = _row_colour(row)
    arrow = (
        f'<line x1="{start}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" '
        'marker-end="url(#head)"/>'
    )
    stamp = _svg_text(SVG_MARGIN_PX, y + 4, f"{row.number:>6}  {row.offset_s:+.6f}")
    label = row.label
    title = None
    if len(label) > SVG_LABEL_CHARS:
        title = label
        label = label[: SVG_LABEL_CHARS - 1] + "\u2026"
    middle = (SVG_CLIENT_PX + SVG_SERVER_PX) // 2
    text = _svg_text(middle, y - 5, label, anchor="middle", fill=colour, title=title)
    return "\n".join([arrow, stamp, text])

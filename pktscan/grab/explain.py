"""The explanation of a grab: every packet and record of every attempt, named.

`explain_grab` turns a `GrabTranscript` into text without any I/O. For each
attempt it shows the TCP connect, our ClientHello, each chunk the server
sent with the records and handshake messages it completed, and our RST.
Records come from replaying the chunks through a `RecordReader`, messages
from replaying them through a fresh `HandshakeReader`, so every offset
printed is a stream offset that the codec itself reported. Where a known
intolerance explains why an attempt brought no certificate, a `hint:` line
names it.
"""

from __future__ import annotations

from typing import Final

from pktscan.certs import decode_certificate
from pktscan.errors import PeerProtocolError
from pktscan.grab.transcript import AttemptTranscript, GrabTranscript, ReceivedChunk
from pktscan.results import TlsResult
from pktscan.tls import events as ev
from pktscan.tls.client import Event, HandshakeReader
from pktscan.tls.constants import (
    AlertDescription,
    AlertLevel,
    CertificateStatusType,
    CipherSuite,
    ClientCertificateType,
    ContentType,
    HandshakeType,
    ProtocolVersion,
    SSLv2CertificateType,
    SSLv2CipherKind,
    SSLv2ErrorCode,
    name_of,
    version_name,
)
from pktscan.tls.explain import Field, describe_hello
from pktscan.tls.record import Record, RecordReader, TlsRecord

HEX_DUMP_MAX_BYTES: Final = 64  # bytes of a non-TLS reply shown as hex+ASCII
HEX_BYTES_PER_LINE: Final = 16
# Indents: attempt lines, then the contents of one received chunk.
STEP_INDENT: Final = "  "
DETAIL_INDENT: Final = " " * 14

HINT_CONNECT_FAILED: Final = (
    "no TCP connection: a timeout means that nothing answered the SYN (a"
    " firewall that drops it, or no host), a refusal that the port is closed"
)
HINT_SSLV2_REJECTED: Final = (
    "this server rejects SSLv2-compatible hellos; set 2 sends the same versions "
    "in a TLS record"
)
HINT_ABOVE_SSL3_REJECTED: Final = (
    "this server resets hellos that offer versions above SSL 3.0 (version "
    "intolerance); set 4 offers SSL 3.0 alone"
)
HINT_FALLBACK: Final = (
    "inappropriate_fallback: the server supports a higher version than this "
    "set offers and took the hello for a downgrade (RFC 7507); set 3 offers "
    "TLS 1.2"
)


def _versions_text(versions: tuple[int, ...]) -> str:
    return ", ".join(version_name(v) for v in versions)


def _milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return " " * 10
    return f"{seconds * 1000:8.1f}ms"


# Hints


def hint_for(attempt: AttemptTranscript) -> str | None:
    """Return the hint that explains why `attempt` failed, or None.

    The hints name the intolerances that the ladder exists for. One is a
    reset, or a close without a reply, after an SSLv2-format hello. Another
    is a reset after a TLS hello that offers versions above SSL 3.0. The
    others are the protocol_version, inappropriate_fallback and
    handshake_failure alerts. A hint is a likely reason, read from the
    outcome alone.
    """
    if attempt.connect_error is not None:
        return HINT_CONNECT_FAILED
    outcome = attempt.outcome
    if outcome is None or outcome.chain:
        return None
    protocol_set = attempt.protocol_set
    offered = _versions_text(protocol_set.versions)
    if outcome.outcome in ("reset", "closed"):
        if protocol_set.hello_format == "sslv2":
            return HINT_SSLV2_REJECTED
        if outcome.outcome == "reset" and max(protocol_set.versions) > (
            ProtocolVersion.SSL_3_0
        ):
            return HINT_ABOVE_SSL3_REJECTED
        return None
    if outcome.outcome != "alert" or outcome.alert_level is None:
        return None
    description = outcome.alert_description
    if description == AlertDescription.protocol_version:
        return (
            f"protocol_version: the server supports none of the versions this "
            f"set offers ({offered}); the other sets offer other versions"
        )
    if description == AlertDescription.inappropriate_fallback:
        return HINT_FALLBACK
    if description == AlertDescription.handshake_failure:
        return (
            "handshake_failure: usually no common cipher suite, because the "
            f"server accepts none of the suites that set {protocol_set.number} "
            "offers (see `pktscan hello --set "
            f"{protocol_set.number}`)"
        )
    return None


# Our side: connect, hello, close


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _describe_connect(attempt: AttemptTranscript, ip: str, port: int) -> str:
    target = _endpoint(ip, port)
    if attempt.connect_error is not None:
        return f"TCP connect to {target} failed: {attempt.connect_error}"
    assert attempt.source is not None
    source = _endpoint(*attempt.source)
    return f"TCP connect {source} -> {target}: SYN, SYN/ACK, ACK"


def _hello_summary(hello: bytes, hello_format: str) -> list[str]:
    """Summarise a hello from the fields `describe_hello` splits it into."""
    fields = describe_hello(hello)

    def values(name: str) -> list[Field]:
        return [f for f in fields if f.name == name]

    version_field = values("version") or values("client_version")
    suites = values("cipher_suite") or values("cipher_spec")
    extensions = [f.meaning for f in values("extension_type")]
    host_names = [f.meaning for f in values("HostName")]
    form = "SSLv2-compatible" if hello_format == "sslv2" else "TLS record"
    unit = "cipher specs" if hello_format == "sslv2" else "cipher suites"
    return [
        f"{len(hello)} bytes, {form} format; {version_field[0].meaning}",
        f"{len(suites)} {unit}; SNI: {', '.join(host_names) or 'none'}",
        f"extensions: {', '.join(extensions) or 'none'}",
    ]


def _describe_close(attempt: AttemptTranscript) -> str:
    reason = attempt.stop_reason
    if reason == "reset":
        return "the server reset the connection; close() has nothing left to send"
    if reason == "eof":
        return "> RST after the server's FIN: close() with SO_LINGER 0"
    if reason == "timeout":
        return "> RST after the timeout: close() with SO_LINGER 0"
    return "> RST: close() with SO_LINGER 0, the reader needs nothing more"


# The server's side: records and messages


def _describe_record(record: Record) -> str:
    if isinstance(record, TlsRecord):
        kind = name_of(ContentType, record.content_type)
        return (
            f"record {kind}, {version_name(record.version)}, "
            f"{len(record.fragment)} bytes"
        )
    header = f"{record.header_len}-byte header"
    return f"SSL 2.0 record, {header}, {len(record.body)} bytes of body"


def _certificate_lines(chain: tuple[bytes, ...]) -> list[str]:
    lines = []
    for index, der in enumerate(chain):
        info = decode_certificate(der)
        subject = info.subject if info.subject is not None else "(no subject)"
        lines.append(f"  [{index}] {subject}")
        lines.append(f"      SHA-256 {info.sha256}, {len(der)} bytes")
        if info.error is not None:
            lines.append(f"      kept raw: {info.error}")
    return lines


def _describe_alert(event: ev.AlertReceived) -> str:
    level = name_of(AlertLevel, event.level)
    description = name_of(AlertDescription, event.description)
    return f"Alert: {level} {description} ({event.description})"


def _describe_sslv2_hello(event: ev.SSLv2ServerHelloReceived) -> list[str]:
    hello = event.server_hello
    kinds = ", ".join(name_of(SSLv2CipherKind, k) for k in hello.cipher_specs)
    lines = [
        f"SSL 2.0 SERVER-HELLO: version {version_name(hello.server_version)}, "
        f"certificate_type "
        f"{name_of(SSLv2CertificateType, hello.certificate_type)}",
        f"  cipher specs: {kinds or 'none'}",
    ]
    if hello.certificate:
        lines += _certificate_lines((hello.certificate,))
    return lines


def _describe_certificate_request(event: ev.CertificateRequestReceived) -> str:
    request = event.request
    types = ", ".join(
        name_of(ClientCertificateType, t) for t in request.certificate_types
    )
    return (
        f"CertificateRequest: the server asks for a client certificate "
        f"({types}; {len(request.certificate_authorities)} CA names)"
    )


def _describe_server_hello(event: ev.ServerHelloReceived) -> str:
    hello = event.server_hello
    cipher = name_of(CipherSuite, hello.cipher_suite)
    return f"ServerHello: {version_name(hello.version)}, {cipher}"


def _describe_key_exchange(event: ev.ServerKeyExchangeReceived) -> str:
    summary = event.key_exchange.summary()
    details = ", ".join(f"{key} {value}" for key, value in summary.items())
    return f"ServerKeyExchange: {details}"


def _describe_status(event: ev.CertificateStatusReceived) -> str:
    status = event.status
    kind = name_of(CertificateStatusType, status.status_type)
    return f"CertificateStatus: {kind}, a {len(status.response)}-byte response"


def describe_event(event: Event) -> list[str]:
    """Name one reader event; the first line is the summary, others details."""
    match event:
        case ev.ServerHelloReceived():
            return [_describe_server_hello(event)]
        case ev.HelloRetryRequestReceived():
            return ["HelloRetryRequest (TLS 1.3)"]
        case ev.CertificateReceived():
            count = len(event.chain)
            noun = "certificate" if count == 1 else "certificates"
            return [
                f"Certificate: {count} {noun}, leaf first",
                *_certificate_lines(event.chain),
            ]
        case ev.CertificateStatusReceived():
            return [_describe_status(event)]
        case ev.ServerKeyExchangeReceived():
            return [_describe_key_exchange(event)]
        case ev.CertificateRequestReceived():
            return [_describe_certificate_request(event)]
        case ev.ServerHelloDoneReceived():
            return ["ServerHelloDone: the server's flight is complete"]
        case ev.HelloRequestReceived():
            return ["HelloRequest, ignored (RFC 5246 7.4.1.1)"]
        case ev.HandshakeMessageReceived():
            name = name_of(HandshakeType, event.msg_type)
            return [f"handshake message {name}, {len(event.body)} bytes"]
        case ev.ChangeCipherSpecReceived():
            return ["ChangeCipherSpec: the records after it are encrypted"]
        case ev.AlertReceived():
            return [_describe_alert(event)]
        case ev.SSLv2ServerHelloReceived():
            return _describe_sslv2_hello(event)
        case ev.SSLv2ErrorReceived():
            return ["SSL 2.0 ERROR: " + name_of(SSLv2ErrorCode, event.error.error_code)]
        case ev.NonTlsReceived():
            return ["not TLS or SSL 2.0; the reply starts:", *hex_dump(event.data)]
        case ev.ProtocolErrorRaised():
            return [f"protocol error: {event.message}"]
    raise TypeError(f"unknown event type {type(event).__name__}")


def hex_dump(data: bytes) -> list[str]:
    """Show up to HEX_DUMP_MAX_BYTES of `data` as hex and ASCII lines."""
    shown = data[:HEX_DUMP_MAX_BYTES]
    lines = []
    for start in range(0, len(shown), HEX_BYTES_PER_LINE):
        chunk = shown[start : start + HEX_BYTES_PER_LINE]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"  {start:04x}  {chunk.hex(' '):<47}  |{text}|")
    if len(data) > len(shown):
        lines.append(f"  ... {len(data) - len(shown)} more bytes")
    return lines


# Replaying the chunks


class _Replay:
    """Feeds an attempt's chunks to a fresh record reader and handshake reader."""

    def __init__(self, hello_format: str) -> None:
        self.reader = HandshakeReader(hello_format)  # type: ignore[arg-type]
        self.records: RecordReader | None = RecordReader()

    def chunk_lines(self, chunk: ReceivedChunk) -> list[str]:
        """Describe one chunk: where it starts, its records and its messages."""
        end = chunk.offset + len(chunk.data) - 1
        lines = [f"< {len(chunk.data)} bytes, offsets {chunk.offset:06x}-{end:06x}"]
        if self.reader.done:
            lines.append("  not read: the reader was already done")
            return lines
        records = self._records(chunk, lines)
        events = self.reader.feed(chunk.data)

        # Records after the one that completed the reader were parsed here
        # only; the reader ignores bytes fed after it is done.
        last_read = events[-1].offset if events and self.reader.done else None
        items: list[tuple[int, int, list[str]]] = []
        for record in records:
            text = _describe_record(record)
            if last_read is not None and record.offset > last_read:
                text += "; not read: the reader was already done"
            items.append((record.offset, 0, [text]))
        for event in events:
            items.append((event.offset, 1, describe_event(event)))
        for offset, _, described in sorted(items, key=lambda item: item[:2]):
            lines.append(f"  {offset:06x}  {described[0]}")
            lines += [f"          {line}" for line in described[1:]]
        if self.records is not None and self.records.buffered and not self.reader.done:
            lines.append(
                f"  {self.records.buffered} bytes of a record still incomplete"
            )
        return lines

    def _records(self, chunk: ReceivedChunk, lines: list[str]) -> list[Record]:
        if self.records is None:
            return []
        if self.records.buffered:
            start = self.records.offset - self.records.buffered
            lines.append(f"  continues the record that starts at {start:06x}")
        try:
            return self.records.feed(chunk.data)
        except PeerProtocolError:
            self.records = None  # the reader's event reports the error
            return []


# The whole explanation


def explain_attempt(attempt: AttemptTranscript, ip: str, port: int) -> list[str]:
    """Return the lines that explain one attempt, from connect to RST."""
    protocol_set = attempt.protocol_set
    lines = [
        f"attempt {protocol_set.number}: set {protocol_set.number}, "
        f"{protocol_set.label}"
    ]

    def step(elapsed: float | None, text: list[str]) -> None:
        lines.append(f"{STEP_INDENT}{_milliseconds(elapsed)}  {text[0]}")
        lines.extend(f"{DETAIL_INDENT}{line}" for line in text[1:])

    step(attempt.connected, [_describe_connect(attempt, ip, port)])
    if attempt.connect_error is not None:
        lines.append(f"{STEP_INDENT}outcome: connect_failed")
        lines.append(f"{STEP_INDENT}hint: {HINT_CONNECT_FAILED}")
        return lines

    hello_format = protocol_set.hello_format
    offered = _versions_text(protocol_set.versions)
    step(
        attempt.hello_sent,
        [
            f"> ClientHello, set {protocol_set.number}, offers {offered}",
            *_hello_summary(attempt.hello, hello_format),
        ],
    )
    replay = _Replay(hello_format)
    for chunk in attempt.chunks:
        step(chunk.elapsed, replay.chunk_lines(chunk))
    step(attempt.closed, [_describe_close(attempt)])
    lines += _outcome_lines(attempt)
    return lines


def _outcome_lines(attempt: AttemptTranscript) -> list[str]:
    record = attempt.record
    details = [
        value
        for value in (record.version, record.cipher, record.alert)
        if value is not None
    ]
    text = record.outcome
    if details:
        text += f" ({', '.join(details)})"
    lines = [f"{STEP_INDENT}outcome: {text}"]
    if attempt.outcome is not None and attempt.outcome.error is not None:
        lines.append(f"{STEP_INDENT}error: {attempt.outcome.error}")
    hint = hint_for(attempt)
    if hint is not None:
        lines.append(f"{STEP_INDENT}hint: {hint}")
    return lines


def explain_grab(transcript: GrabTranscript) -> str:
    """Explain every attempt of a grab, then its result, as text."""
    sni = transcript.sni or "none"
    lines = [
        f"grab {_endpoint(transcript.ip, transcript.port)}, SNI {sni}, "
        f"timeout {transcript.timeout:g} s per attempt",
        "times count from the start of each connect(); offsets are hex, counted "
        "from the server's first byte",
    ]
    for attempt in transcript.attempts:
        lines.append("")
        lines += explain_attempt(attempt, transcript.ip, transcript.port)
    lines.append("")
    lines += summary_lines(transcript.result)
    return "\n".join(lines) + "\n"


def summary_lines(result: TlsResult) -> list[str]:
    """Return the result of a grab: which set brought which chain, or none."""
    if result.set_number is None:
        count = len(result.attempts)
        noun = "attempt" if count == 1 else "attempts"
        return [f"result: no certificate after {count} {noun}"]
    lines = [
        f"result: certificate from set {result.set_number}, "
        f"{result.version}, {result.cipher}"
    ]
    for index, cert in enumerate(result.chain):
        lines.append(f"  [{index}] {cert.subject or '(no subject)'}")
        lines.append(f"      SHA-256 {cert.sha256}")
        if cert.error is not None:
            lines.append(f"      kept raw: {cert.error}")
    return lines

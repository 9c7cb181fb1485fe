"""The client side of one hello attempt: server bytes in, events out.

`HandshakeReader` is fed the bytes a server sends after our ClientHello,
in whatever pieces TCP delivers them, and returns an event for each record
or message they complete. It never raises on the server's bytes: a
`PeerProtocolError` becomes a `ProtocolErrorRaised` event and the
protocol_error outcome. Hypothesis tests and scripts/fuzz-tls check this
on arbitrary bytes. `done` tells the driver when nothing more is worth
reading, and `finish` sums the attempt up as a `HandshakeOutcome`.

Rules the outcome follows:

- A chain is kept the moment its Certificate message (or SSL 2.0
  SERVER-HELLO) is complete, whatever follows: an alert, a reset or
  garbage still give the certificate outcome.
- A warning alert does not end the attempt, because servers send
  unrecognized_name as a warning before ServerHello. A fatal alert or
  close_notify does.
- An attempt that ends in a transport event (eof, reset, timeout) before
  `done` is "truncated" if any handshake bytes arrived, else "closed",
  "reset" or "timeout". A reply made only of warning alerts is "alert".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from pktscan.errors import PeerProtocolError
from pktscan.tls import events as ev
from pktscan.tls.constants import (
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    HandshakeType,
    NamedGroup,
    SSLv2CipherKind,
    SSLv2ErrorCode,
    SSLv2MessageType,
    key_exchange_of,
    name_of,
    version_name,
)
from pktscan.tls.keyexchange import decode_server_key_exchange
from pktscan.tls.messages import (
    MAX_HANDSHAKE_MESSAGE_LEN,
    HandshakeAssembler,
    HandshakeMessage,
    HelloRetryRequest,
    ServerHello,
    decode_certificate,
    decode_certificate_request,
    decode_certificate_status,
    decode_server_hello,
    expect_empty,
)
from pktscan.tls.record import NotTlsError, Record, RecordReader, TlsRecord
from pktscan.tls.sslv2 import decode_sslv2_error, decode_sslv2_server_hello

FIRST_BYTES_LEN: Final = 64  # bytes of the reply kept for explanations
# Our caps on one attempt's reply. A flight is ServerHello, a Certificate
# message of at most MAX_HANDSHAKE_MESSAGE_LEN (256 KiB) and a few small
# messages, so four times that bounds any real flight. A server that sends
# more, or floods small records (warning alerts, HelloRequests), ends the
# attempt with a protocol error instead of filling the scanner's memory.
MAX_FLIGHT_BYTES: Final = 4 * MAX_HANDSHAKE_MESSAGE_LEN
MAX_EVENTS: Final = 256
ALERT_LEN: Final = 2  # level(1) | description(1)
FFDHE_GROUPS: Final = range(0x0100, 0x0200)  # RFC 7919: DHE groups
# Hybrid groups that pair an elliptic curve with ML-KEM.
HYBRID_GROUPS: Final = frozenset({0x11EB, 0x11EC, 0x11ED})

Event = ev.Event
Outcome = Literal[
    "certificate",
    "no_certificate",
    "alert",
    "reset",
    "closed",
    "timeout",
    "non_tls",
    "truncated",
    "protocol_error",
]


@dataclass(frozen=True, slots=True)
class HandshakeOutcome:
    """Summary of one attempt, for the grab driver and the result model.

    `outcome` is one of: certificate, no_certificate (anonymous key
    exchange, or TLS 1.3 whose Certificate is encrypted), alert, reset,
    closed, timeout, non_tls, truncated, protocol_error. For an SSL 2.0
    server, `cipher_suite` is the first cipher kind the server listed and
    the alert fields carry an SSL 2.0 ERROR's code, with `alert_level`
    None.
    """

    outcome: Outcome
    version: int | None
    version_name: str | None
    cipher_suite: int | None
    cipher_name: str | None
    chain: tuple[bytes, ...]
    alert_level: int | None
    alert_description: int | None
    alert_name: str | None
    key_exchange: dict[str, object] | None
    first_bytes: bytes
    error: str | None
    events: tuple[Event, ...]


class HandshakeReader:
    """Reads the server's reply to one ClientHello; see the module docstring.

    Args:
        hello_format: the format of the hello sent. An SSL 2.0 reply is
            accepted only after an "sslv2" hello, since a server that
            speaks only SSL 2.0 cannot read a TLS-format hello.
    """

    def __init__(self, hello_format: Literal["sslv2", "tls"]) -> None:
        if hello_format not in ("sslv2", "tls"):
            raise ValueError(f"hello_format {hello_format!r} is not sslv2 or tls")
        self.hello_format = hello_format
        self._records = RecordReader()
        self._handshake = HandshakeAssembler()
        self._alert_bytes = bytearray()
        self._alert_offset = 0
        self._events: list[Event] = []
        self._first_bytes = b""
        self._bytes_fed = 0
        self._done = False
        self._handshake_bytes_seen = False

        self._server_hello: ServerHello | None = None
        self._sslv2_hello: ev.SSLv2ServerHelloReceived | None = None
        self._chain: tuple[bytes, ...] = ()
        self._key_exchange: dict[str, object] | None = None
        self._ending_alert: ev.AlertReceived | None = None
        self._last_alert: ev.AlertReceived | None = None
        self._sslv2_error: ev.SSLv2ErrorReceived | None = None
        self._non_tls = False
        self._error: ev.ProtocolErrorRaised | None = None

    @property
    def certificate_complete(self) -> bool:
        """True once a whole certificate chain is in hand; it stays kept."""
        return bool(self._chain)

    @property
    def done(self) -> bool:
        """True when nothing more is worth reading.

        That is after ServerHelloDone, a fatal alert or close_notify, a
        complete SSL 2.0 SERVER-HELLO or ERROR, non-TLS bytes, a protocol
        error, a TLS 1.3 ServerHello or HelloRetryRequest, or a
        ChangeCipherSpec.
        """
        return self._done

    def feed(self, data: bytes) -> list[Event]:
        """Add bytes received from the server; return the events they complete.

        Bytes fed after `done` are ignored. Never raises on the content of
        `data`.
        """
        if len(self._first_bytes) < FIRST_BYTES_LEN:
            missing = FIRST_BYTES_LEN - len(self._first_bytes)
            self._first_bytes += bytes(data[:missing])
        if self._done or not data:
            return []
        start = len(self._events)
        try:
            self._count_bytes(len(data))
            for record in self._records.feed(bytes(data)):
                self._handle_record(record)
                if self._done:
                    break
                self._count_events()
            if self._records.error is not None and not self._done:
                raise self._records.error
        except NotTlsError as error:
            self._emit(ev.NonTlsReceived(error.offset or 0, self._first_bytes))
            self._non_tls = True
            self._done = True
        except PeerProtocolError as error:
            self._record_protocol_error(error)
        if self._records.buffered:
            self._handshake_bytes_seen = True
        return self._events[start:]

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _count_bytes(self, size: int) -> None:
        offset = self._bytes_fed
        self._bytes_fed += size
        if self._bytes_fed > MAX_FLIGHT_BYTES:
            raise PeerProtocolError(
                f"the server sent more than {MAX_FLIGHT_BYTES} bytes without "
                f"ending its flight (byte {self._bytes_fed} at offset {offset})",
                offset=offset,
                field="flight length",
                value=self._bytes_fed,
                limit=MAX_FLIGHT_BYTES,
            )

    def _count_events(self) -> None:
        if len(self._events) > MAX_EVENTS:
            offset = self._events[-1].offset
            raise PeerProtocolError(
                f"the server sent more than {MAX_EVENTS} records and messages "
                f"without ending its flight (the last at offset {offset})",
                offset=offset,
                field="flight messages",
                value=len(self._events),
                limit=MAX_EVENTS,
            )

    def _record_protocol_error(self, error: PeerProtocolError) -> None:
        event = ev.ProtocolErrorRaised(
            error.offset or 0, error.message, error.field, error.value, error.limit
        )
        self._emit(event)
        self._error = event
        self._done = True

    # Records

    def _handle_record(self, record: Record) -> None:
        if not isinstance(record, TlsRecord):
            self._handle_sslv2_record(
                record.body, record.offset, record.fragment_offset
            )
            return
        content_type = record.content_type
        if content_type == ContentType.handshake:
            self._handshake_bytes_seen = True
            offset = record.fragment_offset
            for message in self._handshake.feed(record.fragment, offset):
                self._handle_message(message)
                if self._done:
                    return
        elif content_type == ContentType.alert:
            self._handle_alert_bytes(record.fragment, record.fragment_offset)
        elif content_type == ContentType.change_cipher_spec:
            self._emit(ev.ChangeCipherSpecReceived(record.offset))
            self._done = True
        elif content_type == ContentType.application_data:
            raise PeerProtocolError(
                f"application_data record at offset {record.offset} before the "
                "handshake completed",
                offset=record.offset,
                field="content_type",
                value=content_type,
            )
        # Heartbeat and other record types carry nothing for this attempt.

    def _handle_alert_bytes(self, fragment: bytes, offset: int) -> None:
        if not self._alert_bytes:
            self._alert_offset = offset
        self._alert_bytes += fragment
        while len(self._alert_bytes) >= ALERT_LEN and not self._done:
            level, description = self._alert_bytes[0], self._alert_bytes[1]
            alert = ev.AlertReceived(self._alert_offset, level, description)
            del self._alert_bytes[:ALERT_LEN]
            self._alert_offset = offset + len(fragment) - len(self._alert_bytes)
            self._emit(alert)
            self._last_alert = alert
            ending = description == AlertDescription.close_notify
            if level != AlertLevel.warning or ending:
                self._ending_alert = alert
                self._done = True

    def _handle_sslv2_record(
        self, body: bytes, record_offset: int, offset: int
    ) -> None:
        if self.hello_format != "sslv2":
            raise PeerProtocolError(
                f"SSL 2.0 record at offset {record_offset} in reply to a "
                "TLS-format hello",
                offset=record_offset,
                field="record header",
                value=body[:1],
            )
        self._handshake_bytes_seen = True
        msg_type = body[0]
        if msg_type == SSLv2MessageType.SERVER_HELLO:
            hello = decode_sslv2_server_hello(body, offset)
            event = ev.SSLv2ServerHelloReceived(offset, hello)
            self._emit(event)
            self._sslv2_hello = event
            if hello.certificate:
                self._chain = (hello.certificate,)
            self._key_exchange = {"kind": "RSA"}
        elif msg_type == SSLv2MessageType.ERROR:
            error_event = ev.SSLv2ErrorReceived(
                offset, decode_sslv2_error(body, offset)
            )
            self._emit(error_event)
            self._sslv2_error = error_event
        else:
            raise PeerProtocolError(
                f"SSL 2.0 msg_type {msg_type} at offset {offset} is not "
                "SERVER-HELLO or ERROR",
                offset=offset,
                field="msg_type",
                value=msg_type,
                limit="0 or 4",
            )
        self._done = True

    # Handshake messages

    def _handle_message(self, message: HandshakeMessage) -> None:
        handler = self._message_handlers().get(message.msg_type)
        if handler is None:
            self._emit(
                ev.HandshakeMessageReceived(
                    message.offset, message.msg_type, message.body
                )
            )
            return
        handler(message)

    def _message_handlers(self) -> dict[int, Callable[[HandshakeMessage], None]]:
        return {
            HandshakeType.server_hello: self._on_server_hello,
            HandshakeType.certificate: self._on_certificate,
            HandshakeType.certificate_status: self._on_certificate_status,
            HandshakeType.server_key_exchange: self._on_server_key_exchange,
            HandshakeType.certificate_request: self._on_certificate_request,
            HandshakeType.server_hello_done: self._on_server_hello_done,
            HandshakeType.hello_request: self._on_hello_request,
        }

    def _require_server_hello(self, message: HandshakeMessage) -> ServerHello:
        if self._server_hello is None:
            name = name_of(HandshakeType, message.msg_type)
            raise PeerProtocolError(
                f"{name} at offset {message.offset} before ServerHello",
                offset=message.offset,
                field="msg_type",
                value=message.msg_type,
            )
        return self._server_hello

    def _on_server_hello(self, message: HandshakeMessage) -> None:
        if self._server_hello is not None:
            raise PeerProtocolError(
                f"second ServerHello at offset {message.offset}",
                offset=message.offset,
                field="msg_type",
                value=message.msg_type,
            )
        hello = decode_server_hello(message)
        if isinstance(hello, HelloRetryRequest):
            self._emit(ev.HelloRetryRequestReceived(message.offset, hello))
            self._done = True
            return
        self._server_hello = hello
        self._emit(ev.ServerHelloReceived(message.offset, hello))
        self._key_exchange = _key_exchange_from_hello(hello)
        if hello.is_tls13:
            self._done = True  # the rest of the flight is encrypted

    def _on_certificate(self, message: HandshakeMessage) -> None:
        self._require_server_hello(message)
        certificate = decode_certificate(message)
        self._emit(
            ev.CertificateReceived(
                message.offset, certificate.certificates, certificate
            )
        )
        if certificate.certificates and not self._chain:
            self._chain = certificate.certificates

    def _on_certificate_status(self, message: HandshakeMessage) -> None:
        status = decode_certificate_status(message)
        self._emit(ev.CertificateStatusReceived(message.offset, status))

    def _on_server_key_exchange(self, message: HandshakeMessage) -> None:
        hello = self._require_server_hello(message)
        decoded = decode_server_key_exchange(message, hello.cipher_suite, hello.version)
        self._emit(ev.ServerKeyExchangeReceived(message.offset, decoded))
        self._key_exchange = decoded.summary()

    def _on_certificate_request(self, message: HandshakeMessage) -> None:
        hello = self._require_server_hello(message)
        request = decode_certificate_request(message, hello.version)
        self._emit(ev.CertificateRequestReceived(message.offset, request))

    def _on_server_hello_done(self, message: HandshakeMessage) -> None:
        expect_empty(message, "ServerHelloDone")
        self._emit(ev.ServerHelloDoneReceived(message.offset))
        self._done = True

    def _on_hello_request(self, message: HandshakeMessage) -> None:
        expect_empty(message, "HelloRequest")
        self._emit(ev.HelloRequestReceived(message.offset))

    # Outcome

    def finish(
        self, reason: Literal["eof", "reset", "timeout"] | None = None
    ) -> HandshakeOutcome:
        """Sum the attempt up, after `done` or after the transport `reason`.

        `reason` None means the driver stopped reading on its own, which
        counts as "eof" if the reader is not `done`.
        """
        version, cipher_suite, cipher_name = self._negotiated()
        level, description, alert_name = self._alert_fields()
        return HandshakeOutcome(
            outcome=self._outcome(reason),
            version=version,
            version_name=version_name(version) if version is not None else None,
            cipher_suite=cipher_suite,
            cipher_name=cipher_name,
            chain=self._chain,
            alert_level=level,
            alert_description=description,
            alert_name=alert_name,
            key_exchange=self._key_exchange,
            first_bytes=self._first_bytes,
            error=self._error.message if self._error is not None else None,
            events=tuple(self._events),
        )

    def _outcome(self, reason: Literal["eof", "reset", "timeout"] | None) -> Outcome:
        if self._chain:
            return "certificate"
        if self._non_tls:
            return "non_tls"
        if self._error is not None:
            return "protocol_error"
        if self._ending_alert is not None or self._sslv2_error is not None:
            return "alert"
        if self._done:
            return "no_certificate"
        if self._handshake_bytes_seen or self._handshake.buffered:
            return "truncated"
        if self._last_alert is not None:
            return "alert"
        transport: dict[str | None, Outcome] = {
            "eof": "closed",
            "reset": "reset",
            "timeout": "timeout",
        }
        return transport.get(reason, "closed")

    def _negotiated(self) -> tuple[int | None, int | None, str | None]:
        if self._server_hello is not None:
            suite = self._server_hello.cipher_suite
            return self._server_hello.version, suite, name_of(CipherSuite, suite)
        if self._sslv2_hello is not None:
            hello = self._sslv2_hello.server_hello
            version = hello.server_version
            if not hello.cipher_specs:
                return version, None, None
            kind = hello.cipher_specs[0]
            return version, kind, name_of(SSLv2CipherKind, kind)
        return None, None, None

    def _alert_fields(self) -> tuple[int | None, int | None, str | None]:
        alert = self._ending_alert or self._last_alert
        if alert is not None:
            name = name_of(AlertDescription, alert.description)
            return alert.level, alert.description, name
        if self._sslv2_error is not None:
            code = self._sslv2_error.error.error_code
            return None, code, name_of(SSLv2ErrorCode, code)
        return None, None, None


def _key_exchange_from_hello(hello: ServerHello) -> dict[str, object] | None:
    """Key exchange known from the ServerHello alone, before any SKE."""
    if hello.key_share_group is not None:
        group = hello.key_share_group
        kind = "ECDHE"
        if group in FFDHE_GROUPS:
            kind = "DHE"
        elif group in HYBRID_GROUPS:
            kind = "ECDHE+MLKEM"
        return {"kind": kind, "group": name_of(NamedGroup, group)}
    key_exchange = key_exchange_of(hello.cipher_suite)
    if key_exchange is None:
        return None
    static = key_exchange == "RSA" or key_exchange.startswith(("DH_", "ECDH_"))
    if static and not key_exchange.endswith("_anon"):
        return {"kind": key_exchange}
    return None

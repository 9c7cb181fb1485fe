"""Events that `HandshakeReader.feed` returns, one per thing the server sent.

Every event is a frozen dataclass whose first field, `offset`, is the
stream offset (from the first byte the server sent) of what it reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from pktscan.tls.keyexchange import ServerKeyExchange
from pktscan.tls.messages import (
    Certificate,
    CertificateRequest,
    CertificateStatus,
    HelloRetryRequest,
    ServerHello,
)
from pktscan.tls.sslv2 import SSLv2Error, SSLv2ServerHello


@dataclass(frozen=True, slots=True)
class ServerHelloReceived:
    """A ServerHello arrived."""

    offset: int
    server_hello: ServerHello


@dataclass(frozen=True, slots=True)
class HelloRetryRequestReceived:
    """A TLS 1.3 HelloRetryRequest arrived."""

    offset: int
    request: HelloRetryRequest


@dataclass(frozen=True, slots=True)
class CertificateReceived:
    """A Certificate message arrived; `chain` is DER, leaf first, as sent."""

    offset: int
    chain: tuple[bytes, ...]
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class CertificateStatusReceived:
    """A CertificateStatus message (a stapled OCSP response) arrived."""

    offset: int
    status: CertificateStatus


@dataclass(frozen=True, slots=True)
class ServerKeyExchangeReceived:
    """A ServerKeyExchange arrived."""

    offset: int
    key_exchange: ServerKeyExchange


@dataclass(frozen=True, slots=True)
class CertificateRequestReceived:
    """The server asked for a client certificate."""

    offset: int
    request: CertificateRequest


@dataclass(frozen=True, slots=True)
class ServerHelloDoneReceived:
    """A ServerHelloDone arrived: the server's flight is complete."""

    offset: int


@dataclass(frozen=True, slots=True)
class HelloRequestReceived:
    """A HelloRequest arrived; RFC 5246 7.4.1.1 lets a client ignore it."""

    offset: int


@dataclass(frozen=True, slots=True)
class HandshakeMessageReceived:
    """A handshake message that the server's first flight does not contain."""

    offset: int
    msg_type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ChangeCipherSpecReceived:
    """A ChangeCipherSpec record arrived; what follows is encrypted."""

    offset: int


@dataclass(frozen=True, slots=True)
class AlertReceived:
    """An alert arrived; `level` and `description` as the IANA registry has them."""

    offset: int
    level: int
    description: int


@dataclass(frozen=True, slots=True)
class SSLv2ServerHelloReceived:
    """An SSL 2.0 SERVER-HELLO arrived, with the certificate inside."""

    offset: int
    server_hello: SSLv2ServerHello


@dataclass(frozen=True, slots=True)
class SSLv2ErrorReceived:
    """An SSL 2.0 ERROR message arrived."""

    offset: int
    error: SSLv2Error


@dataclass(frozen=True, slots=True)
class NonTlsReceived:
    """The reply is not TLS or SSL 2.0; `data` is its first bytes."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ProtocolErrorRaised:
    """The server's bytes broke the protocol; fields of the PeerProtocolError."""

    offset: int
    message: str
    field: str | None
    value: object
    limit: object


Event = (
    ServerHelloReceived
    | HelloRetryRequestReceived
    | CertificateReceived
    | CertificateStatusReceived
    | ServerKeyExchangeReceived
    | CertificateRequestReceived
    | ServerHelloDoneReceived
    | HelloRequestReceived
    | HandshakeMessageReceived
    | ChangeCipherSpecReceived
    | AlertReceived
    | SSLv2ServerHelloReceived
    | SSLv2ErrorReceived
    | NonTlsReceived
    | ProtocolErrorRaised
)

"""The result model of a scan, kept apart from how it is rendered.

One `PortResult` per probed address and port. `to_json` gives the object
written as one JSON line; its field names are a stable interface that users
script against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate of a served chain, decoded for display and storage."""

    der: bytes
    sha256: str
    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    serial: str | None
    key_type: str | None
    key_bits: int | None
    signature_algorithm: str | None
    san: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "serial": self.serial,
            "key_type": self.key_type,
            "key_bits": self.key_bits,
            "signature_algorithm": self.signature_algorithm,
            "san": list(self.san),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """Outcome of one ClientHello attempt on one TCP connection.

    `outcome` is one of: certificate, no_certificate, alert, reset, closed,
    timeout, non_tls, truncated, protocol_error, connect_failed.
    """

    set_number: int
    outcome: str
    version: str | None = None
    cipher: str | None = None
    alert: str | None = None
    detail: str | None = None
    source_port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.set_number,
            "outcome": self.outcome,
            "version": self.version,
            "cipher": self.cipher,
            "alert": self.alert,
            "detail": self.detail,
            "source_port": self.source_port,
        }


@dataclass(slots=True)
class TlsResult:
    """The attempt ladder's result on one port."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    set_number: int | None = None
    version: str | None = None
    cipher: str | None = None
    chain: list[CertInfo] = field(default_factory=list)
    key_exchange: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": [a.to_json() for a in self.attempts],
            "set": self.set_number,
            "version": self.version,
            "cipher": self.cipher,
            "chain": [c.to_json() for c in self.chain],
            "key_exchange": self.key_exchange,
        }


@dataclass(frozen=True, slots=True)
class HttpResult:
    """Identification read from an HTTP server on port 80."""

    status: str | None
    server: str | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "server": self.server, "error": self.error}


@dataclass(slots=True)
class PortResult:
    """Everything learned about one address and port.

    `state` is open, closed or filtered. It is unroutable when the kernel
    has no route that can carry a probe to the address, such as a broadcast
    address, and error when a local failure stopped the port's scan before
    its state was known.
    `error` says why a result is incomplete: a local failure while grabbing
    the port, which is logged too.
    """

    ip: str
    port: int
    state: str
    name: str | None = None
    ptr: str | None = None
    tls: TlsResult | None = None
    http: HttpResult | None = None
    time: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "port": self.port,
            "state": self.state,
            "name": self.name,
            "ptr": self.ptr,
            "time": self.time,
            "tls": self.tls.to_json() if self.tls is not None else None,
            "http": self.http.to_json() if self.http is not None else None,
            "error": self.error,
        }

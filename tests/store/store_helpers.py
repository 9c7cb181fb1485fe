"""Certificates and results for the inventory tests, generated on the spot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pktscan import certs
from pktscan.results import AttemptRecord, CertInfo, HttpResult, PortResult, TlsResult

#: Base observation time of the tests, 2026-06-01T00:00:00Z as a Unix time.
T0 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def make_der(
    common_name: str,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    not_after: datetime = datetime(2027, 1, 1, tzinfo=UTC),
    dns_names: tuple[str, ...] = (),
) -> bytes:
    """Build an ECDSA certificate, self-signed unless `issuer` is given."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = subject, key
    if issuer is not None:
        issuer_cn, issuer_key = issuer
        issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
    )
    if dns_names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def make_chain(host: str, ca: str = "Test CA") -> list[CertInfo]:
    """Build a leaf for `host` and its CA, in served order."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_der = make_der(ca, key=ca_key)
    leaf_der = make_der(host, issuer=(ca, ca_key), dns_names=(host,))
    return certs.decode_chain([leaf_der, ca_der])


def tls_result(
    ip: str,
    port: int,
    chain: list[CertInfo],
    time: float,
    name: str | None = None,
) -> PortResult:
    attempt = AttemptRecord(1, "certificate", version="TLS 1.0", cipher="x")
    tls = TlsResult(
        attempts=[attempt],
        set_number=1,
        version="TLS 1.0",
        cipher="TLS_RSA_WITH_AES_128_CBC_SHA",
        chain=list(chain),
    )
    return PortResult(ip, port, "open", name=name, tls=tls, time=time)


def closed_result(ip: str, port: int, time: float) -> PortResult:
    return PortResult(ip, port, "closed", time=time)


def http_result(ip: str, time: float) -> PortResult:
    http = HttpResult(status="HTTP/1.1 200 OK", server="nginx/1.22.1")
    return PortResult(ip, 80, "open", http=http, time=time)


def hours(count: float) -> float:
    return count * timedelta(hours=1).total_seconds()

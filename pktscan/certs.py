"""X.509 decoding and certificate findings, with the cryptography package.

`decode_certificate` and `decode_chain` turn the DER certificates that a
server sent into `CertInfo` values. The bytes come from a peer, so decoding
never raises for them: a DER that is not valid X.509 still gives a
`CertInfo` with its SHA-256, the fields set to None and `error` saying why.
A certificate whose outer structure parses but one of whose fields does not
keeps the fields that decoded and names the failed ones in `error`.

The findings functions judge decoded certificates: validity period, key
size, signature hash, self-signed certificates, the served name and the
order and completeness of the chain. Others judge the handshake (the size
of the DH prime, a protocol below TLS 1.0) and the history of an endpoint
(a changed leaf, a certificate no longer served). They take the time as
an argument and read no clock.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    rsa,
    x448,
    x25519,
)
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from pktscan.results import CertInfo

__all__ = [
    "MIN_DH_PRIME_BITS",
    "MIN_RSA_KEY_BITS",
    "Finding",
    "FindingKind",
    "Severity",
    "check_chain",
    "check_change",
    "check_gone",
    "check_key",
    "check_key_exchange",
    "check_name",
    "check_protocol",
    "check_self_signed",
    "check_signature",
    "check_validity",
    "decode_certificate",
    "decode_chain",
    "find_all",
    "format_time",
    "name_matches",
]

#: Shortest RSA modulus, in bits, that is not reported as weak.
MIN_RSA_KEY_BITS = 2048

#: Shortest DH prime, in bits, that is not reported as weak. It equals
#: `MIN_RSA_KEY_BITS` because a DH prime and an RSA modulus of one size
#: resist about the same attacks (the number field sieve).
MIN_DH_PRIME_BITS = 2048

# Negotiated versions below TLS 1.0, as `pktscan.tls.constants.version_name`
# spells them, with their RFC 7568 and RFC 6176 deprecation.
_SSL_VERSIONS = {"SSLv2": "SSL 2.0 (RFC 6176)", "SSLv3": "SSL 3.0 (RFC 7568)"}

#: Default window, in days, for the "expiring" finding.
DEFAULT_EXPIRY_WINDOW_DAYS = 30

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Signature algorithm names as RFC 3279, RFC 4055, RFC 5758 and RFC 8410
# spell them. An algorithm missing here is shown by its dotted OID.
_MD2_WITH_RSA = x509.ObjectIdentifier("1.2.840.113549.1.1.2")
_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    _MD2_WITH_RSA: "md2WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_MD5: "md5WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "sha1WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "sha224WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    SignatureAlgorithmOID.RSASSA_PSS: "RSASSA-PSS",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ecdsa-with-SHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "id-dsa-with-sha1",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "id-dsa-with-sha224",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "id-dsa-with-sha256",
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}

# Signature algorithms whose hash is broken for collision resistance.
_WEAK_SIGNATURE_HASHES: dict[x509.ObjectIdentifier, str] = {
    _MD2_WITH_RSA: "MD2",
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA-1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "SHA-1",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "SHA-1",
}

_T = TypeVar("_T")


def format_time(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC to the second, ``...Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware datetime")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


# --- decoding ---------------------------------------------------------------


def decode_chain(ders: Sequence[bytes]) -> list[CertInfo]:
    """Decode the certificates of a served chain, in the order served.

    Args:
        ders: DER certificates as the Certificate message carried them.

    Returns:
        One `CertInfo` per DER, invalid ones included with `error` set.
    """
    return [decode_certificate(der) for der in ders]


def decode_certificate(der: bytes) -> CertInfo:
    """Decode one DER certificate.

    Args:
        der: the certificate bytes, as a peer sent them.

    Returns:
        The decoded certificate. When the bytes are not valid X.509, the
        result keeps the DER and its SHA-256, sets every other field to
        None and states the reason in `error`.

    Raises:
        TypeError: `der` is not bytes.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TypeError(f"der must be bytes, not {type(der).__name__}")
    der = bytes(der)
    digest = hashlib.sha256(der).hexdigest()
    try:
        with warnings.catch_warnings():
            # cryptography warns on RFC 5280 violations it still parses, such
            # as a serial that is not positive. Peers send such certificates,
            # so the inventory keeps them without noise on stderr.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
            return _decode_fields(cert, der, digest)
    except ValueError as exc:
        return CertInfo(
            der=der,
            sha256=digest,
            subject=None,
            issuer=None,
            not_before=None,
            not_after=None,
            serial=None,
            key_type=None,
            key_bits=None,
            signature_algorithm=None,
            error=f"invalid X.509 DER ({len(der)} bytes): {exc}",
        )


def _decode_fields(cert: x509.Certificate, der: bytes, digest: str) -> CertInfo:
    errors: list[str] = []

    def field(name: str, read: Callable[[], _T]) -> _T | None:
        try:
            return read()
        except Exception as exc:
            # The DER came from a peer, and cryptography raises several
            # exception types for it (ValueError, UnsupportedAlgorithm,
            # DuplicateExtension, ...): any failure to read one field is
            # recorded on the certificate, and the other fields are kept.
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return None

    key = field("public key", lambda: _describe_key(cert))
    return CertInfo(
        der=der,
        sha256=digest,
        # Reading cert.subject parses the Name, which raises for an invalid
        # string type, so the attribute access belongs inside the guard.
        subject=field("subject", lambda: cert.subject.rfc4514_string()),
        issuer=field("issuer", lambda: cert.issuer.rfc4514_string()),
        not_before=field("not_before", lambda: format_time(cert.not_valid_before_utc)),
        not_after=field("not_after", lambda: format_time(cert.not_valid_after_utc)),
        serial=field("serial", lambda: _format_serial(cert.serial_number)),
        key_type=key[0] if key is not None else None,
        key_bits=key[1] if key is not None else None,
        signature_algorithm=field("signature", lambda: _signature_name(cert)),
        san=field("subjectAltName", lambda: _subject_alt_names(cert)) or (),
        error="; ".join(errors) if errors else None,
    )


def _format_serial(serial: int) -> str:
    """Format a serial as whole bytes of lowercase hex.

    ``openssl x509 -serial`` prints the same digits in uppercase.
    """
    digits = format(abs(serial), "x")
    if len(digits) % 2:
        digits = "0" + digits
    return "-" + digits if serial < 0 else digits


def _describe_key(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except UnsupportedAlgorithm:
        return cert.public_key_algorithm_oid.dotted_string, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519", 256
    if isinstance(key, x448.X448PublicKey):
        return "X448", 448
    return type(key).__name__, None


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = _SIGNATURE_NAMES.get(oid, oid.dotted_string)
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        hash_algorithm = cert.signature_hash_algorithm
        if hash_algorithm is not None:
            name = f"{name}({hash_algorithm.name})"
    return name


def _subject_alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    """Return the SAN DNS names and IP addresses, as ``DNS:`` and ``IP:``."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names = extension.value
    dns = [f"DNS:{name}" for name in names.get_values_for_type(x509.DNSName)]
    ips = [f"IP:{ip}" for ip in names.get_values_for_type(x509.IPAddress)]
    return tuple(dns + ips)


# --- findings ---------------------------------------------------------------


class Severity(enum.StrEnum):
    """How much a finding matters, from informational to critical."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FindingKind(enum.StrEnum):
    """Type of a finding; the inventory stores and filters on these values."""

    UNDECODABLE = "undecodable"
    EXPIRED = "expired"
    EXPIRING = "expiring"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    WEAK_RSA_KEY = "weak_rsa_key"
    WEAK_SIGNATURE = "weak_signature"
    NAME_MISMATCH = "name_mismatch"
    CHAIN_OUT_OF_ORDER = "chain_out_of_order"
    CHAIN_INCOMPLETE = "chain_incomplete"
    WEAK_DH = "weak_dh"
    SSL_ONLY = "ssl_only"
    CERTIFICATE_CHANGED = "certificate_changed"
    ENDPOINT_GONE = "endpoint_gone"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found with a certificate or a chain.

    Attributes:
        kind: what the problem is.
        severity: how much it matters.
        sha256: SHA-256 of the certificate concerned, in hex.
        message: one sentence naming the values involved.
    """

    kind: FindingKind
    severity: Severity
    sha256: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "sha256": self.sha256,
            "message": self.message,
        }


def check_validity(
    cert: CertInfo,
    now: datetime,
    expiring_within_days: int = DEFAULT_EXPIRY_WINDOW_DAYS,
) -> list[Finding]:
    """Check the validity period against `now`.

    Returns:
        An ``expired``, ``not_yet_valid`` or ``expiring`` finding, or none.
        A certificate expires within the window when its notAfter is at most
        `expiring_within_days` days after `now`.
    """
    if expiring_within_days < 0:
        raise ValueError(f"expiring_within_days must be >= 0: {expiring_within_days}")
    findings: list[Finding] = []
    if cert.not_before is not None and now < _parse_time(cert.not_before):
        findings.append(
            Finding(
                FindingKind.NOT_YET_VALID,
                Severity.HIGH,
                cert.sha256,
                f"not valid before {cert.not_before} (checked at {format_time(now)})",
            )
        )
    if cert.not_after is None:
        return findings
    not_after = _parse_time(cert.not_after)
    if now > not_after:
        days = (now - not_after).days
        findings.append(
            Finding(
                FindingKind.EXPIRED,
                Severity.HIGH,
                cert.sha256,
                f"expired at {cert.not_after}, {days} days before {format_time(now)}",
            )
        )
    elif not_after - now <= timedelta(days=expiring_within_days):
        days = (not_after - now).days
        findings.append(
            Finding(
                FindingKind.EXPIRING,
                Severity.MEDIUM,
                cert.sha256,
                f"expires at {cert.not_after}, in {days} days",
            )
        )
    return findings


def check_key(cert: CertInfo) -> list[Finding]:
    """Flag an RSA key shorter than `MIN_RSA_KEY_BITS`."""
    if cert.key_type != "RSA" or cert.key_bits is None:
        return []
    if cert.key_bits >= MIN_RSA_KEY_BITS:
        return []
    message = f"RSA key of {cert.key_bits} bits, under {MIN_RSA_KEY_BITS}"
    return [Finding(FindingKind.WEAK_RSA_KEY, Severity.HIGH, cert.sha256, message)]


def check_signature(cert: CertInfo) -> list[Finding]:
    """Flag a signature made with MD2, MD5 or SHA-1."""
    parsed = _load(cert)
    if parsed is None:
        return []
    weak_hash = _WEAK_SIGNATURE_HASHES.get(parsed.signature_algorithm_oid)
    if weak_hash is None and parsed.signature_algorithm_oid == (
        SignatureAlgorithmOID.RSASSA_PSS
    ):
        weak_hash = _pss_weak_hash(parsed)
    if weak_hash is None:
        return []
    message = f"signed with {weak_hash} ({cert.signature_algorithm})"
    return [Finding(FindingKind.WEAK_SIGNATURE, Severity.HIGH, cert.sha256, message)]


def _pss_weak_hash(cert: x509.Certificate) -> str | None:
    try:
        hash_algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if hash_algorithm is not None and hash_algorithm.name in ("sha1", "md5"):
        return {"sha1": "SHA-1", "md5": "MD5"}[hash_algorithm.name]
    return None


def check_self_signed(cert: CertInfo) -> list[Finding]:
    """Flag a certificate whose issuer is its subject and whose own key signs it.

    A certificate with equal subject and issuer whose signature does not
    verify with its own key is not reported.
    """
    parsed = _load(cert)
    if parsed is None or cert.subject is None or cert.subject != cert.issuer:
        return []
    try:
        parsed.verify_directly_issued_by(parsed)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return []
    message = f"self-signed: issuer and subject are {cert.subject}"
    return [Finding(FindingKind.SELF_SIGNED, Severity.MEDIUM, cert.sha256, message)]


def check_name(cert: CertInfo, name: str, source: str = "") -> list[Finding]:
    """Flag a certificate that is not valid for `name`.

    Args:
        cert: the leaf certificate.
        name: the DNS name or IP address the client asked for.
        source: where the name comes from, e.g. "PTR name", shown before it.
    """
    if name_matches(cert, name):
        return []
    shown = ", ".join(cert.san) or f"no SAN, subject {cert.subject}"
    named = f"{source} {name}" if source else name
    message = f"not valid for {named}: certificate names {shown}"
    return [Finding(FindingKind.NAME_MISMATCH, Severity.HIGH, cert.sha256, message)]


def name_matches(cert: CertInfo, name: str) -> bool:
    """Tell whether the certificate is valid for a DNS name or an IP address.

    The rules are those of RFC 6125 section 6.4 as browsers apply them: DNS
    names compare without case and without a trailing dot. A wildcard is
    allowed only as the whole leftmost label, matches exactly one label, and
    needs at least two labels after it (``*.example.com``, not ``*.com``).
    The subject CN is used only when the certificate has no SAN DNS or IP
    entry. An IP address matches only an ``IP:`` SAN entry, or a CN holding
    that exact address when there is no SAN.
    """
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    dns_names = [san[4:] for san in cert.san if san.startswith("DNS:")]
    ip_names = [san[3:] for san in cert.san if san.startswith("IP:")]
    if not cert.san:
        common_names = _common_names(cert)
        dns_names = common_names
        ip_names = common_names
    if address is not None:
        return any(_same_address(address, candidate) for candidate in ip_names)
    return any(_dns_name_matches(pattern, name) for pattern in dns_names)


def _same_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, candidate: str
) -> bool:
    try:
        return ipaddress.ip_address(candidate) == address
    except ValueError:
        return False


def _dns_name_matches(pattern: str, name: str) -> bool:
    pattern_labels = pattern.lower().rstrip(".").split(".")
    name_labels = name.lower().rstrip(".").split(".")
    if len(pattern_labels) != len(name_labels) or "" in name_labels:
        return False
    if pattern_labels[0] == "*":
        if len(pattern_labels) < 3 or "*" in ".".join(pattern_labels[1:]):
            return False
        return pattern_labels[1:] == name_labels[1:]
    return pattern_labels == name_labels


def _common_names(cert: CertInfo) -> list[str]:
    """Return the subject CNs, or none when the certificate has a SAN.

    A SAN extension that failed to decode still counts as present, so the
    CN is not used in its place.
    """
    parsed = _load(cert)
    if parsed is None:
        return []
    try:
        parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return []
    except x509.ExtensionNotFound:
        pass
    except (ValueError, x509.DuplicateExtension):
        return []
    try:
        attributes = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return []
    return [str(attribute.value) for attribute in attributes]


def check_chain(chain: Sequence[CertInfo]) -> list[Finding]:
    """Check that each certificate is followed by its issuer.

    RFC 8446 section 4.4.2 (and RFC 5246 section 7.4.2 before it) wants each
    certificate to certify the one before it. Issuers are matched by name.
    The last certificate may name an issuer that is not sent, because
    servers may omit the root, but a lone certificate that is not
    self-issued is reported as incomplete, because its issuer must then be
    a root that clients trust.

    Returns:
        ``chain_out_of_order`` when an issuer is present but not next,
        ``chain_incomplete`` when an issuer is missing from the chain.
    """
    subjects = {cert.subject for cert in chain if cert.subject is not None}
    findings: list[Finding] = []
    for position, cert in enumerate(chain):
        if cert.issuer is None or cert.issuer == cert.subject:
            continue
        is_last = position == len(chain) - 1
        next_subject = None if is_last else chain[position + 1].subject
        if cert.issuer == next_subject:
            continue
        if cert.issuer in subjects:
            message = (
                f"certificate {position} is not followed by its issuer "
                f"{cert.issuer}, which is elsewhere in the chain"
            )
            kind, severity = FindingKind.CHAIN_OUT_OF_ORDER, Severity.LOW
        elif not is_last or len(chain) == 1:
            message = f"issuer {cert.issuer} of certificate {position} is not sent"
            kind, severity = FindingKind.CHAIN_INCOMPLETE, Severity.MEDIUM
        else:
            continue
        findings.append(Finding(kind, severity, cert.sha256, message))
    return findings


def check_key_exchange(
    key_exchange: Mapping[str, object] | None, sha256: str
) -> list[Finding]:
    """Flag an ephemeral DH prime shorter than `MIN_DH_PRIME_BITS`.

    Args:
        key_exchange: the summary of the ServerKeyExchange, as
            `TlsResult.key_exchange` stores it (``kind`` and, for DHE,
            ``prime_bits``).
        sha256: the leaf the finding is filed under.
    """
    if key_exchange is None or key_exchange.get("kind") != "DHE":
        return []
    bits = key_exchange.get("prime_bits")
    if not isinstance(bits, int) or bits >= MIN_DH_PRIME_BITS:
        return []
    message = f"DHE with a {bits}-bit prime, under {MIN_DH_PRIME_BITS}"
    return [Finding(FindingKind.WEAK_DH, Severity.HIGH, sha256, message)]


def check_protocol(version: str | None, sha256: str) -> list[Finding]:
    """Flag a server that negotiated SSL 2.0 or SSL 3.0.

    The scanner offers TLS 1.0 in every hello but the last one, which it
    sends only after the TLS hellos failed. So a server that answers with
    SSL 2.0 or 3.0 speaks nothing newer that the scanner offered.
    """
    if version not in _SSL_VERSIONS:
        return []
    message = f"speaks only {_SSL_VERSIONS[version]}, which is prohibited"
    return [Finding(FindingKind.SSL_ONLY, Severity.CRITICAL, sha256, message)]


def check_change(
    previous: str | None, current: str, previous_seen: str
) -> list[Finding]:
    """Flag a leaf that differs from the one the endpoint served before.

    Args:
        previous: SHA-256 of the leaf of the endpoint's previous observation
            with a chain, or None when there is none.
        current: SHA-256 of the leaf served now.
        previous_seen: time of that previous observation, for the message.
    """
    if previous is None or previous == current:
        return []
    message = f"leaf changed since {previous_seen}: was {previous[:16]}..."
    return [Finding(FindingKind.CERTIFICATE_CHANGED, Severity.INFO, current, message)]


def check_gone(previous: str | None, state: str, previous_seen: str) -> list[Finding]:
    """Flag an endpoint that served a certificate before and serves none now.

    Args:
        previous: SHA-256 of the last leaf the endpoint served, or None.
        state: the port state of the current observation.
        previous_seen: time of the observation that had that leaf.
    """
    if previous is None:
        return []
    message = f"no certificate (port {state}); last served at {previous_seen}"
    return [Finding(FindingKind.ENDPOINT_GONE, Severity.MEDIUM, previous, message)]


def find_all(
    chain: Sequence[CertInfo],
    now: datetime,
    name: str | None = None,
    expiring_within_days: int = DEFAULT_EXPIRY_WINDOW_DAYS,
    *,
    ptr: str | None = None,
    version: str | None = None,
    key_exchange: Mapping[str, object] | None = None,
) -> list[Finding]:
    """Run every check on a served chain.

    Args:
        chain: the certificates in the order served, the leaf first.
        now: the time to check validity against.
        name: the name the client asked for, checked against the leaf.
        expiring_within_days: window of the ``expiring`` finding.
        ptr: the PTR name of the address, checked against the leaf when
            `name` is None (the target was given as an address). When both
            are None, the name check is skipped.
        version: the negotiated protocol version, e.g. ``"SSLv3"``.
        key_exchange: the ServerKeyExchange summary of the handshake.
    """
    findings: list[Finding] = []

    def run(check: Callable[..., list[Finding]], sha256: str, *args: Any) -> None:
        # A certificate that cryptography half-parses can make a check raise
        # (DuplicateExtension, say); that is recorded as a finding instead
        # of losing the result.
        try:
            findings.extend(check(*args))
        except Exception as exc:
            label = getattr(check, "__name__", "check_name")
            message = f"{label} failed: {type(exc).__name__}: {exc}"
            kind, severity = FindingKind.UNDECODABLE, Severity.MEDIUM
            findings.append(Finding(kind, severity, sha256, message))

    for cert in chain:
        if cert.error is not None:
            message = f"failed to decode: {cert.error}"
            kind, severity = FindingKind.UNDECODABLE, Severity.MEDIUM
            findings.append(Finding(kind, severity, cert.sha256, message))
        run(check_validity, cert.sha256, cert, now, expiring_within_days)
        run(check_key, cert.sha256, cert)
        run(check_signature, cert.sha256, cert)
    if chain:
        leaf = chain[0]
        # A root sent after the leaf is self-signed by nature, so only a
        # self-signed leaf is a finding.
        run(check_self_signed, leaf.sha256, leaf)
        if name is not None:
            run(check_name, leaf.sha256, leaf, name)
        elif ptr is not None:
            run(
                functools.partial(check_name, source="PTR name"), leaf.sha256, leaf, ptr
            )
        run(check_key_exchange, leaf.sha256, key_exchange, leaf.sha256)
        run(check_protocol, leaf.sha256, version, leaf.sha256)
        run(check_chain, leaf.sha256, chain)
    return findings


def _load(cert: CertInfo) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(cert.der)
    except ValueError:
        return None

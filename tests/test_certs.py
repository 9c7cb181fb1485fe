"""Tests of pktscan.certs on certificates generated here with cryptography."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pktscan import certs
from pktscan.certs import Finding, FindingKind, Severity, decode_certificate
from pktscan.results import CertInfo

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# One RSA key per size for the whole module: generating keys is the slow part.
_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits not in _RSA_KEYS:
        _RSA_KEYS[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_KEYS[bits]


def name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass
class Spec:
    """What to put in a generated certificate."""

    subject: x509.Name
    key: PrivateKey = field(default_factory=rsa_key)
    issuer: x509.Name | None = None
    issuer_key: PrivateKey | None = None
    not_before: datetime = NOW - timedelta(days=100)
    not_after: datetime = NOW + timedelta(days=200)
    serial: int = 0x0123ABCD
    san: Sequence[x509.GeneralName] | None = None


def build(spec: Spec) -> bytes:
    """Build and sign a certificate, self-signed unless an issuer is given."""
    issuer_key = spec.issuer_key or spec.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(spec.issuer or spec.subject)
        .public_key(spec.key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
    )
    if spec.san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(spec.san)), critical=False
        )
    algorithm = (
        None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else (hashes.SHA256())
    )
    cert = builder.sign(issuer_key, algorithm)
    return cert.public_bytes(serialization.Encoding.DER)


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_sequence(body: bytes) -> bytes:
    return b"\x30" + der_length(len(body)) + body


def der_bit_string(body: bytes) -> bytes:
    # The leading 0x00 counts the unused bits of the last byte.
    return b"\x03" + der_length(len(body) + 1) + b"\x00" + body


# AlgorithmIdentifier for RSA PKCS #1 v1.5 (RFC 8017 appendix A.2.4):
# SEQUENCE { OID 1.2.840.113549.1.1.<last>, NULL }.
def rsa_algorithm_identifier(last_arc: int) -> bytes:
    oid = bytes.fromhex("2a864886f70d0101") + bytes([last_arc])
    return der_sequence(b"\x06" + der_length(len(oid)) + oid + b"\x05\x00")


SHA256_WITH_RSA = rsa_algorithm_identifier(11)
SHA1_WITH_RSA = rsa_algorithm_identifier(5)
MD5_WITH_RSA = rsa_algorithm_identifier(4)


def resign_rsa(
    der: bytes,
    key: rsa.RSAPrivateKey,
    algorithm_identifier: bytes,
    digest: hashes.HashAlgorithm,
) -> bytes:
    """Re-sign a SHA-256 RSA certificate with a hash the builder rejects.

    cryptography 50 rejects SHA-1 and MD5 in the certificate builder but
    still signs raw bytes with them, so the TBS is patched and signed here.
    """
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    assert tbs.count(SHA256_WITH_RSA) == 1
    tbs = tbs.replace(SHA256_WITH_RSA, algorithm_identifier)
    signature = key.sign(tbs, padding.PKCS1v15(), digest)
    return der_sequence(tbs + algorithm_identifier + der_bit_string(signature))


def decoded(spec: Spec) -> CertInfo:
    return certs.decode_certificate(build(spec))


def kinds(findings: Sequence[Finding]) -> list[FindingKind]:
    return [finding.kind for finding in findings]


# --- decoding ---------------------------------------------------------------


def test_decode_rsa_certificate_fields() -> None:
    spec = Spec(
        subject=name("www.example.com", "Example, Inc"),
        issuer=name("Example CA"),
        issuer_key=rsa_key(3072),
        not_before=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        not_after=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),
        serial=0x00FF00A1,
        san=[
            x509.DNSName("www.example.com"),
            x509.DNSName("*.example.com"),
            x509.IPAddress(ipaddress.ip_address("198.18.0.10")),
            x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        ],
    )
    der = build(spec)

    info = certs.decode_certificate(der)

    assert info.der == der
    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.subject == "O=Example\\, Inc,CN=www.example.com"
    assert info.issuer == "CN=Example CA"
    assert info.not_before == "2026-01-02T03:04:05Z"
    assert info.not_after == "2027-01-02T03:04:05Z"
    assert info.serial == "ff00a1"
    assert info.key_type == "RSA"
    assert info.key_bits == 2048
    assert info.signature_algorithm == "sha256WithRSAEncryption"
    assert info.san == (
        "DNS:www.example.com",
        "DNS:*.example.com",
        "IP:198.18.0.10",
        "IP:2001:db8::1",
    )
    assert info.error is None


@pytest.mark.parametrize(
    ("key", "key_type", "key_bits", "signature_algorithm"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "EC", 256, "ecdsa-with-SHA256"),
        (ec.generate_private_key(ec.SECP384R1()), "EC", 384, "ecdsa-with-SHA256"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519", 256, "Ed25519"),
    ],
)
def test_decode_key_types(
    key: PrivateKey, key_type: str, key_bits: int, signature_algorithm: str
) -> None:
    info = decoded(Spec(subject=name("k.example"), key=key))

    assert info.key_type == key_type
    assert info.key_bits == key_bits
    assert info.signature_algorithm == signature_algorithm
    assert info.san == ()


def test_decode_dsa_subject_key() -> None:
    dsa_key = dsa.generate_private_key(key_size=2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("dsa.example"))
        .issuer_name(name("Example CA"))
        .public_key(dsa_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    der = builder.sign(rsa_key(), hashes.SHA256()).public_bytes(
        serialization.Encoding.DER
    )

    info = certs.decode_certificate(der)

    assert info.key_type == "DSA"
    assert info.key_bits == 2048
    assert info.serial == "07"


@pytest.mark.parametrize(
    ("der", "reason"),
    [
        (b"", "invalid X.509 DER (0 bytes)"),
        (b"\x16\x03\x01\x00\x05hello", "invalid X.509 DER (10 bytes)"),
        (b"\x30\x03\x02\x01\x00", "invalid X.509 DER (5 bytes)"),
    ],
)
def test_decode_invalid_der_kept(der: bytes, reason: str) -> None:
    info = certs.decode_certificate(der)

    assert info.der == der
    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.subject is None
    assert info.issuer is None
    assert info.not_after is None
    assert info.key_type is None
    assert info.error is not None
    assert info.error.startswith(reason)


def test_decode_truncated_certificate_kept() -> None:
    der = build(Spec(subject=name("t.example")))[:-10]

    info = certs.decode_certificate(der)

    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.subject is None
    assert info.error is not None
    assert info.error.startswith(f"invalid X.509 DER ({len(der)} bytes): ")


def test_decode_broken_san_keeps_other_fields() -> None:
    # A SAN whose only GeneralName (dNSName, tag 0x82) claims 5 bytes but has 1.
    broken_san = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a"
    )
    key = ec.generate_private_key(ec.SECP256R1())
    der = (
        x509.CertificateBuilder()
        .subject_name(name("bad-san.example"))
        .issuer_name(name("bad-san.example"))
        .public_key(key.public_key())
        .serial_number(9)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(broken_san, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )

    info = certs.decode_certificate(der)

    assert info.subject == "CN=bad-san.example"
    assert info.key_type == "EC"
    assert info.san == ()
    assert info.error is not None
    assert info.error.startswith("subjectAltName: ")
    assert certs.name_matches(info, "bad-san.example") is False


def test_decode_chain_keeps_order_and_bad_entries() -> None:
    first = build(Spec(subject=name("a.example")))
    second = build(Spec(subject=name("b.example")))

    chain = certs.decode_chain([first, b"junk", second])

    assert [info.subject for info in chain] == ["CN=a.example", None, "CN=b.example"]
    assert chain[1].sha256 == hashlib.sha256(b"junk").hexdigest()
    assert chain[1].error is not None


def test_decode_rejects_text_argument() -> None:
    with pytest.raises(TypeError, match="der must be bytes, not str"):
        certs.decode_certificate("30820122")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decode_arbitrary_bytes_never_raises(data: bytes) -> None:
    info = certs.decode_certificate(data)

    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.error is not None or info.subject is not None


# --- validity ---------------------------------------------------------------


def test_validity_expired() -> None:
    info = decoded(
        Spec(
            subject=name("old.example"),
            not_before=datetime(2025, 1, 1, tzinfo=UTC),
            not_after=datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC),
        )
    )

    findings = certs.check_validity(info, NOW)

    assert findings == [
        Finding(
            FindingKind.EXPIRED,
            Severity.HIGH,
            info.sha256,
            "expired at 2026-05-01T12:00:00Z, 31 days before 2026-06-01T12:00:00Z",
        )
    ]


def test_validity_expiring_within_window() -> None:
    info = decoded(
        Spec(subject=name("soon.example"), not_after=NOW + timedelta(days=10))
    )

    assert certs.check_validity(info, NOW) == [
        Finding(
            FindingKind.EXPIRING,
            Severity.MEDIUM,
            info.sha256,
            "expires at 2026-06-11T12:00:00Z, in 10 days",
        )
    ]
    assert certs.check_validity(info, NOW, expiring_within_days=9) == []
    assert kinds(certs.check_validity(info, NOW, expiring_within_days=10)) == [
        FindingKind.EXPIRING
    ]


def test_validity_not_yet_valid() -> None:
    info = decoded(
        Spec(subject=name("future.example"), not_before=NOW + timedelta(days=2))
    )

    assert certs.check_validity(info, NOW) == [
        Finding(
            FindingKind.NOT_YET_VALID,
            Severity.HIGH,
            info.sha256,
            "not valid before 2026-06-03T12:00:00Z (checked at 2026-06-01T12:00:00Z)",
        )
    ]


def test_validity_current_certificate_clean() -> None:
    assert certs.check_validity(decoded(Spec(subject=name("ok.example"))), NOW) == []


def test_validity_rejects_negative_window() -> None:
    info = decoded(Spec(subject=name("ok.example")))

    with pytest.raises(ValueError, match="-1"):
        certs.check_validity(info, NOW, expiring_within_days=-1)


# --- key, signature, self-signed ----------------------------------------------


def test_key_rsa_1024_weak() -> None:
    info = decoded(Spec(subject=name("weak.example"), key=rsa_key(1024)))

    assert certs.check_key(info) == [
        Finding(
            FindingKind.WEAK_RSA_KEY,
            Severity.HIGH,
            info.sha256,
            "RSA key of 1024 bits, under 2048",
        )
    ]


def test_key_rsa_2048_and_ec_accepted() -> None:
    rsa_info = decoded(Spec(subject=name("rsa.example")))
    ec_info = decoded(
        Spec(subject=name("ec.example"), key=ec.generate_private_key(ec.SECP256R1()))
    )

    assert certs.check_key(rsa_info) == []
    assert certs.check_key(ec_info) == []


@pytest.mark.parametrize(
    ("algorithm_identifier", "digest", "hash_name", "signature_algorithm"),
    [
        (SHA1_WITH_RSA, hashes.SHA1(), "SHA-1", "sha1WithRSAEncryption"),
        (MD5_WITH_RSA, hashes.MD5(), "MD5", "md5WithRSAEncryption"),
    ],
)
def test_signature_weak_hash(
    algorithm_identifier: bytes,
    digest: hashes.HashAlgorithm,
    hash_name: str,
    signature_algorithm: str,
) -> None:
    key = rsa_key()
    der = resign_rsa(
        build(Spec(subject=name("sha1.example"), key=key)),
        key,
        algorithm_identifier,
        digest,
    )

    info = certs.decode_certificate(der)

    assert info.error is None
    assert info.signature_algorithm == signature_algorithm
    assert certs.check_signature(info) == [
        Finding(
            FindingKind.WEAK_SIGNATURE,
            Severity.HIGH,
            info.sha256,
            f"signed with {hash_name} ({signature_algorithm})",
        )
    ]


def test_signature_sha256_accepted() -> None:
    assert certs.check_signature(decoded(Spec(subject=name("s.example")))) == []


def test_self_signed_detected() -> None:
    info = decoded(Spec(subject=name("self.example", "Lab")))

    assert certs.check_self_signed(info) == [
        Finding(
            FindingKind.SELF_SIGNED,
            Severity.MEDIUM,
            info.sha256,
            "self-signed: issuer and subject are O=Lab,CN=self.example",
        )
    ]


def test_self_signed_needs_own_signature() -> None:
    # Same subject and issuer names, but another key signed it.
    info = decoded(
        Spec(
            subject=name("twin.example"),
            issuer=name("twin.example"),
            issuer_key=rsa_key(3072),
        )
    )

    assert info.subject == info.issuer
    assert certs.check_self_signed(info) == []


def test_self_signed_issued_certificate_clean() -> None:
    info = decoded(
        Spec(subject=name("leaf.example"), issuer=name("CA"), issuer_key=rsa_key(3072))
    )

    assert certs.check_self_signed(info) == []


# --- names ------------------------------------------------------------------

SAN_CERT = Spec(
    subject=name("cn.example.com"),
    san=[
        x509.DNSName("www.example.com"),
        x509.DNSName("*.api.example.com"),
        x509.DNSName("*.com"),
        x509.DNSName("f*.example.org"),
        x509.IPAddress(ipaddress.ip_address("198.18.0.7")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
    ],
)


@pytest.mark.parametrize(
    ("requested", "matches"),
    [
        ("www.example.com", True),
        ("WWW.Example.COM", True),
        ("www.example.com.", True),
        ("example.com", False),
        ("cn.example.com", False),
        ("v1.api.example.com", True),
        ("api.example.com", False),
        ("a.v1.api.example.com", False),
        ("example.com", False),
        ("foo.example.org", False),
        ("198.18.0.7", True),
        ("2001:db8:0::7", True),
        ("198.18.0.8", False),
        ("", False),
    ],
)
def test_name_matches_san(requested: str, matches: bool) -> None:
    assert certs.name_matches(decoded(SAN_CERT), requested) is matches


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
HOSTNAME_KEY = ec.generate_private_key(ec.SECP256R1())


# An alphabetic top-level label keeps names like 0.0.0.0 out, because a name
# that parses as an IP address is matched against IP SAN entries only.
TOP_LABEL = st.from_regex(r"[a-z]{2,10}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(LABEL, min_size=2, max_size=4), TOP_LABEL, LABEL)
def test_name_exact_and_wildcard_property(
    labels: list[str], top: str, other: str
) -> None:
    labels = [*labels, top]
    host = ".".join(labels)
    wildcard = "*." + ".".join(labels[1:])
    info = decoded(
        Spec(
            subject=name("x"),
            key=HOSTNAME_KEY,
            san=[x509.DNSName(host), x509.DNSName(wildcard)],
        )
    )
    sibling = ".".join([other, *labels[1:]])
    deeper = ".".join([other, *labels])

    assert certs.name_matches(info, host.upper()) is True
    assert certs.name_matches(info, sibling) is True
    assert certs.name_matches(info, deeper) is False
    assert certs.name_matches(info, ".".join(labels[1:])) is False


def test_name_wildcard_needs_two_labels() -> None:
    info = decoded(SAN_CERT)

    assert certs.name_matches(info, "anything.com") is False


def test_name_common_name_without_san() -> None:
    info = decoded(Spec(subject=name("legacy.example.com")))

    assert certs.name_matches(info, "legacy.example.com") is True
    assert certs.name_matches(info, "other.example.com") is False


def test_name_common_name_ignored_with_san() -> None:
    info = decoded(SAN_CERT)

    assert info.subject == "CN=cn.example.com"
    assert certs.name_matches(info, "cn.example.com") is False


def test_name_ip_does_not_match_dns_san() -> None:
    info = decoded(Spec(subject=name("x"), san=[x509.DNSName("198.18.0.9")]))

    assert certs.name_matches(info, "198.18.0.9") is False


def test_check_name_mismatch_message() -> None:
    info = decoded(
        Spec(
            subject=name("x"),
            san=[x509.DNSName("a.example"), x509.DNSName("b.example")],
        )
    )

    assert certs.check_name(info, "c.example") == [
        Finding(
            FindingKind.NAME_MISMATCH,
            Severity.HIGH,
            info.sha256,
            "not valid for c.example: certificate names DNS:a.example, DNS:b.example",
        )
    ]
    assert certs.check_name(info, "b.example") == []


# --- chains -----------------------------------------------------------------


@pytest.fixture(scope="module")
def three_chain() -> list[CertInfo]:
    """Return leaf, intermediate and root, in the order a server should send."""
    root_key, intermediate_key = rsa_key(3072), rsa_key(4096)
    root = Spec(subject=name("Root CA"), key=root_key)
    intermediate = Spec(
        subject=name("Intermediate CA"),
        key=intermediate_key,
        issuer=root.subject,
        issuer_key=root_key,
    )
    leaf = Spec(
        subject=name("leaf.example"),
        issuer=intermediate.subject,
        issuer_key=intermediate_key,
        san=[x509.DNSName("leaf.example")],
    )
    return certs.decode_chain([build(leaf), build(intermediate), build(root)])


def test_chain_in_order_clean(three_chain: list[CertInfo]) -> None:
    assert certs.check_chain(three_chain) == []
    assert certs.check_chain(three_chain[:2]) == []


def test_chain_out_of_order(three_chain: list[CertInfo]) -> None:
    leaf, intermediate, root = three_chain

    findings = certs.check_chain([leaf, root, intermediate])

    assert findings == [
        Finding(
            FindingKind.CHAIN_OUT_OF_ORDER,
            Severity.LOW,
            leaf.sha256,
            "certificate 0 is not followed by its issuer CN=Intermediate CA, "
            "which is elsewhere in the chain",
        ),
        Finding(
            FindingKind.CHAIN_OUT_OF_ORDER,
            Severity.LOW,
            intermediate.sha256,
            "certificate 2 is not followed by its issuer CN=Root CA, "
            "which is elsewhere in the chain",
        ),
    ]


def test_chain_missing_intermediate(three_chain: list[CertInfo]) -> None:
    leaf, _, root = three_chain

    findings = certs.check_chain([leaf, root])

    assert findings == [
        Finding(
            FindingKind.CHAIN_INCOMPLETE,
            Severity.MEDIUM,
            leaf.sha256,
            "issuer CN=Intermediate CA of certificate 0 is not sent",
        )
    ]


def test_chain_lone_leaf_incomplete(three_chain: list[CertInfo]) -> None:
    assert kinds(certs.check_chain(three_chain[:1])) == [FindingKind.CHAIN_INCOMPLETE]


def test_chain_lone_self_signed_clean() -> None:
    assert certs.check_chain([decoded(Spec(subject=name("self.example")))]) == []


def test_find_all_on_served_chain(three_chain: list[CertInfo]) -> None:
    findings = certs.find_all(three_chain, NOW, name="other.example")

    assert [(finding.kind, finding.sha256) for finding in findings] == [
        (FindingKind.NAME_MISMATCH, three_chain[0].sha256),
    ]


def test_find_all_self_signed_leaf() -> None:
    leaf = decoded(Spec(subject=name("self.example")))

    findings = certs.find_all([leaf], NOW, name="self.example")

    assert [(finding.kind, finding.sha256) for finding in findings] == [
        (FindingKind.SELF_SIGNED, leaf.sha256),
    ]


def test_find_all_reports_undecodable() -> None:
    junk = certs.decode_certificate(b"junk")

    findings = certs.find_all([junk], NOW)

    assert kinds(findings) == [FindingKind.UNDECODABLE]
    assert findings[0].sha256 == hashlib.sha256(b"junk").hexdigest()
    assert findings[0].message.startswith("failed to decode: invalid X.509 DER")


def test_finding_to_json() -> None:
    finding = Finding(FindingKind.EXPIRED, Severity.HIGH, "ab" * 32, "expired")

    assert finding.to_json() == {
        "kind": "expired",
        "severity": "high",
        "sha256": "ab" * 32,
        "message": "expired",
    }


# --- handshake and history ----------------------------------------------------


@pytest.mark.parametrize(
    ("key_exchange", "expected"),
    [
        ({"kind": "DHE", "prime_bits": 1024, "generator": 2}, [FindingKind.WEAK_DH]),
        ({"kind": "DHE", "prime_bits": 2047}, [FindingKind.WEAK_DH]),
        ({"kind": "DHE", "prime_bits": 2048}, []),
        ({"kind": "ECDHE", "group": "x25519"}, []),
        ({"kind": "RSA"}, []),
        ({"kind": "DHE"}, []),
        (None, []),
    ],
)
def test_key_exchange_dh_prime(
    key_exchange: dict[str, object] | None, expected: list[FindingKind]
) -> None:
    assert kinds(certs.check_key_exchange(key_exchange, "ab" * 32)) == expected


def test_key_exchange_message_names_bits() -> None:
    findings = certs.check_key_exchange({"kind": "DHE", "prime_bits": 1024}, "cd" * 32)

    assert findings == [
        Finding(
            FindingKind.WEAK_DH,
            Severity.HIGH,
            "cd" * 32,
            "DHE with a 1024-bit prime, under 2048",
        )
    ]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("SSLv2", [FindingKind.SSL_ONLY]),
        ("SSLv3", [FindingKind.SSL_ONLY]),
        ("TLSv1.0", []),
        ("TLSv1.3", []),
        (None, []),
    ],
)
def test_protocol_ssl_only(version: str | None, expected: list[FindingKind]) -> None:
    assert kinds(certs.check_protocol(version, "ab" * 32)) == expected


def test_protocol_message_names_rfc() -> None:
    (finding,) = certs.check_protocol("SSLv3", "ab" * 32)

    assert finding.severity is Severity.CRITICAL
    assert finding.message == "speaks only SSL 3.0 (RFC 7568), which is prohibited"


def test_change_same_leaf_clean() -> None:
    assert certs.check_change("aa" * 32, "aa" * 32, "2026-01-01T00:00:00.000Z") == []
    assert certs.check_change(None, "aa" * 32, "") == []


def test_change_other_leaf_reported() -> None:
    findings = certs.check_change("aa" * 32, "bb" * 32, "2026-01-01T00:00:00.000Z")

    assert findings == [
        Finding(
            FindingKind.CERTIFICATE_CHANGED,
            Severity.INFO,
            "bb" * 32,
            "leaf changed since 2026-01-01T00:00:00.000Z: was aaaaaaaaaaaaaaaa...",
        )
    ]


def test_gone_filed_under_previous_leaf() -> None:
    findings = certs.check_gone("aa" * 32, "closed", "2026-01-01T00:00:00.000Z")

    assert findings == [
        Finding(
            FindingKind.ENDPOINT_GONE,
            Severity.MEDIUM,
            "aa" * 32,
            "no certificate (port closed); last served at 2026-01-01T00:00:00.000Z",
        )
    ]
    assert certs.check_gone(None, "closed", "") == []


def test_find_all_name_falls_back_to_ptr(three_chain: list[CertInfo]) -> None:
    by_ptr = certs.find_all(three_chain, NOW, ptr="host.in-addr.example")
    matching_ptr = certs.find_all(three_chain, NOW, ptr="leaf.example")
    name_first = certs.find_all(
        three_chain, NOW, name="leaf.example", ptr="host.in-addr.example"
    )

    assert kinds(by_ptr) == [FindingKind.NAME_MISMATCH]
    assert by_ptr[0].message.startswith(
        "not valid for PTR name host.in-addr.example: certificate names DNS:"
    )
    assert matching_ptr == []
    assert name_first == []


def test_find_all_handshake_findings_on_leaf(three_chain: list[CertInfo]) -> None:
    findings = certs.find_all(
        three_chain,
        NOW,
        version="SSLv3",
        key_exchange={"kind": "DHE", "prime_bits": 1024},
    )

    assert [(finding.kind, finding.sha256) for finding in findings] == [
        (FindingKind.WEAK_DH, three_chain[0].sha256),
        (FindingKind.SSL_ONLY, three_chain[0].sha256),
    ]


def test_invalid_subject_keeps_other_fields() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    # 0xff never occurs in UTF-8, so the subject's UTF8String is invalid.
    broken = der.replace(b"bad.test", b"\xffad.test")

    info = decode_certificate(broken)

    assert info.sha256 == hashlib.sha256(broken).hexdigest()
    assert info.subject is None
    assert info.issuer == "CN=ca"
    assert info.key_type == "EC"
    assert (info.error or "").startswith("subject: ")


def _der_with_duplicate_san() -> bytes:
    """Build a DER with two subjectAltName extensions (RFC 5280 forbids it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dup.test")])
    now = datetime.now(UTC)
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dup.test")]), False)
        .add_extension(x509.IssuerAlternativeName([x509.DNSName("o.test")]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    # The issuerAltName OID 2.5.29.18 becomes 2.5.29.17, a second SAN.
    position = der.find(bytes.fromhex("0603551d12"))
    assert position > 0
    return der[: position + 4] + b"\x11" + der[position + 5 :]


def test_duplicate_extension_is_kept_with_reason() -> None:
    der = _der_with_duplicate_san()

    info = decode_certificate(der)

    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.subject == "CN=dup.test"
    assert info.san == ()
    assert (info.error or "").startswith("subjectAltName: DuplicateExtension: ")


def test_findings_survive_duplicate_extension() -> None:
    info = decode_certificate(_der_with_duplicate_san())

    findings = certs.find_all([info], datetime.now(UTC), name="dup.test")

    kinds = [finding.kind for finding in findings]
    assert FindingKind.UNDECODABLE in kinds
    # The SAN cannot be read and counts as present, so the CN is not used.
    assert FindingKind.NAME_MISMATCH in kinds

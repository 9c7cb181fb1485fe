"""Certificates of the lab, generated with the cryptography package at start.

A lab root CA signs one leaf per TLS server directly. The bigchain server
instead gets a leaf under a line of intermediates long enough that the chain
it sends exceeds 16 KB, the maximum plaintext of one TLS record, so that its
Certificate message spans several records. Every key is RSA 2048 because
SSL 2.0 and SSL 3.0 only carry RSA certificates in practice.

The finding servers get certificates with one defect each, named by a
`CertProfile`: expired, not yet valid, self-signed, a 1024-bit RSA key, a
SHA-1 signature, a name other than the server's, a chain out of order or
with an intermediate missing, or an expiry within days. The root key is
written next to the root certificate, so that `LabPKI.load` can issue new
certificates for a lab that another process started.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

RSA_KEY_BITS = 2048
WEAK_RSA_KEY_BITS = 1024
# Longer than the 30-day window of the "expiring" finding, so that only the
# expiring server's certificate triggers it.
VALIDITY = datetime.timedelta(days=365)
EXPIRING_VALIDITY = datetime.timedelta(days=10)
# Name in the certificate of the wrong-name server, which is not its own.
WRONG_NAME = "elsewhere.pktscan.test"
ROOT_CERT_FILE = "root-ca.pem"
ROOT_KEY_FILE = "root-ca.key.pem"

# The 1024-bit MODP group of RFC 2409 section 6.2 (Oakley group 2), g = 2.
OAKLEY_GROUP_2_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)

# DER of the AlgorithmIdentifiers SEQUENCE { OID 1.2.840.113549.1.1.N, NULL }
# for sha256WithRSAEncryption (N = 11) and sha1WithRSAEncryption (N = 5).
_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


class CertProfile(enum.StrEnum):
    """Defect of a finding server's certificate."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    SELF_SIGNED = "self-signed"
    WEAK_RSA = "weak-rsa"
    SHA1 = "sha1"
    WRONG_NAME = "wrong-name"
    OUT_OF_ORDER = "out-of-order"
    INCOMPLETE = "incomplete"
    EXPIRING = "expiring"


# Above 16384 bytes, the maximum TLS record plaintext (RFC 5246 6.2.1).
BIGCHAIN_MIN_BYTES = 16 * 1024 + 1024
_ORGANIZATION = "pktscan lab"


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """Files of one server's certificate.

    Attributes:
        leaf_file: PEM of the leaf alone.
        key_file: PEM of the leaf's private key (PKCS#8, unencrypted).
        intermediate_files: PEM of each certificate sent after the leaf, in
            order.
        bundle_file: PEM of the leaf followed by the chain, as nginx wants.
        leaf_sha256: hex SHA-256 of the leaf's DER encoding.
        chain_der_bytes: total DER size of leaf plus chain.
    """

    leaf_file: Path
    key_file: Path
    intermediate_files: tuple[Path, ...]
    bundle_file: Path
    leaf_sha256: str
    chain_der_bytes: int


@dataclass(frozen=True, slots=True)
class _Issuer:
    name: x509.Name
    key: rsa.RSAPrivateKey


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: _Issuer,
    public_key: rsa.RSAPublicKey,
    validity: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = validity or (
        now - datetime.timedelta(hours=1),
        now + VALIDITY,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    )


def _ca_cert(
    subject: x509.Name, issuer: _Issuer, key: rsa.RSAPrivateKey
) -> x509.Certificate:
    builder = _builder(subject, issuer, key.public_key())
    builder = builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    return builder.sign(issuer.key, hashes.SHA256())


def _leaf_cert(
    hostname: str,
    issuer: _Issuer,
    key: rsa.RSAPrivateKey,
    validity: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> x509.Certificate:
    builder = _builder(_name(hostname), issuer, key.public_key(), validity)
    builder = (
        builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
    )
    return builder.sign(issuer.key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _resign_sha1(cert: x509.Certificate, issuer: _Issuer) -> x509.Certificate:
    """Sign the certificate again with SHA-1.

    cryptography 50 rejects SHA-1 in `CertificateBuilder.sign` but still
    signs raw bytes with it, so the TBSCertificate gets the SHA-1 algorithm
    identifier in place of the SHA-256 one and a new signature.
    """
    tbs = cert.tbs_certificate_bytes
    if tbs.count(_SHA256_WITH_RSA) != 1:
        raise ValueError("expected one sha256WithRSAEncryption identifier in the TBS")
    tbs = tbs.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    signature = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    # BIT STRING: the leading 0x00 counts the unused bits of the last byte.
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + _SHA1_WITH_RSA + bit_string
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)


def _der_integer(value: int) -> bytes:
    # One extra byte keeps the sign bit clear for a positive value.
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_length(len(body)) + body


def dh_params_pem(prime: int = OAKLEY_GROUP_2_PRIME, generator: int = 2) -> bytes:
    """Return DH parameters as PKCS #3 PEM, the format of nginx's ssl_dhparam.

    The DER is built here, DHParameter ::= SEQUENCE { prime, base }, because
    cryptography 50 warns that its finite-field DH is deprecated.
    """
    body = _der_integer(prime) + _der_integer(generator)
    der = b"\x30" + _der_length(len(body)) + body
    text = base64.encodebytes(der).decode().replace("\n", "")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    pem = "\n".join(
        ["-----BEGIN DH PARAMETERS-----", *lines, "-----END DH PARAMETERS-----"]
    )
    return (pem + "\n").encode()


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


class LabPKI:
    """The lab's root CA and the certificates it issues into one directory."""

    def __init__(
        self,
        directory: Path,
        root: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if root is None:
            key = _new_key()
            name = _name("pktscan lab root CA")
            self._root = _Issuer(name, key)
            self.root_cert = _ca_cert(name, self._root, key)
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write(directory / ROOT_KEY_FILE, key_pem, 0o600)
        else:
            self.root_cert, key = root
            self._root = _Issuer(self.root_cert.subject, key)
        self.root_file = _write(directory / ROOT_CERT_FILE, _pem(self.root_cert))
        # Intermediates of the bigchain server share one key: only their
        # size matters, and key generation dominates the lab's start time.
        self._intermediate_key: rsa.RSAPrivateKey | None = None
        # The finding servers share one leaf key for the same reason.
        self._shared_leaf_key: rsa.RSAPrivateKey | None = None

    @classmethod
    def load(cls, directory: Path) -> LabPKI:
        """Open the root CA that an earlier `LabPKI(directory)` wrote.

        Raises:
            FileNotFoundError: the directory has no root certificate or key.
            ValueError: a file is not the PEM this class writes.
        """
        cert = x509.load_pem_x509_certificate((directory / ROOT_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / ROOT_KEY_FILE).read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{directory / ROOT_KEY_FILE} is not an RSA key")
        return cls(directory, root=(cert, key))

    def issue_profile(
        self, server: str, hostname: str, profile: CertProfile
    ) -> IssuedCert:
        """Issue and write a certificate for `hostname` with the defect `profile`."""
        now = datetime.datetime.now(datetime.UTC)
        day = datetime.timedelta(days=1)
        validity = {
            CertProfile.EXPIRED: (now - 60 * day, now - 30 * day),
            CertProfile.NOT_YET_VALID: (now + 30 * day, now + 60 * day),
            CertProfile.EXPIRING: (now - day, now + EXPIRING_VALIDITY),
        }.get(profile)

        if profile is CertProfile.WEAK_RSA:
            key = rsa.generate_private_key(
                public_exponent=65537, key_size=WEAK_RSA_KEY_BITS
            )
        else:
            key = self._leaf_key()
        name = WRONG_NAME if profile is CertProfile.WRONG_NAME else hostname

        issuer = self._root
        middle: list[x509.Certificate] = []
        if profile in (CertProfile.OUT_OF_ORDER, CertProfile.INCOMPLETE):
            issuer, middle = self._two_intermediates(server)
        if profile is CertProfile.SELF_SIGNED:
            issuer = _Issuer(_name(name), key)
        leaf = _leaf_cert(name, issuer, key, validity)
        if profile is CertProfile.SHA1:
            leaf = _resign_sha1(leaf, issuer)

        sent: list[x509.Certificate] = []
        if profile is CertProfile.OUT_OF_ORDER:
            # The leaf's issuer comes after its own issuer instead of right
            # after the leaf. The root is sent too, so no issuer is missing.
            sent = [middle[1], middle[0], self.root_cert]
        elif profile is CertProfile.INCOMPLETE:
            # The intermediate that signed the leaf is left out.
            sent = [middle[1]]
        return self._write_issued(server, leaf, key, sent)

    def issue(
        self, server: str, hostname: str, *, big_chain: bool = False
    ) -> IssuedCert:
        """Issue and write a leaf for `hostname`, named after `server`.

        With `big_chain`, the leaf hangs under as many intermediates as it
        takes for leaf plus chain to exceed BIGCHAIN_MIN_BYTES of DER.
        """
        issuer = self._root
        chain: list[x509.Certificate] = []
        if big_chain:
            issuer, chain = self._intermediates(server)
        key = _new_key()
        leaf = _leaf_cert(hostname, issuer, key)
        return self._write_issued(server, leaf, key, chain)

    def _write_issued(
        self,
        server: str,
        leaf: x509.Certificate,
        key: rsa.RSAPrivateKey,
        chain: list[x509.Certificate],
    ) -> IssuedCert:
        leaf_der = leaf.public_bytes(serialization.Encoding.DER)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_file = _write(self.directory / f"{server}.key.pem", key_pem, 0o600)
        leaf_file = _write(self.directory / f"{server}.pem", _pem(leaf))
        intermediate_files = tuple(
            _write(self.directory / f"{server}.chain-{index}.pem", _pem(cert))
            for index, cert in enumerate(chain, start=1)
        )
        bundle = b"".join(_pem(cert) for cert in [leaf, *chain])
        bundle_file = _write(self.directory / f"{server}.bundle.pem", bundle)
        chain_der_bytes = len(leaf_der) + sum(
            len(cert.public_bytes(serialization.Encoding.DER)) for cert in chain
        )
        return IssuedCert(
            leaf_file=leaf_file,
            key_file=key_file,
            intermediate_files=intermediate_files,
            bundle_file=bundle_file,
            leaf_sha256=hashlib.sha256(leaf_der).hexdigest(),
            chain_der_bytes=chain_der_bytes,
        )

    def _leaf_key(self) -> rsa.RSAPrivateKey:
        if self._shared_leaf_key is None:
            self._shared_leaf_key = _new_key()
        return self._shared_leaf_key

    def _two_intermediates(self, server: str) -> tuple[_Issuer, list[x509.Certificate]]:
        """Build two intermediates under the root, the leaf's issuer first."""
        key = self._leaf_key()
        upper_name = _name(f"pktscan lab {server} intermediate CA 2")
        upper = _ca_cert(upper_name, self._root, key)
        lower_name = _name(f"pktscan lab {server} intermediate CA 1")
        lower = _ca_cert(lower_name, _Issuer(upper_name, key), key)
        return _Issuer(lower_name, key), [lower, upper]

    def _intermediates(self, server: str) -> tuple[_Issuer, list[x509.Certificate]]:
        """Build intermediates until their DER size reaches the bigchain target.

        Returns the issuer of the leaf and the chain in sending order (the
        leaf's issuer first, the one signed by the root last).
        """
        if self._intermediate_key is None:
            self._intermediate_key = _new_key()
        key = self._intermediate_key
        issuer = self._root
        chain: list[x509.Certificate] = []
        total = 0
        # The bound keeps a wrong size estimate from looping forever.
        for depth in range(1, 65):
            name = _name(f"pktscan lab {server} intermediate CA {depth}")
            cert = _ca_cert(name, issuer, key)
            chain.insert(0, cert)
            total += len(cert.public_bytes(serialization.Encoding.DER))
            issuer = _Issuer(name, key)
            if total >= BIGCHAIN_MIN_BYTES:
                break
        return issuer, chain

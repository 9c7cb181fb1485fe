"""Certificates of the lab, generated with the cryptography package at start.

A lab root CA signs one leaf per TLS server directly. The bigchain server
instead gets a leaf under a line of intermediates long enough that the chain
it sends exceeds 16 KB, the maximum plaintext of one TLS record, so that its
Certificate message spans several records. Every key is RSA 2048 because
SSL 2.0 and SSL 3.0 only carry RSA certificates in practice.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RSA_KEY_BITS = 2048
VALIDITY = datetime.timedelta(days=30)
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
    subject: x509.Name, issuer: _Issuer, public_key: rsa.RSAPublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
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
    hostname: str, issuer: _Issuer, key: rsa.RSAPrivateKey
) -> x509.Certificate:
    builder = _builder(_name(hostname), issuer, key.public_key())
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


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


class LabPKI:
    """The lab's root CA and the certificates it issues into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        key = _new_key()
        name = _name("pktscan lab root CA")
        self._root = _Issuer(name, key)
        self.root_cert = _ca_cert(name, self._root, key)
        self.root_file = _write(directory / "root-ca.pem", _pem(self.root_cert))
        # Intermediates of the bigchain server share one key: only their
        # size matters, and key generation dominates the lab's start time.
        self._intermediate_key: rsa.RSAPrivateKey | None = None

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

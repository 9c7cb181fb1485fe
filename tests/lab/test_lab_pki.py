"""Lab certificates: names, keys, fingerprints and the big chain."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pktscan.lab.pki import IssuedCert, LabPKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI(tmp_path_factory.mktemp("certs"))


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_leaf_names_and_key(pki: LabPKI) -> None:
    issued = pki.issue("tls10-12", "tls10-12.lab.pktscan.test")
    leaf = _load(issued.leaf_file)
    common_names = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == [
        "tls10-12.lab.pktscan.test"
    ]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["tls10-12.lab.pktscan.test"]
    public_key = leaf.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048
    key = serialization.load_pem_private_key(issued.key_file.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == public_key.public_numbers()
    assert issued.key_file.stat().st_mode & 0o077 == 0


def test_leaf_fingerprint_and_issuer(pki: LabPKI) -> None:
    issued = pki.issue("ssl3-only", "ssl3-only.lab.pktscan.test")
    leaf = _load(issued.leaf_file)
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert issued.leaf_sha256 == hashlib.sha256(der).hexdigest()
    assert leaf.issuer == pki.root_cert.subject
    leaf.verify_directly_issued_by(pki.root_cert)
    assert issued.intermediate_files == ()
    assert issued.bundle_file.read_bytes() == issued.leaf_file.read_bytes()


def test_big_chain_exceeds_one_record(pki: LabPKI) -> None:
    issued: IssuedCert = pki.issue(
        "bigchain", "bigchain.lab.pktscan.test", big_chain=True
    )
    chain = [_load(path) for path in issued.intermediate_files]
    assert issued.chain_der_bytes > 16384
    der_sizes = [
        len(cert.public_bytes(serialization.Encoding.DER))
        for cert in [_load(issued.leaf_file), *chain]
    ]
    assert sum(der_sizes) == issued.chain_der_bytes
    # Each certificate is issued by the next one; the last by the root.
    issuers = [_load(issued.leaf_file), *chain]
    for child, parent in zip(issuers, [*chain, pki.root_cert], strict=True):
        child.verify_directly_issued_by(parent)
    bundle = x509.load_pem_x509_certificates(issued.bundle_file.read_bytes())
    assert bundle == issuers

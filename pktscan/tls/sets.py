"""The four protocol sets of the attempt ladder, as data and hello builders.

A server that does not support a version often rejects a hello that offers
it, even beside a version it does support. So the scanner tries up to four
hellos, each on a new connection, until one brings a certificate:

    set  versions offered            format       record ver.  client_version
    1    TLS 1.0, SSL 3.0, SSL 2.0   SSLv2-compat  (2-byte hdr) 0x0301
    2    TLS 1.0, SSL 3.0            TLS record    0x0301       0x0301
    3    TLS 1.2, TLS 1.1, TLS 1.0   TLS record    0x0301       0x0303
    4    SSL 3.0                     TLS record    0x0300       0x0300

Choices, and why:

- Record version. RFC 5246 E.1 lets a client put any {03,XX} in the record
  that carries its ClientHello and admits that no value suits every old
  server. Sets 2 and 3 send 0x0301, the value that OpenSSL 1.0 and NSS
  clients sent and that TLS 1.3 clients still send (RFC 8446 5.1), so the
  value old TLS servers were tested against. Set 4 sends 0x0300 because
  some SSL 3.0-only servers reject a record that claims a later version.
- No TLS_FALLBACK_SCSV (RFC 7507): a server that supports a higher version
  than a set offers would send an inappropriate_fallback alert instead
  of a certificate.
- Secure renegotiation (RFC 5746 3.3): hellos with extensions carry an
  empty renegotiation_info; hellos without extensions carry
  TLS_EMPTY_RENEGOTIATION_INFO_SCSV instead.
- Sets 1 and 4 carry no extensions: the SSLv2 format has no place for them,
  and some SSL 3.0 servers fail on bytes after compression_methods. Both
  stay under 256 bytes. Sets 2 and 3 get a padding extension when their
  handshake message would be 256-511 bytes long (`hello.pad_for_f5`).
- signature_algorithms only in set 3: RFC 5246 7.4.1.4.1 forbids it in
  hellos that offer only versions before TLS 1.2.
- No ffdhe groups in supported_groups: by RFC 7919 4 a server that supports
  none of the offered ffdhe groups must not pick a DHE suite, which would
  lose servers that speak only DHE with their own group.
- No anonymous, PSK or SRP suites: a server that picks one sends no
  certificate. Export, DES, RC4 and 3DES suites stay: the scanner reads
  certificates and sends no application data, so a weak cipher costs
  nothing, and old servers may offer nothing else.
- Cipher lists cover what these servers accept: OpenSSL 3 with
  `DEFAULT:@SECLEVEL=0` (ECDHE and DHE with AES-GCM and AES-CBC, RSA with
  AES), tlslite-ng 0.8 in SSL 3.0 (RSA with AES, 3DES and RC4), and scapy's
  SSL 2.0 server (SSL_CK_* kinds with RSA key exchange).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

from pktscan.tls import hello as h
from pktscan.tls.constants import (
    CipherSuite as CS,
)
from pktscan.tls.constants import (
    ECPointFormat,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
    SSLv2CipherKind,
)


@dataclass(frozen=True, slots=True)
class ProtocolSet:
    """One rung of the attempt ladder: which versions, in which hello format."""

    number: int
    label: str
    hello_format: Literal["sslv2", "tls"]
    record_version: int
    client_version: int
    versions: tuple[int, ...]


PROTOCOL_SETS: Final[tuple[ProtocolSet, ...]] = (
    ProtocolSet(
        number=1,
        label="TLS 1.0, SSL 3.0, SSL 2.0 (SSLv2-compatible hello)",
        hello_format="sslv2",
        record_version=ProtocolVersion.SSL_2_0,
        client_version=ProtocolVersion.TLS_1_0,
        versions=(
            ProtocolVersion.TLS_1_0,
            ProtocolVersion.SSL_3_0,
            ProtocolVersion.SSL_2_0,
        ),
    ),
    ProtocolSet(
        number=2,
        label="TLS 1.0, SSL 3.0",
        hello_format="tls",
        record_version=ProtocolVersion.TLS_1_0,
        client_version=ProtocolVersion.TLS_1_0,
        versions=(ProtocolVersion.TLS_1_0, ProtocolVersion.SSL_3_0),
    ),
    ProtocolSet(
        number=3,
        label="TLS 1.2, TLS 1.1, TLS 1.0",
        hello_format="tls",
        record_version=ProtocolVersion.TLS_1_0,
        client_version=ProtocolVersion.TLS_1_2,
        versions=(
            ProtocolVersion.TLS_1_2,
            ProtocolVersion.TLS_1_1,
            ProtocolVersion.TLS_1_0,
        ),
    ),
    ProtocolSet(
        number=4,
        label="SSL 3.0",
        hello_format="tls",
        record_version=ProtocolVersion.SSL_3_0,
        client_version=ProtocolVersion.SSL_3_0,
        versions=(ProtocolVersion.SSL_3_0,),
    ),
)

# Suites usable in SSL 3.0 (no elliptic curves, RFC 8422 covers TLS only),
# strongest first.
SSL3_SUITES: Final[tuple[int, ...]] = (
    CS.TLS_DHE_RSA_WITH_AES_128_CBC_SHA,
    CS.TLS_DHE_RSA_WITH_AES_256_CBC_SHA,
    CS.TLS_DHE_DSS_WITH_AES_128_CBC_SHA,
    CS.TLS_DHE_DSS_WITH_AES_256_CBC_SHA,
    CS.TLS_RSA_WITH_AES_128_CBC_SHA,
    CS.TLS_RSA_WITH_AES_256_CBC_SHA,
    CS.TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA,
    CS.TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA,
    CS.TLS_RSA_WITH_CAMELLIA_128_CBC_SHA,
    CS.TLS_RSA_WITH_CAMELLIA_256_CBC_SHA,
    CS.TLS_RSA_WITH_SEED_CBC_SHA,
    CS.TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA,
    CS.TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA,
    CS.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
    CS.TLS_RSA_WITH_RC4_128_SHA,
    CS.TLS_RSA_WITH_RC4_128_MD5,
    CS.TLS_RSA_WITH_IDEA_CBC_SHA,
    CS.TLS_DHE_RSA_WITH_DES_CBC_SHA,
    CS.TLS_DHE_DSS_WITH_DES_CBC_SHA,
    CS.TLS_RSA_WITH_DES_CBC_SHA,
    CS.TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA,
    CS.TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA,
    CS.TLS_RSA_EXPORT_WITH_DES40_CBC_SHA,
    CS.TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5,
    CS.TLS_RSA_EXPORT_WITH_RC4_40_MD5,
)

# Suites for TLS 1.0 and SSL 3.0 together: the elliptic-curve CBC suites of
# RFC 8422 first, then everything SSL 3.0 can use.
TLS10_SUITES: Final[tuple[int, ...]] = (
    CS.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
    CS.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    CS.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
    CS.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
    CS.TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA,
    CS.TLS_ECDH_RSA_WITH_AES_128_CBC_SHA,
    CS.TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA,
    CS.TLS_ECDH_RSA_WITH_AES_256_CBC_SHA,
    CS.TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA,
    CS.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
    CS.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
    CS.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
    *SSL3_SUITES,
)

# Suites for TLS 1.2: AEAD suites first (RFC 5288, 7905, 6655, 6209), then
# the SHA-256/384 CBC suites of TLS 1.2, then everything TLS 1.0 can use.
TLS12_SUITES: Final[tuple[int, ...]] = (
    CS.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CS.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    CS.TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    CS.TLS_DHE_DSS_WITH_AES_128_GCM_SHA256,
    CS.TLS_DHE_DSS_WITH_AES_256_GCM_SHA384,
    CS.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
    CS.TLS_ECDHE_ECDSA_WITH_AES_256_CCM,
    CS.TLS_DHE_RSA_WITH_AES_128_CCM,
    CS.TLS_DHE_RSA_WITH_AES_256_CCM,
    CS.TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256,
    CS.TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256,
    CS.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    CS.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
    CS.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
    CS.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
    CS.TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256,
    CS.TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    CS.TLS_DHE_RSA_WITH_AES_128_CBC_SHA256,
    CS.TLS_DHE_RSA_WITH_AES_256_CBC_SHA256,
    CS.TLS_DHE_DSS_WITH_AES_128_CBC_SHA256,
    CS.TLS_DHE_DSS_WITH_AES_256_CBC_SHA256,
    CS.TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    CS.TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_RSA_WITH_AES_128_GCM_SHA256,
    CS.TLS_RSA_WITH_AES_256_GCM_SHA384,
    CS.TLS_RSA_WITH_AES_128_CCM,
    CS.TLS_RSA_WITH_AES_256_CCM,
    CS.TLS_RSA_WITH_ARIA_128_GCM_SHA256,
    CS.TLS_RSA_WITH_AES_128_CBC_SHA256,
    CS.TLS_RSA_WITH_AES_256_CBC_SHA256,
    CS.TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    *TLS10_SUITES,
)

SSLV2_KINDS: Final[tuple[int, ...]] = (
    SSLv2CipherKind.SSL_CK_RC4_128_WITH_MD5,
    SSLv2CipherKind.SSL_CK_DES_192_EDE3_CBC_WITH_MD5,
    SSLv2CipherKind.SSL_CK_RC2_128_CBC_WITH_MD5,
    SSLv2CipherKind.SSL_CK_IDEA_128_CBC_WITH_MD5,
    SSLv2CipherKind.SSL_CK_DES_64_CBC_WITH_MD5,
    SSLv2CipherKind.SSL_CK_RC4_128_EXPORT40_WITH_MD5,
    SSLv2CipherKind.SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5,
)

# Set 1 offers TLS suites as 0x00XXXX specs (RFC 5246 E.2) beside the SSL
# 2.0 kinds, and signals secure renegotiation with the SCSV (RFC 5746 3.3).
SET1_CIPHER_SPECS: Final[tuple[int, ...]] = (
    *TLS10_SUITES,
    *SSLV2_KINDS,
    CS.TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
)

GROUPS: Final[tuple[int, ...]] = (
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.secp521r1,
    NamedGroup.x448,
    NamedGroup.brainpoolP256r1,
    NamedGroup.brainpoolP384r1,
    NamedGroup.brainpoolP512r1,
    NamedGroup.secp256k1,
)

# Modern schemes first, then PKCS#1 with SHA-256/384/512, then SHA-1 and DSA
# pairs for TLS 1.2 servers whose certificates allow nothing newer.
SIGNATURE_SCHEMES: Final[tuple[int, ...]] = (
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ecdsa_secp521r1_sha512,
    SignatureScheme.ed25519,
    SignatureScheme.ed448,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.rsa_pss_pss_sha256,
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.rsa_pkcs1_sha512,
    SignatureScheme.ecdsa_sha1,
    SignatureScheme.rsa_pkcs1_sha1,
    SignatureScheme.dsa_sha256_RESERVED,
    SignatureScheme.dsa_sha1_RESERVED,
)


def protocol_set(set_number: int) -> ProtocolSet:
    """Return protocol set `set_number` (1-4), raising ValueError otherwise."""
    for candidate in PROTOCOL_SETS:
        if candidate.number == set_number:
            return candidate
    raise ValueError(f"protocol set {set_number!r} does not exist; use 1-4")


def _tls_extensions(sni: str | None, *, tls12: bool) -> tuple[h.Extension, ...]:
    extensions: list[h.Extension] = []
    if sni is not None:
        extensions.append(h.server_name(sni))
    extensions += [
        h.supported_groups(GROUPS),
        h.ec_point_formats([ECPointFormat.uncompressed]),
    ]
    if tls12:
        extensions.append(h.signature_algorithms(SIGNATURE_SCHEMES))
    extensions += [
        h.renegotiation_info(),
        h.extended_master_secret(),
        h.session_ticket(),
        h.status_request(),
    ]
    return tuple(extensions)


def build_set_hello_object(
    set_number: int, random: bytes, sni: str | None = None
) -> h.ClientHello | h.SSLv2ClientHello:
    """Build the hello of a protocol set as a dataclass, before encoding.

    `sni` goes into server_name for sets 2 and 3. Sets 1 and 4 carry no
    extensions, so they ignore it.
    """
    chosen = protocol_set(set_number)
    random = h.check_random(random)
    if chosen.hello_format == "sslv2":
        return h.SSLv2ClientHello(chosen.client_version, SET1_CIPHER_SPECS, random)

    if chosen.number == 4:
        suites = (*SSL3_SUITES, CS.TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
        return h.ClientHello(
            chosen.record_version, chosen.client_version, random, suites
        )

    tls12 = chosen.client_version >= ProtocolVersion.TLS_1_2
    hello = h.ClientHello(
        chosen.record_version,
        chosen.client_version,
        random,
        TLS12_SUITES if tls12 else TLS10_SUITES,
        extensions=_tls_extensions(sni, tls12=tls12),
    )
    return h.pad_for_f5(hello)


def build_set_hello(set_number: int, random: bytes, sni: str | None = None) -> bytes:
    """Build the bytes to write to the socket for protocol set `set_number`.

    Args:
        set_number: 1-4, as in `PROTOCOL_SETS`.
        random: 32 bytes from the caller's random source; the ClientHello
            random, or the challenge of the SSLv2-compatible hello.
        sni: host name for server_name; used by sets 2 and 3 only.

    Returns:
        The complete hello, record header included.

    Raises:
        ValueError: unknown set, random not 32 bytes, or invalid `sni`.
    """
    return build_set_hello_object(set_number, random, sni).to_bytes()


@cache
def _template(set_number: int) -> tuple[int | None, ...]:
    """Return the set's hello with None at bytes that vary between hellos.

    The record and handshake lengths vary with the SNI. The random varies
    with every hello. Everything else up to the end of the cipher suites is
    fixed.
    """
    data = build_set_hello(set_number, bytes(32))
    template: list[int | None] = list(data)
    if set_number == 1:
        variable = [0, 1]
        fixed_end = 11 + len(SET1_CIPHER_SPECS) * 3
    else:
        variable = [3, 4, 6, 7, 8, *range(11, 43)]
        suites_len = int.from_bytes(data[44:46], "big")
        fixed_end = 46 + suites_len
    for index in variable:
        template[index] = None
    return tuple(template[:fixed_end])


def classify_client_hello(data: bytes) -> int | None:
    """Tell which protocol set produced a captured hello, from its first bytes.

    Compares every fixed byte that `data` contains (headers, versions,
    session id length, cipher suites) against each set's hello. At least
    the first 11 bytes are needed, which reach client_version in the TLS
    format and the first cipher spec in the SSLv2 one.

    Returns:
        The set number, or None for a hello that no set produced, or one
        too short to tell.
    """
    min_len = 11
    if len(data) < min_len:
        return None
    for candidate in PROTOCOL_SETS:
        template = _template(candidate.number)
        if candidate.hello_format == "sslv2" and data[0] & 0x80 == 0:
            continue
        if all(
            expected is None or expected == actual
            for expected, actual in zip(template, data, strict=False)
        ):
            return candidate.number
    return None

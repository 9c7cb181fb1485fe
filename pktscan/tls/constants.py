"""Registries of the SSL 2.0, SSL 3.0 and TLS wire protocols.

Each registry is an `IntEnum` whose member names are the names that IANA's
"Transport Layer Security (TLS) Parameters" and "TLS ExtensionType Values"
registries give, or for SSL 2.0 the names of the SSL 2.0 draft
(draft-hickman-netscape-ssl-00). The decoders keep a value that no registry
here lists as a plain `int`, and `name_of` shows it as `unknown(0x....)`.
The one exception is the record content type: the record parser rejects
types outside 20-26, because such a byte means that the stream is not TLS
or has lost its record boundaries.
"""

from __future__ import annotations

import enum
from typing import Final

from pktscan.tls.suites import CipherSuite, SSLv2CipherKind, key_exchange_of

__all__ = [
    "VERSION_NAMES",
    "AlertDescription",
    "AlertLevel",
    "CertificateStatusType",
    "CipherSuite",
    "ClientCertificateType",
    "CompressionMethod",
    "ContentType",
    "ECCurveType",
    "ECPointFormat",
    "ExtensionType",
    "HandshakeType",
    "NamedGroup",
    "ProtocolVersion",
    "SSLv2CertificateType",
    "SSLv2CipherKind",
    "SSLv2ErrorCode",
    "SSLv2MessageType",
    "SignatureScheme",
    "key_exchange_of",
    "name_of",
    "version_name",
]


class ProtocolVersion(enum.IntEnum):
    """Protocol versions as they appear in version fields (RFC 8446 B.1)."""

    SSL_2_0 = 0x0002
    SSL_3_0 = 0x0300
    TLS_1_0 = 0x0301
    TLS_1_1 = 0x0302
    TLS_1_2 = 0x0303
    TLS_1_3 = 0x0304


VERSION_NAMES: Final[dict[int, str]] = {
    ProtocolVersion.SSL_2_0: "SSLv2",
    ProtocolVersion.SSL_3_0: "SSLv3",
    ProtocolVersion.TLS_1_0: "TLSv1.0",
    ProtocolVersion.TLS_1_1: "TLSv1.1",
    ProtocolVersion.TLS_1_2: "TLSv1.2",
    ProtocolVersion.TLS_1_3: "TLSv1.3",
}


class ContentType(enum.IntEnum):
    """TLS record content types (IANA TLS ContentType registry)."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23
    heartbeat = 24
    tls12_cid = 25
    ACK = 26


class HandshakeType(enum.IntEnum):
    """TLS handshake message types (IANA TLS HandshakeType registry)."""

    hello_request = 0
    client_hello = 1
    server_hello = 2
    hello_verify_request = 3
    new_session_ticket = 4
    end_of_early_data = 5
    hello_retry_request_RESERVED = 6
    encrypted_extensions = 8
    request_connection_id = 9
    new_connection_id = 10
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    client_certificate_request = 17
    finished = 20
    certificate_url = 21
    certificate_status = 22
    supplemental_data = 23
    key_update = 24
    compressed_certificate = 25
    ekt_key = 26
    message_hash = 254


class SSLv2MessageType(enum.IntEnum):
    """SSL 2.0 message types, named as the SSL 2.0 draft names them."""

    ERROR = 0
    CLIENT_HELLO = 1
    CLIENT_MASTER_KEY = 2
    CLIENT_FINISHED = 3
    SERVER_HELLO = 4
    SERVER_VERIFY = 5
    SERVER_FINISHED = 6
    REQUEST_CERTIFICATE = 7
    CLIENT_CERTIFICATE = 8


class SSLv2ErrorCode(enum.IntEnum):
    """Error codes of the SSL 2.0 ERROR message."""

    NO_CIPHER_ERROR = 0x0001
    NO_CERTIFICATE_ERROR = 0x0002
    BAD_CERTIFICATE_ERROR = 0x0004
    UNSUPPORTED_CERTIFICATE_TYPE_ERROR = 0x0006


class SSLv2CertificateType(enum.IntEnum):
    """Certificate types of the SSL 2.0 SERVER-HELLO message."""

    SSL_CT_X509_CERTIFICATE = 0x01


class AlertLevel(enum.IntEnum):
    """Alert levels (RFC 5246 7.2)."""

    warning = 1
    fatal = 2


class AlertDescription(enum.IntEnum):
    """Alert descriptions (IANA TLS Alerts registry)."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    decryption_failed_RESERVED = 21
    record_overflow = 22
    decompression_failure_RESERVED = 30
    handshake_failure = 40
    no_certificate_RESERVED = 41
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    too_many_cids_requested = 52
    export_restriction_RESERVED = 60
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    no_renegotiation_RESERVED = 100
    missing_extension = 109
    unsupported_extension = 110
    certificate_unobtainable_RESERVED = 111
    unrecognized_name = 112
    bad_certificate_status_response = 113
    bad_certificate_hash_value_RESERVED = 114
    unknown_psk_identity = 115
    certificate_required = 116
    general_error = 117
    no_application_protocol = 120
    ech_required = 121


class CompressionMethod(enum.IntEnum):
    """Compression methods (IANA TLS Compression Method Identifiers)."""

    null = 0
    DEFLATE = 1
    LZS = 64


class ExtensionType(enum.IntEnum):
    """Hello extension types (IANA TLS ExtensionType Values registry)."""

    server_name = 0
    max_fragment_length = 1
    client_certificate_url = 2
    trusted_ca_keys = 3
    truncated_hmac = 4
    status_request = 5
    user_mapping = 6
    client_authz = 7
    server_authz = 8
    cert_type = 9
    supported_groups = 10
    ec_point_formats = 11
    srp = 12
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    status_request_v2 = 17
    signed_certificate_timestamp = 18
    client_certificate_type = 19
    server_certificate_type = 20
    padding = 21
    encrypt_then_mac = 22
    extended_master_secret = 23
    token_binding = 24
    cached_info = 25
    tls_lts = 26
    compress_certificate = 27
    record_size_limit = 28
    pwd_protect = 29
    pwd_clear = 30
    password_salt = 31
    ticket_pinning = 32
    tls_cert_with_extern_psk = 33
    delegated_credential = 34
    session_ticket = 35
    TLMSP = 36
    TLMSP_proxying = 37
    TLMSP_delegate = 38
    supported_ekt_ciphers = 39
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    transparency_info = 52
    connection_id_deprecated = 53
    connection_id = 54
    external_id_hash = 55
    external_session_id = 56
    quic_transport_parameters = 57
    ticket_request = 58
    dnssec_chain = 59
    sequence_number_encryption_algorithms = 60
    rrc = 61
    ech_outer_extensions = 0xFD00
    encrypted_client_hello = 0xFE0D
    renegotiation_info = 0xFF01


class NamedGroup(enum.IntEnum):
    """Key exchange groups (IANA TLS Supported Groups registry)."""

    sect163k1 = 1
    sect163r1 = 2
    sect163r2 = 3
    sect193r1 = 4
    sect193r2 = 5
    sect233k1 = 6
    sect233r1 = 7
    sect239k1 = 8
    sect283k1 = 9
    sect283r1 = 10
    sect409k1 = 11
    sect409r1 = 12
    sect571k1 = 13
    sect571r1 = 14
    secp160k1 = 15
    secp160r1 = 16
    secp160r2 = 17
    secp192k1 = 18
    secp192r1 = 19
    secp224k1 = 20
    secp224r1 = 21
    secp256k1 = 22
    secp256r1 = 23
    secp384r1 = 24
    secp521r1 = 25
    brainpoolP256r1 = 26
    brainpoolP384r1 = 27
    brainpoolP512r1 = 28
    x25519 = 29
    x448 = 30
    brainpoolP256r1tls13 = 31
    brainpoolP384r1tls13 = 32
    brainpoolP512r1tls13 = 33
    ffdhe2048 = 256
    ffdhe3072 = 257
    ffdhe4096 = 258
    ffdhe6144 = 259
    ffdhe8192 = 260
    SecP256r1MLKEM768 = 0x11EB
    X25519MLKEM768 = 0x11EC
    SecP384r1MLKEM1024 = 0x11ED
    arbitrary_explicit_prime_curves = 0xFF01
    arbitrary_explicit_char2_curves = 0xFF02


class ECPointFormat(enum.IntEnum):
    """Elliptic curve point formats (IANA EC Point Format registry)."""

    uncompressed = 0
    ansiX962_compressed_prime = 1
    ansiX962_compressed_char2 = 2


class ECCurveType(enum.IntEnum):
    """Curve types of ServerECDHParams (IANA EC Curve Type registry)."""

    explicit_prime = 1
    explicit_char2 = 2
    named_curve = 3


class CertificateStatusType(enum.IntEnum):
    """Status types of status_request and CertificateStatus (RFC 6066 8)."""

    ocsp = 1
    ocsp_multi_RESERVED = 2


class ClientCertificateType(enum.IntEnum):
    """Certificate types of CertificateRequest (IANA registry)."""

    rsa_sign = 1
    dss_sign = 2
    rsa_fixed_dh = 3
    dss_fixed_dh = 4
    rsa_ephemeral_dh_RESERVED = 5
    dss_ephemeral_dh_RESERVED = 6
    fortezza_dms_RESERVED = 20
    ecdsa_sign = 64
    rsa_fixed_ecdh = 65
    ecdsa_fixed_ecdh = 66
    gost_sign256 = 67
    gost_sign512 = 68


class SignatureScheme(enum.IntEnum):
    """Signature schemes (IANA TLS SignatureScheme registry).

    In TLS 1.2 the same two bytes are a (HashAlgorithm, SignatureAlgorithm)
    pair (RFC 5246 7.4.1.4.1), so 0x0401 is sha256 with rsa.
    """

    rsa_pkcs1_sha1 = 0x0201
    dsa_sha1_RESERVED = 0x0202
    ecdsa_sha1 = 0x0203
    dsa_sha256_RESERVED = 0x0402
    rsa_pkcs1_sha256 = 0x0401
    ecdsa_secp256r1_sha256 = 0x0403
    rsa_pkcs1_sha384 = 0x0501
    dsa_sha384_RESERVED = 0x0502
    ecdsa_secp384r1_sha384 = 0x0503
    rsa_pkcs1_sha512 = 0x0601
    dsa_sha512_RESERVED = 0x0602
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806
    ed25519 = 0x0807
    ed448 = 0x0808
    rsa_pss_pss_sha256 = 0x0809
    rsa_pss_pss_sha384 = 0x080A
    rsa_pss_pss_sha512 = 0x080B
    ecdsa_brainpoolP256r1tls13_sha256 = 0x081A
    ecdsa_brainpoolP384r1tls13_sha384 = 0x081B
    ecdsa_brainpoolP512r1tls13_sha512 = 0x081C


def name_of(enum_cls: type[enum.IntEnum], value: int) -> str:
    """Return the registry name of `value`, or `unknown(0x....)`.

    SSL 2.0 cipher kinds are 3 bytes wide and shown with six hex digits;
    everything else with at least four.
    """
    try:
        return enum_cls(value).name
    except ValueError:
        digits = 6 if enum_cls is SSLv2CipherKind else 4
        return f"unknown(0x{value:0{digits}x})"


def version_name(version: int) -> str:
    """Return "SSLv2", "SSLv3", "TLSv1.0" .. "TLSv1.3", or `unknown(0x....)`."""
    name = VERSION_NAMES.get(version)
    if name is None:
        return f"unknown(0x{version:04x})"
    return name

"""Decoder of the ServerKeyExchange message (RFC 5246 7.4.3, RFC 8422 5.4).

The message carries no type field of its own: its layout follows from the
key exchange of the negotiated cipher suite, so the decoder takes the suite
and the negotiated version:

    DHE_*, DH_anon      ServerDHParams:   dh_p<1..2^16-1> | dh_g<1..2^16-1>
                                          | dh_Ys<1..2^16-1>
    ECDHE_*, ECDH_anon  ServerECDHParams: curve_type(1) | named_curve(2)
                                          | point<1..2^8-1>
    RSA_EXPORT          ServerRSAParams:  modulus<1..2^16-1>
                                          | exponent<1..2^16-1>

then, unless the suite is anonymous, the signature: in TLS 1.2 a
SignatureAndHashAlgorithm(2) before signature<0..2^16-1>, in earlier
versions the signature vector alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from pktscan.tls.constants import (
    ECCurveType,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
    key_exchange_of,
    name_of,
)
from pktscan.tls.messages import HandshakeMessage
from pktscan.tls.wire import ByteReader


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    """A decoded ServerKeyExchange; fields that do not apply are None.

    `kind` is "DHE", "ECDHE", "RSA_EXPORT", or "unknown" when the suite's
    key exchange does not define a ServerKeyExchange that this decoder
    reads (PSK, SRP, unknown suites), in which case only `raw` is set.
    An explicit curve (curve_type 1 or 2) leaves `named_group` and `point`
    None, and the remaining bytes undecoded.
    """

    offset: int
    kind: str
    raw: bytes
    dh_p: bytes | None = None
    dh_g: bytes | None = None
    dh_ys: bytes | None = None
    curve_type: int | None = None
    named_group: int | None = None
    point: bytes | None = None
    rsa_modulus: bytes | None = None
    rsa_exponent: bytes | None = None
    signature_algorithm: int | None = None
    signature: bytes | None = None

    @property
    def prime_bits(self) -> int | None:
        """Bit length of the DH prime p."""
        if self.dh_p is None:
            return None
        return int.from_bytes(self.dh_p, "big").bit_length()

    def summary(self) -> dict[str, object]:
        """Describe the key exchange as a small JSON-ready dict."""
        out: dict[str, object] = {"kind": self.kind}
        if self.kind == "DHE" and self.dh_p is not None and self.dh_g is not None:
            out["prime_bits"] = self.prime_bits
            out["generator"] = int.from_bytes(self.dh_g, "big")
        if self.named_group is not None:
            out["group"] = name_of(NamedGroup, self.named_group)
        elif self.curve_type is not None:
            out["curve_type"] = name_of(ECCurveType, self.curve_type)
        if self.rsa_modulus is not None:
            out["modulus_bits"] = int.from_bytes(self.rsa_modulus, "big").bit_length()
        if self.signature_algorithm is not None:
            out["signature_algorithm"] = name_of(
                SignatureScheme, self.signature_algorithm
            )
        return out


def _kind_of(cipher_suite: int) -> tuple[str, bool]:
    """Return (kind, anonymous) for the suite's key exchange."""
    key_exchange = key_exchange_of(cipher_suite) or ""
    anonymous = key_exchange.endswith("_anon")
    if key_exchange.startswith(("DHE_", "DH_anon")) and "PSK" not in key_exchange:
        return "DHE", anonymous
    if key_exchange.startswith(("ECDHE_", "ECDH_anon")) and "PSK" not in key_exchange:
        return "ECDHE", anonymous
    if key_exchange == "RSA_EXPORT":
        return "RSA_EXPORT", False
    return "unknown", False


def _read_signature(reader: ByteReader, version: int) -> dict[str, object]:
    fields: dict[str, object] = {}
    if version >= ProtocolVersion.TLS_1_2:
        fields["signature_algorithm"] = reader.uint(2, "SignatureAndHashAlgorithm")
    fields["signature"] = reader.vector(2, "signature")
    reader.expect_end("ServerKeyExchange signature")
    return fields


def _read_params(reader: ByteReader, kind: str) -> dict[str, object] | None:
    """Read the parameters; None for an explicit curve, left undecoded."""
    if kind == "DHE":
        return {
            "dh_p": reader.vector(2, "dh_p", minimum=1),
            "dh_g": reader.vector(2, "dh_g", minimum=1),
            "dh_ys": reader.vector(2, "dh_Ys", minimum=1),
        }
    if kind == "RSA_EXPORT":
        return {
            "rsa_modulus": reader.vector(2, "rsa_modulus", minimum=1),
            "rsa_exponent": reader.vector(2, "rsa_exponent", minimum=1),
        }
    curve_type = reader.uint(1, "curve_type")
    if curve_type != ECCurveType.named_curve:
        return None
    return {
        "curve_type": curve_type,
        "named_group": reader.uint(2, "namedcurve"),
        "point": reader.vector(1, "point", minimum=1),
    }


def decode_server_key_exchange(
    message: HandshakeMessage, cipher_suite: int, version: int
) -> ServerKeyExchange:
    """Decode a ServerKeyExchange sent for `cipher_suite` in `version`.

    Raises:
        PeerProtocolError: a length runs past the body, or bytes remain.
    """
    kind, anonymous = _kind_of(cipher_suite)
    raw = message.body
    if kind == "unknown":
        return ServerKeyExchange(message.offset, kind, raw)

    reader = message.reader()
    params = _read_params(reader, kind)
    if params is None:
        curve_type = message.body[0]
        return ServerKeyExchange(message.offset, kind, raw, curve_type=curve_type)
    if anonymous:
        reader.expect_end("ServerKeyExchange params")
        signature: dict[str, object] = {}
    else:
        signature = _read_signature(reader, version)
    return ServerKeyExchange(
        message.offset,
        kind,
        raw,
        **params,  # type: ignore[arg-type]
        **signature,  # type: ignore[arg-type]
    )

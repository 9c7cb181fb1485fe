"""Tests of the four protocol sets: exact bytes, sizes, scapy and classify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.handshake_sslv2 import SSLv2ClientHello as ScapySSLv2Hello
from scapy.layers.tls.record import TLS
from scapy.layers.tls.record_sslv2 import SSLv2
from tls_bytes import extension, handshake, hx, record, sslv2_record, u16, vec

from pktscan.tls.sets import (
    PROTOCOL_SETS,
    build_set_hello,
    classify_client_hello,
    protocol_set,
)

# A fixed random, for tests only: the drivers pass os.urandom(32).
RANDOM = bytes(range(32))

# Suites usable in SSL 3.0, as set 4 and the tail of every other set list them.
SSL3_SUITES_HEX = """
    0033 0039 0032 0038  DHE_RSA/DHE_DSS with AES_128/256_CBC_SHA
    002f 0035            RSA with AES_128/256_CBC_SHA
    0045 0088 0041 0084  CAMELLIA_128/256_CBC_SHA with DHE_RSA, RSA
    0096                 RSA_WITH_SEED_CBC_SHA
    0016 0013 000a       3DES_EDE_CBC_SHA with DHE_RSA, DHE_DSS, RSA
    0005 0004            RSA_WITH_RC4_128_SHA, RSA_WITH_RC4_128_MD5
    0007                 RSA_WITH_IDEA_CBC_SHA
    0015 0012 0009       DES_CBC_SHA with DHE_RSA, DHE_DSS, RSA
    0014 0011 0008       DHE_RSA, DHE_DSS, RSA EXPORT_WITH_DES40_CBC_SHA
    0006 0003            RSA_EXPORT_WITH_RC2_CBC_40_MD5, RSA_EXPORT_WITH_RC4_40_MD5
"""

# Elliptic-curve suites that TLS 1.0 adds in front of the SSL 3.0 ones.
TLS10_EXTRA_HEX = """
    c009 c013 c00a c014  ECDHE_ECDSA/ECDHE_RSA with AES_128/256_CBC_SHA
    c004 c00e c005 c00f  ECDH_ECDSA/ECDH_RSA with AES_128/256_CBC_SHA
    c008 c012            ECDHE_ECDSA/ECDHE_RSA with 3DES_EDE_CBC_SHA
    c007 c011            ECDHE_ECDSA/ECDHE_RSA with RC4_128_SHA
"""

# TLS 1.2 suites that set 3 adds in front of the TLS 1.0 ones.
TLS12_EXTRA_HEX = """
    c02b c02f c02c c030  ECDHE_ECDSA/ECDHE_RSA with AES_128/256_GCM
    cca9 cca8            ECDHE_ECDSA/ECDHE_RSA with CHACHA20_POLY1305
    009e 009f ccaa       DHE_RSA with AES_128/256_GCM, CHACHA20_POLY1305
    00a2 00a3            DHE_DSS with AES_128/256_GCM
    c0ac c0ad c09e c09f  ECDHE_ECDSA and DHE_RSA with AES_128/256_CCM
    c05c c060            ECDHE_ECDSA/ECDHE_RSA with ARIA_128_GCM
    c023 c027 c024 c028  ECDHE_ECDSA/ECDHE_RSA AES_128_CBC_SHA256, AES_256_CBC_SHA384
    c072 c076            ECDHE_ECDSA/ECDHE_RSA with CAMELLIA_128_CBC_SHA256
    0067 006b 0040 006a  DHE_RSA/DHE_DSS with AES_128/256_CBC_SHA256
    00be                 DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256
    c02d c031 c02e c032  ECDH_ECDSA/ECDH_RSA with AES_128/256_GCM
    009c 009d c09c c09d  RSA with AES_128/256_GCM and AES_128/256_CCM
    c050                 RSA_WITH_ARIA_128_GCM_SHA256
    003c 003d 00ba       RSA with AES_128/256_CBC_SHA256, CAMELLIA_128_CBC_SHA256
"""


def suites(text: str) -> bytes:
    """Decode the hex words of an annotated suite table, skipping the notes."""
    words = []
    for line in text.strip().splitlines():
        for word in line.split():
            if len(word) != 4 or not all(c in "0123456789abcdef" for c in word):
                break
            words.append(word)
    return hx(" ".join(words))


SCSV = hx("00ff")  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV
NULL_COMPRESSION = vec(1, hx("00"))

SET4_EXPECTED = record(
    0x16,  # handshake
    0x0300,  # record version SSL 3.0
    handshake(
        0x01,  # client_hello
        hx("0300"),  # client_version SSL 3.0
        RANDOM,
        vec(1),  # session_id: empty
        vec(2, suites(SSL3_SUITES_HEX), SCSV),
        NULL_COMPRESSION,
        # no extensions block at all
    ),
)


def as_specs(tls_suites: bytes) -> bytes:
    """Widen 2-byte TLS suites to 3-byte SSLv2 specs 0x00XXXX (RFC 5246 E.2)."""
    pairs = [tls_suites[i : i + 2] for i in range(0, len(tls_suites), 2)]
    return b"".join(b"\x00" + pair for pair in pairs)


SET1_EXPECTED = sslv2_record(
    hx("01"),  # msg_type CLIENT-HELLO
    hx("0301"),  # version TLS 1.0
    u16(3 * 45),  # cipher_spec_length: 37 TLS suites, 7 SSLv2 kinds, the SCSV
    u16(0),  # session_id_length
    u16(32),  # challenge_length
    as_specs(suites(TLS10_EXTRA_HEX) + suites(SSL3_SUITES_HEX)),
    hx("010080 0700c0 030080 050080"),  # SSL_CK_ RC4_128, DES_192_EDE3, RC2, IDEA
    hx("060040 020080 040080"),  # SSL_CK_ DES_64, RC4 and RC2 EXPORT40
    hx("0000ff"),  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV
    RANDOM,  # challenge
)

GROUPS_EXT = extension(
    0x000A,  # supported_groups
    vec(
        2,
        hx("001d 0017 0018 0019 001e"),  # x25519 P-256 P-384 P-521 x448
        hx("001a 001b 001c 0016"),  # brainpoolP256r1/384r1/512r1, secp256k1
    ),
)
POINT_FORMATS_EXT = extension(0x000B, vec(1, hx("00")))  # uncompressed
SIGNATURE_ALGORITHMS_EXT = extension(
    0x000D,  # signature_algorithms
    vec(
        2,
        hx("0403 0503 0603"),  # ecdsa_secp256r1_sha256 .. secp521r1_sha512
        hx("0807 0808"),  # ed25519, ed448
        hx("0804 0805 0806 0809 080a 080b"),  # rsa_pss_rsae_*, rsa_pss_pss_*
        hx("0401 0501 0601"),  # rsa_pkcs1_sha256/384/512
        hx("0203 0201 0402 0202"),  # ecdsa_sha1 rsa_pkcs1_sha1 dsa_sha256 dsa_sha1
    ),
)
TAIL_EXTS = b"".join(
    [
        extension(0xFF01, vec(1)),  # renegotiation_info, empty
        extension(0x0017),  # extended_master_secret
        extension(0x0023),  # session_ticket, empty
        extension(0x0005, hx("01"), vec(2), vec(2)),  # status_request: ocsp
    ]
)

SET2_EXPECTED = record(
    0x16,  # handshake
    0x0301,  # record version TLS 1.0
    handshake(
        0x01,  # client_hello
        hx("0301"),  # client_version TLS 1.0
        RANDOM,
        vec(1),  # session_id: empty
        vec(2, suites(TLS10_EXTRA_HEX), suites(SSL3_SUITES_HEX)),
        NULL_COMPRESSION,
        vec(2, GROUPS_EXT, POINT_FORMATS_EXT, TAIL_EXTS),
    ),
)

SNI = "www.example.test"
SNI_EXT = extension(
    0x0000,  # server_name
    vec(2, hx("00"), vec(2, SNI.encode())),  # one host_name entry
)


def set3_expected(padding_len: int) -> bytes:
    """Set 3 with SNI, padded by `padding_len` zero bytes of padding data."""
    return record(
        0x16,  # handshake
        0x0301,  # record version TLS 1.0
        handshake(
            0x01,  # client_hello
            hx("0303"),  # client_version TLS 1.2
            RANDOM,
            vec(1),  # session_id: empty
            vec(
                2,
                suites(TLS12_EXTRA_HEX),
                suites(TLS10_EXTRA_HEX),
                suites(SSL3_SUITES_HEX),
            ),
            NULL_COMPRESSION,
            vec(
                2,
                SNI_EXT,
                GROUPS_EXT,
                POINT_FORMATS_EXT,
                SIGNATURE_ALGORITHMS_EXT,
                TAIL_EXTS,
                extension(0x0015, bytes(padding_len)),  # padding
            ),
        ),
    )


def test_set1_exact_bytes() -> None:
    assert build_set_hello(1, RANDOM) == SET1_EXPECTED


def test_set1_ignores_sni() -> None:
    assert build_set_hello(1, RANDOM, SNI) == SET1_EXPECTED


def test_set2_exact_bytes() -> None:
    assert build_set_hello(2, RANDOM) == SET2_EXPECTED


def test_set3_exact_bytes_padded_to_512() -> None:
    data = build_set_hello(3, RANDOM, SNI)
    unpadded_len = len(set3_expected(0)) - 5 - 4  # minus record, padding headers
    assert data == set3_expected(512 - unpadded_len - 4)
    assert len(data) - 5 == 512


def test_set4_exact_bytes() -> None:
    assert build_set_hello(4, RANDOM) == SET4_EXPECTED


def test_set4_ignores_sni() -> None:
    assert build_set_hello(4, RANDOM, SNI) == SET4_EXPECTED


@pytest.mark.parametrize("set_number", [1, 2, 3, 4])
@pytest.mark.parametrize("sni_len", [None, *range(1, 250, 7)])
def test_hello_avoids_f5_lengths(set_number: int, sni_len: int | None) -> None:
    sni = None if sni_len is None else ".".join(["a" * 50] * 5)[:sni_len].strip(".")
    data = build_set_hello(set_number, RANDOM, sni or None)
    header_len = 2 if set_number == 1 else 5
    body_len = len(data) - header_len
    assert not 256 <= body_len <= 511
    if set_number in (1, 4):
        assert body_len < 256


def sni_of_length(length: int) -> str:
    """A valid host name of exactly `length` characters (at most 240)."""
    name = ("h" * 59 + ".")[:60] * 4
    name = name[:length]
    return name[:-1] + "x" if name.endswith(".") else name


@pytest.mark.parametrize("sni_len", range(204, 212))
def test_padding_near_512_not_empty(sni_len: int) -> None:
    # Set 3 without padding is 302 + len(SNI) bytes, so these names bring it
    # to 506-513 bytes; 509-511 need the shortest padding, which has 1 byte.
    data = build_set_hello(3, RANDOM, sni_of_length(sni_len))
    body_len = len(data) - 5
    unpadded_len = 302 + sni_len
    if unpadded_len < 512:
        assert body_len >= 512
        padding_data_len = body_len - unpadded_len - 4
        assert padding_data_len >= 1
        assert data[-padding_data_len - 4 : -padding_data_len - 2] == hx("0015")
    else:
        assert body_len == unpadded_len


def test_protocol_sets_table() -> None:
    rows = [
        (s.number, s.hello_format, s.record_version, s.client_version)
        for s in PROTOCOL_SETS
    ]
    assert rows == [
        (1, "sslv2", 0x0002, 0x0301),
        (2, "tls", 0x0301, 0x0301),
        (3, "tls", 0x0301, 0x0303),
        (4, "tls", 0x0300, 0x0300),
    ]
    assert [s.versions for s in PROTOCOL_SETS] == [
        (0x0301, 0x0300, 0x0002),
        (0x0301, 0x0300),
        (0x0303, 0x0302, 0x0301),
        (0x0300,),
    ]


@pytest.mark.parametrize("bad", [0, 5, -1])
def test_unknown_set_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match=f"protocol set {bad} does not exist"):
        build_set_hello(bad, RANDOM)
    with pytest.raises(ValueError, match="does not exist"):
        protocol_set(bad)


@pytest.mark.parametrize("random", [b"", bytes(31), bytes(33)])
def test_random_must_be_32_bytes(random: bytes) -> None:
    with pytest.raises(ValueError, match=f"got {len(random)}"):
        build_set_hello(2, random)


def test_random_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="random must be bytes"):
        build_set_hello(2, "x" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sni", "message"),
    [
        ("192.0.2.1", "is an IP address"),
        ("2001:db8::1", "is an IP address"),
        ("a" * 64 + ".test", "is invalid"),
        ("", "must be 1-255 bytes"),
    ],
)
def test_invalid_sni_rejected(sni: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_set_hello(3, RANDOM, sni)


def test_sni_trailing_dot_dropped() -> None:
    assert build_set_hello(3, RANDOM, SNI + ".") == build_set_hello(3, RANDOM, SNI)


# Cross-checks with scapy's own TLS dissector (scapy.layers.tls).


@pytest.mark.parametrize("set_number", [2, 3, 4])
def test_scapy_dissects_tls_sets(set_number: int) -> None:
    chosen = protocol_set(set_number)
    data = build_set_hello(set_number, RANDOM, SNI)
    packet = TLS(data)
    hello = packet.msg[0]
    assert isinstance(hello, TLSClientHello)
    assert packet.type == 22
    assert packet.version == chosen.record_version
    assert packet.len == len(data) - 5
    assert hello.msglen == len(data) - 9
    assert hello.version == chosen.client_version
    assert hello.gmt_unix_time.to_bytes(4, "big") + hello.random_bytes == RANDOM
    assert hello.sidlen == 0
    assert hello.cipherslen == 2 * len(hello.ciphers)
    assert hello.comp == [0]
    offset = 5 + 4 + 2 + 32 + 1 + 2
    wire_suites = [
        int.from_bytes(data[offset + 2 * i : offset + 2 * i + 2], "big")
        for i in range(len(hello.ciphers))
    ]
    assert hello.ciphers == wire_suites
    assert 0x5600 not in hello.ciphers  # no TLS_FALLBACK_SCSV


def test_scapy_dissects_set3_extensions() -> None:
    hello = TLS(build_set_hello(3, RANDOM, SNI)).msg[0]
    by_type = {ext.type: ext for ext in hello.ext}
    assert list(by_type) == [0, 10, 11, 13, 0xFF01, 23, 35, 5, 21]
    assert by_type[0].servernames[0].servername == SNI.encode()
    assert by_type[10].groups == [29, 23, 24, 25, 30, 26, 27, 28, 22]
    assert by_type[11].ecpl == [0]
    assert 0x0503 in by_type[13].sig_algs  # ecdsa_secp384r1_sha384
    assert 0x0501 in by_type[13].sig_algs  # rsa_pkcs1_sha384
    assert 0x0805 in by_type[13].sig_algs  # rsa_pss_rsae_sha384
    assert by_type[0xFF01].renegotiated_connection == b""
    assert by_type[5].stype == 1
    assert set(by_type[21].padding) == {0}
    assert hello.extlen == sum(4 + ext.len for ext in hello.ext)


def test_scapy_dissects_set2_without_sig_algs() -> None:
    hello = TLS(build_set_hello(2, RANDOM)).msg[0]
    assert [ext.type for ext in hello.ext] == [10, 11, 0xFF01, 23, 35, 5]


def test_scapy_dissects_set4_without_extensions() -> None:
    hello = TLS(build_set_hello(4, RANDOM)).msg[0]
    assert hello.ext is None or hello.ext == []
    assert hello.ciphers[-1] == 0x00FF


def test_scapy_dissects_set1() -> None:
    data = build_set_hello(1, RANDOM)
    packet = SSLv2(data)
    hello = packet.msg[0]
    assert isinstance(hello, ScapySSLv2Hello)
    assert packet.len == len(data) - 2
    assert hello.version == 0x0301
    assert hello.cipherslen == 3 * 45
    assert hello.sidlen == 0
    assert hello.challengelen == 32
    assert hello.challenge == RANDOM
    assert hello.ciphers[:2] == [0x00C009, 0x00C013]
    assert 0x010080 in hello.ciphers  # SSL_CK_RC4_128_WITH_MD5
    assert 0x0700C0 in hello.ciphers  # SSL_CK_DES_192_EDE3_CBC_WITH_MD5
    assert hello.ciphers[-1] == 0x0000FF


# classify_client_hello


@pytest.mark.parametrize("set_number", [1, 2, 3, 4])
@pytest.mark.parametrize("sni", [None, SNI])
def test_classify_round_trip(set_number: int, sni: str | None) -> None:
    data = build_set_hello(set_number, bytes(reversed(RANDOM)), sni)
    assert classify_client_hello(data) == set_number
    for cut in (11, 12, 40, 60, len(data) - 1):
        assert classify_client_hello(data[:cut]) == set_number


@pytest.mark.parametrize(
    "data",
    [
        b"",
        hx("16 03 01 00"),  # too short to tell
        b"GET / HTTP/1.1\r\n\r\n",
        hx("16 03 01 00 05 01 00 00 01 03 04"),  # client_version TLS 1.3
        hx("16 03 03 00 05 01 00 00 01 03 03"),  # record version 0x0303
    ],
)
def test_classify_foreign_hellos(data: bytes) -> None:
    assert classify_client_hello(data) is None


def test_classify_other_suite_list() -> None:
    data = bytearray(build_set_hello(3, RANDOM))
    data[47] ^= 0x01  # second byte of the first cipher suite
    assert classify_client_hello(bytes(data)) is None


def test_classify_recorded_hellos() -> None:
    flights = Path(__file__).parent / "flights"
    manifest = json.loads((flights / "manifest.json").read_text())
    for entry in manifest:
        data = (flights / f"{entry['name']}.hello.bin").read_bytes()
        expected = entry["set"] if isinstance(entry["set"], int) else None
        assert classify_client_hello(data) == expected, entry["name"]

"""What real networks send: each case live through the kernel engine, and on bytes.

Every case runs against a server on 127.0.0.1 through `run_attempt`,
`grab_tls` or `record_attempt`, and on the bytes alone through
`HandshakeReader`, fed whole, byte by byte and split at every offset.
Real servers produce the reply wherever one can: openssl s_server for
client certificate requests, anonymous DH, SNI alerts, the alert to an
SSLv2-format hello and OCSP stapling, and nginx for the HTTP 400 page.
Their replies are also recorded under flights/ (see real-networks.json).
The ScriptedServer is used only for replies that no server here sends
on demand: a malformed certificate, a banner, a flight cut off, or split
at chosen offsets. Its bytes are recorded flights, cut or rearranged, or
built field by field.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from scripted_server import AwaitClose, Close, Receive, ScriptedServer, Send, segments
from tls_bytes import handshake, record, vec

from pktscan.grab.explain import hint_for
from pktscan.grab.kernel import AttemptResult, grab_tls, run_attempt
from pktscan.grab.transcript import AttemptTranscript, record_attempt
from pktscan.results import TlsResult
from pktscan.tls import events as ev
from pktscan.tls.client import HandshakeOutcome, HandshakeReader
from pktscan.tls.sets import protocol_set

FLIGHTS = Path(__file__).parent / "flights"
REAL_FLIGHTS = {
    entry["name"]: entry
    for entry in json.loads((FLIGHTS / "real-networks.json").read_text())
}
LOOPBACK = "127.0.0.1"
TIMEOUT_S = 5.0
SHORT_TIMEOUT_S = 1.0
LEAF_SNI = "rsa.flights.pktscan.test"
OTHER_SNI = "other.flights.pktscan.test"
MODERN = ("-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3")
HANDSHAKE = 22
TLS12 = 0x0303
CERTIFICATE = 11
SERVER_HELLO_DONE = 14
ALERT_WARNING, ALERT_FATAL = 1, 2
HANDSHAKE_FAILURE, UNRECOGNIZED_NAME, PROTOCOL_VERSION = 40, 112, 70
# Replies longer than this are cut every CUT_STEP bytes, not at every offset.
EVERY_OFFSET_MAX_LEN = 2500
CUT_STEP = 97

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl not installed"
)


def _load_recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "record_flights", FLIGHTS / "record_flights.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recorder = _load_recorder()


def pem_der(name: str) -> bytes:
    cert = x509.load_pem_x509_certificate((FLIGHTS / name).read_bytes())
    return cert.public_bytes(Encoding.DER)


LEAF_DER = pem_der("rsa-leaf.pem")
CA_DER = pem_der("ca.pem")
LEAF_SHA256 = hashlib.sha256(LEAF_DER).hexdigest()


def flight_bytes(name: str) -> bytes:
    return (FLIGHTS / f"{name}.bin").read_bytes()


def split_records(data: bytes) -> list[bytes]:
    """Cut TLS records apart by their 5-byte headers."""
    records = []
    position = 0
    while position < len(data):
        length = int.from_bytes(data[position + 3 : position + 5], "big")
        records.append(data[position : position + 5 + length])
        position += 5 + length
    return records


def deliveries(data: bytes) -> Iterator[list[bytes]]:
    """Deliver `data` whole, byte by byte, and cut in two at every offset.

    Replies longer than EVERY_OFFSET_MAX_LEN are cut every CUT_STEP bytes
    instead, to keep the test fast.
    """
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    step = 1 if len(data) <= EVERY_OFFSET_MAX_LEN else CUT_STEP
    for cut in range(1, len(data), step):
        yield [data[:cut], data[cut:]]


def read(
    hello_format: str, chunks: list[bytes], reason: str = "eof"
) -> HandshakeOutcome:
    reader = HandshakeReader(hello_format)  # type: ignore[arg-type]
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish(reason)  # type: ignore[arg-type]


def read_every_way(hello_format: str, data: bytes) -> HandshakeOutcome:
    """Read `data` delivered every way; assert that the outcomes agree."""
    whole = read(hello_format, [data])
    for chunks in deliveries(data):
        outcome = read(hello_format, chunks)
        assert outcome.outcome == whole.outcome, [len(c) for c in chunks]
        assert outcome.chain == whole.chain, [len(c) for c in chunks]
        assert outcome.alert_name == whole.alert_name, [len(c) for c in chunks]
    return whole


def attempt(
    port: int, set_number: int, sni: str | None = LEAF_SNI, timeout: float = TIMEOUT_S
) -> AttemptResult:
    return asyncio.run(
        run_attempt(LOOPBACK, port, protocol_set(set_number), sni=sni, timeout=timeout)
    )


def recorded_attempt(
    port: int, set_number: int, sni: str | None = LEAF_SNI
) -> AttemptTranscript:
    return asyncio.run(
        record_attempt(
            LOOPBACK, port, protocol_set(set_number), sni=sni, timeout=TIMEOUT_S
        )
    )


def ladder(port: int, sni: str | None = LEAF_SNI) -> TlsResult:
    return asyncio.run(grab_tls(LOOPBACK, port, sni=sni, timeout=TIMEOUT_S))


@contextmanager
def openssl_server(*options: str, cert: str = "rsa") -> Iterator[int]:
    """Run openssl s_server on a free loopback port for several connections."""
    port = recorder._free_port()
    command = list(recorder.openssl(port, cert, *options))
    command[command.index("-naccept") + 1] = "8"
    with recorder.running(command, port):
        yield port


def event_types(outcome: HandshakeOutcome) -> list[str]:
    return [type(event).__name__ for event in outcome.events]


# The reusable parts of a recorded TLS 1.2 flight from openssl.
ECDHE_RECORDS = split_records(flight_bytes("openssl-tls12-ecdhe-rsa"))
SERVER_HELLO_RECORD, _, KEY_EXCHANGE_RECORD, HELLO_DONE_RECORD = ECDHE_RECORDS


def certificate_record(*ders: bytes) -> bytes:
    """A Certificate message of `ders` in one TLS 1.2 record."""
    entries = [vec(3, der) for der in ders]
    return record(HANDSHAKE, TLS12, handshake(CERTIFICATE, vec(3, *entries)))


# A server that asks for a client certificate


@needs_openssl
def test_client_cert_request_live() -> None:
    with openssl_server(*MODERN, "-Verify", "1") as port:
        result = attempt(port, 3)
    assert result.outcome is not None
    assert result.outcome.outcome == "certificate"
    assert "CertificateRequestReceived" in event_types(result.outcome)
    assert hashlib.sha256(result.outcome.chain[0]).hexdigest() == LEAF_SHA256


def test_client_cert_request_recorded() -> None:
    data = flight_bytes("openssl-client-cert-request")
    outcome = read_every_way("tls", data)
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF_DER, CA_DER)
    assert event_types(outcome) == [
        "ServerHelloReceived",
        "CertificateReceived",
        "ServerKeyExchangeReceived",
        "CertificateRequestReceived",
        "ServerHelloDoneReceived",
    ]
    # The server's alert to our empty client Certificate follows the flight.
    assert split_records(data)[-1] == record(21, TLS12, bytes([2, HANDSHAKE_FAILURE]))


def client_cert_then_alert() -> bytes:
    """The recorded -Verify flight without ServerHelloDone, then its alert.

    This is a server that aborts as soon as it has asked for a client
    certificate, before its flight is complete.
    """
    records = split_records(flight_bytes("openssl-client-cert-request"))
    done_index = next(
        i for i, r in enumerate(records) if r[5] == SERVER_HELLO_DONE and len(r) == 9
    )
    return b"".join(records[:done_index] + records[done_index + 1 :])


def test_client_cert_then_alert_reader() -> None:
    outcome = read_every_way("tls", client_cert_then_alert())
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF_DER, CA_DER)
    assert outcome.alert_name == "handshake_failure"
    assert event_types(outcome)[-2:] == [
        "CertificateRequestReceived",
        "AlertReceived",
    ]


def test_client_cert_then_alert_live() -> None:
    steps = [Receive(), Send(client_cert_then_alert()), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = ladder(server.port)
    assert result.set_number == 1
    assert [c.sha256 for c in result.chain] == [
        LEAF_SHA256,
        hashlib.sha256(CA_DER).hexdigest(),
    ]
    assert result.attempts[0].outcome == "certificate"
    assert result.attempts[0].alert == "handshake_failure"


# Anonymous DH: no Certificate message


def test_anon_dh_recorded() -> None:
    outcome = read_every_way("tls", flight_bytes("openssl-anon-dh"))
    assert outcome.outcome == "no_certificate"
    assert outcome.cipher_name == "TLS_DH_anon_WITH_AES_128_CBC_SHA"
    assert outcome.chain == ()
    assert outcome.error is None
    assert outcome.key_exchange == {"kind": "DHE", "prime_bits": 1024, "generator": 2}
    assert "CertificateReceived" not in event_types(outcome)


def test_anon_dh_replayed_live() -> None:
    steps = [Receive(), Send(flight_bytes("openssl-anon-dh")), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = attempt(server.port, 3)
    assert result.record.outcome == "no_certificate"
    assert result.record.cipher == "TLS_DH_anon_WITH_AES_128_CBC_SHA"
    assert result.record.detail is None


@needs_openssl
def test_anon_only_server_hint_live() -> None:
    options = ("-cipher", "ADH-AES128-SHA:@SECLEVEL=0", "-no_tls1_3", "-nocert")
    with openssl_server(*options) as port:
        transcript = recorded_attempt(port, 3)
    assert transcript.record.outcome == "alert"
    assert transcript.record.alert == "handshake_failure"
    hint = hint_for(transcript)
    assert hint is not None
    assert hint.startswith("handshake_failure: usually no common cipher suite")


# One certificate in the chain that is not valid X.509


TRUNCATED_CA = CA_DER[: len(CA_DER) // 2]


def bad_chain_flight() -> bytes:
    return b"".join(
        [
            SERVER_HELLO_RECORD,
            certificate_record(LEAF_DER, TRUNCATED_CA),
            KEY_EXCHANGE_RECORD,
            HELLO_DONE_RECORD,
        ]
    )


def test_bad_certificate_reader() -> None:
    outcome = read_every_way("tls", bad_chain_flight())
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF_DER, TRUNCATED_CA)


def test_bad_certificate_kept_raw_live() -> None:
    steps = [Receive(), Send(bad_chain_flight()), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = ladder(server.port)
    assert result.set_number == 1
    leaf, bad = result.chain
    assert leaf.sha256 == LEAF_SHA256
    assert leaf.subject == "CN=rsa.flights.pktscan.test"
    assert leaf.error is None
    assert bad.der == TRUNCATED_CA
    assert bad.sha256 == hashlib.sha256(TRUNCATED_CA).hexdigest()
    assert bad.subject is None
    assert bad.error is not None
    assert bad.error.startswith(f"invalid X.509 DER ({len(TRUNCATED_CA)} bytes)")


# Warning alerts


def sni_options(*ciphers: str) -> tuple[str, ...]:
    return (
        *ciphers,
        "-no_tls1_3",
        "-servername",
        LEAF_SNI,
        "-cert2",
        str(FLIGHTS / "ecdsa-leaf.pem"),
        "-key2",
        str(FLIGHTS / "ecdsa-leaf.key"),
    )


def assert_warning_first(outcome: HandshakeOutcome) -> None:
    first = outcome.events[0]
    assert isinstance(first, ev.AlertReceived)
    assert first.level == ALERT_WARNING
    assert first.description == UNRECOGNIZED_NAME


def test_warning_before_server_hello_recorded() -> None:
    outcome = read_every_way("tls", flight_bytes("openssl-sni-warning"))
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF_DER, CA_DER)
    assert_warning_first(outcome)
    assert event_types(outcome)[1] == "ServerHelloReceived"


@needs_openssl
def test_warning_before_server_hello_live() -> None:
    options = sni_options("-cipher", "DEFAULT:@SECLEVEL=0")
    with openssl_server(*options) as port:
        result = attempt(port, 3, sni=OTHER_SNI)
    assert result.outcome is not None
    assert result.outcome.outcome == "certificate"
    assert_warning_first(result.outcome)
    assert result.outcome.chain[0] == LEAF_DER


def test_warning_then_fatal_recorded() -> None:
    outcome = read_every_way("tls", flight_bytes("openssl-sni-warning-then-fatal"))
    assert outcome.outcome == "alert"
    assert outcome.alert_level == ALERT_FATAL
    assert outcome.alert_name == "handshake_failure"
    assert_warning_first(outcome)
    assert len(outcome.events) == 2


@needs_openssl
def test_warning_then_fatal_live() -> None:
    options = sni_options("-cipher", "aNULL:@SECLEVEL=0")
    with openssl_server(*options) as port:
        transcript = recorded_attempt(port, 3, sni=OTHER_SNI)
    assert transcript.outcome is not None
    assert transcript.outcome.outcome == "alert"
    assert transcript.outcome.alert_name == "handshake_failure"
    assert_warning_first(transcript.outcome)
    hint = hint_for(transcript)
    assert hint is not None
    assert hint.startswith("handshake_failure")


# Replies that are not TLS


def test_http_400_recorded_not_sslv2() -> None:
    outcome = read_every_way("sslv2", flight_bytes("nginx-http-400"))
    assert outcome.outcome == "non_tls"
    assert outcome.first_bytes.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert outcome.version is None
    assert outcome.chain == ()


@contextmanager
def nginx_http_server() -> Iterator[int]:
    port = recorder._free_port()
    with tempfile.TemporaryDirectory() as prefix:
        command = recorder.nginx_http(port, Path(prefix))
        with recorder.running(command, port):
            yield port


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_http_400_ladder_live() -> None:
    with nginx_http_server() as port:
        result = ladder(port)
    assert [a.outcome for a in result.attempts] == ["non_tls"] * 4
    for attempt_record in result.attempts:
        assert attempt_record.detail is not None
        assert bytes.fromhex(attempt_record.detail).startswith(b"HTTP/1.1 400")
        assert attempt_record.version is None
    assert result.set_number is None
    assert result.chain == []


@pytest.mark.parametrize(
    "banner",
    [
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        b"220 mail.example.test ESMTP Postfix\r\n",
    ],
    ids=["ssh", "smtp"],
)
def test_banner_is_non_tls(banner: bytes) -> None:
    steps = [Receive(), Send(banner), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = attempt(server.port, 1)
    assert result.outcome is not None
    assert result.outcome.outcome == "non_tls"
    assert result.outcome.first_bytes == banner
    assert result.record.detail == banner.hex()
    assert read_every_way("sslv2", banner).outcome == "non_tls"


# A TLS alert in answer to the SSLv2-format hello


def test_alert_to_sslv2_hello_recorded() -> None:
    data = flight_bytes("openssl-tls12-only-sslv2-hello")
    outcome = read_every_way("sslv2", data)
    assert outcome.outcome == "alert"
    assert outcome.alert_name == "protocol_version"
    assert data == record(21, 0x0301, bytes([ALERT_FATAL, PROTOCOL_VERSION]))


@needs_openssl
def test_alert_to_sslv2_hello_live() -> None:
    with openssl_server("-cipher", "DEFAULT:@SECLEVEL=0", "-tls1_2") as port:
        transcript = recorded_attempt(port, 1)
    assert transcript.record.outcome == "alert"
    assert transcript.record.alert == "protocol_version"
    hint = hint_for(transcript)
    assert hint is not None
    assert hint.startswith("protocol_version: the server supports none of")


# Segmentation


SSLV2_FLIGHT = flight_bytes("scapy-sslv2")


def test_sslv2_server_hello_split_reader() -> None:
    outcome = read_every_way("sslv2", SSLV2_FLIGHT)
    assert outcome.outcome == "certificate"
    assert outcome.version_name == "SSLv2"
    assert outcome.chain == (LEAF_DER,)


def test_sslv2_server_hello_split_live() -> None:
    steps = [Receive(), *segments(SSLV2_FLIGHT, 50, 0.01), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = attempt(server.port, 1)
    assert result.outcome is not None
    assert result.outcome.outcome == "certificate"
    assert result.outcome.version_name == "SSLv2"
    assert result.outcome.chain == (LEAF_DER,)


# A Certificate record of about 6 KB: the leaf and the CA sent 8 times over,
# as misconfigured servers repeat intermediates.
BIG_CHAIN = (LEAF_DER, *([CA_DER] * 8))
BIG_RECORD = certificate_record(*BIG_CHAIN)
# Cut inside the ServerKeyExchange record, so that a segment starts mid-record.
KEY_EXCHANGE_CUT = 100


def big_record_steps() -> list[Send]:
    rest = KEY_EXCHANGE_RECORD + HELLO_DONE_RECORD
    return [
        Send(SERVER_HELLO_RECORD + BIG_RECORD, 0.01),
        Send(rest[:KEY_EXCHANGE_CUT], 0.01),
        Send(rest[KEY_EXCHANGE_CUT:]),
    ]


def test_big_record_size() -> None:
    assert 6000 <= len(BIG_RECORD) <= 7000


def test_big_record_reader() -> None:
    chunks = [step.data for step in big_record_steps()]
    assert read("tls", chunks).chain == BIG_CHAIN
    outcome = read_every_way("tls", b"".join(chunks))
    assert outcome.outcome == "certificate"
    assert outcome.chain == BIG_CHAIN
    assert outcome.key_exchange is not None
    assert outcome.key_exchange["group"] == "x25519"


def test_big_record_live() -> None:
    with ScriptedServer([Receive(), *big_record_steps(), AwaitClose()]) as server:
        transcript = recorded_attempt(server.port, 3)
    assert transcript.outcome is not None
    assert transcript.outcome.outcome == "certificate"
    assert transcript.outcome.chain == BIG_CHAIN
    assert transcript.outcome.key_exchange is not None
    assert transcript.outcome.key_exchange["group"] == "x25519"
    received = b"".join(chunk.data for chunk in transcript.chunks)
    assert received == b"".join(step.data for step in big_record_steps())


# A flight that stops part-way through a message


TRUNCATED_FLIGHT = SERVER_HELLO_RECORD + BIG_RECORD[:300]


def test_truncated_every_cut_reader() -> None:
    complete = SERVER_HELLO_RECORD + BIG_RECORD
    for cut in range(1, len(complete), 7):
        outcome = read("tls", [complete[:cut]], "eof")
        assert outcome.outcome == "truncated", cut
        assert outcome.chain == (), cut


def test_truncated_then_close_live() -> None:
    steps = [Receive(), Send(TRUNCATED_FLIGHT), Close()]
    with ScriptedServer(steps) as server:
        transcript = recorded_attempt(server.port, 3)
    assert transcript.stop_reason == "eof"
    assert transcript.record.outcome == "truncated"
    assert transcript.record.version == "TLSv1.2"  # the ServerHello was complete
    assert transcript.outcome is not None
    assert transcript.outcome.chain == ()


def test_truncated_then_silence_live() -> None:
    steps = [Receive(), Send(TRUNCATED_FLIGHT), AwaitClose()]
    with ScriptedServer(steps) as server:
        result = attempt(server.port, 3, timeout=SHORT_TIMEOUT_S)
    assert result.record.outcome == "truncated"
    assert result.outcome is not None
    assert result.outcome.chain == ()


def test_truncated_then_silence_stops_at_timeout() -> None:
    steps = [Receive(), Send(TRUNCATED_FLIGHT), AwaitClose()]
    with ScriptedServer(steps) as server:
        transcript = asyncio.run(
            record_attempt(
                LOOPBACK,
                server.port,
                protocol_set(3),
                sni=None,
                timeout=SHORT_TIMEOUT_S,
            )
        )
    assert transcript.stop_reason == "timeout"
    assert transcript.record.outcome == "truncated"
    received = b"".join(chunk.data for chunk in transcript.chunks)
    assert received == TRUNCATED_FLIGHT


# CertificateStatus between Certificate and ServerKeyExchange

OCSP_EVENTS = [
    "ServerHelloReceived",
    "CertificateReceived",
    "CertificateStatusReceived",
    "ServerKeyExchangeReceived",
    "ServerHelloDoneReceived",
]


def assert_stapled(outcome: HandshakeOutcome) -> None:
    assert outcome.outcome == "certificate"
    assert event_types(outcome) == OCSP_EVENTS
    status = outcome.events[2]
    assert isinstance(status, ev.CertificateStatusReceived)
    assert status.status.status_type == 1  # ocsp
    assert status.status.response == (FLIGHTS / "ocsp-response.der").read_bytes()


def test_ocsp_stapling_recorded() -> None:
    assert_stapled(read_every_way("tls", flight_bytes("openssl-ocsp-stapling")))


@needs_openssl
def test_ocsp_stapling_live() -> None:
    status_file = str(FLIGHTS / "ocsp-response.der")
    with openssl_server(*MODERN, "-status_file", status_file) as port:
        result = attempt(port, 3)
    assert result.outcome is not None
    assert_stapled(result.outcome)


def test_real_network_manifest() -> None:
    assert sorted(REAL_FLIGHTS) == sorted(
        [
            "nginx-http-400",
            "openssl-anon-dh",
            "openssl-client-cert-request",
            "openssl-ocsp-stapling",
            "openssl-sni-warning",
            "openssl-sni-warning-then-fatal",
            "openssl-tls12-only-sslv2-hello",
        ]
    )

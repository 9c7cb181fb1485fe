"""Coverage-guided fuzzing of the TLS codec with atheris (libFuzzer).

Invariant: on any input, `HandshakeReader.feed` and `finish` return and
never raise, and the record parser, message decoders and hello dissector
return or raise `PeerProtocolError`, nothing else. Any other exception is a
crash that libFuzzer reports with the input that caused it.

Run through scripts/fuzz-tls, which bounds the time. The first input byte
picks the target; the rest is the data, cut into chunks for the reader.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from pktscan.errors import PeerProtocolError
    from pktscan.tls.client import HandshakeReader
    from pktscan.tls.explain import describe_hello
    from pktscan.tls.keyexchange import decode_server_key_exchange
    from pktscan.tls.messages import (
        HandshakeMessage,
        decode_certificate,
        decode_certificate_request,
        decode_server_hello,
    )
    from pktscan.tls.record import parse_records
    from pktscan.tls.sslv2 import decode_sslv2_server_hello

FLIGHTS = Path(__file__).resolve().parent / "flights"
TARGET_COUNT = 6
REASONS = ("eof", "reset", "timeout", None)


def _reader(provider: atheris.FuzzedDataProvider) -> None:
    hello_format = "sslv2" if provider.ConsumeBool() else "tls"
    reader = HandshakeReader(hello_format)
    for _ in range(provider.ConsumeIntInRange(1, 16)):
        reader.feed(provider.ConsumeBytes(provider.ConsumeIntInRange(0, 4096)))
    reader.finish(REASONS[provider.ConsumeIntInRange(0, len(REASONS) - 1)])


def _decoders(target: int, data: bytes) -> None:
    message = HandshakeMessage(0, 0, data, ((0, 4),))
    if target == 1:
        parse_records(data)
    elif target == 2:
        decode_server_hello(message)
        decode_certificate(message)
    elif target == 3:
        decode_server_key_exchange(
            message, data[0] << 8 | data[1] if len(data) > 1 else 0xC02F, 0x0303
        )
        decode_certificate_request(message, 0x0303)
    elif target == 4:
        decode_sslv2_server_hello(data, 0)
    else:
        describe_hello(data)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    target = provider.ConsumeIntInRange(0, TARGET_COUNT - 1)
    if target == 0:
        _reader(provider)
        return
    with contextlib.suppress(PeerProtocolError):
        _decoders(target, provider.ConsumeBytes(len(data)))


def seed_corpus(directory: Path) -> None:
    """Write the recorded flights and hellos as starting inputs."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(FLIGHTS.glob("*.bin")):
        (directory / path.name).write_bytes(b"\x00\x00" + path.read_bytes())


if __name__ == "__main__":
    corpus = Path(sys.argv[1])
    seed_corpus(corpus)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

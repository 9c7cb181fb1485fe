"""The TLS wire codec: hellos out, server records and messages in.

Sans-IO throughout: no sockets, clocks, random source or logging. The
drivers pass the 32-byte hello random and the bytes the server sends.

Entry points:

- `build_set_hello(set_number, random, sni)`: the bytes of one attempt's
  ClientHello, for protocol sets 1-4 (`PROTOCOL_SETS`);
- `classify_client_hello(data)`: which set produced a captured hello;
- `HandshakeReader(hello_format)`: events and a `HandshakeOutcome` from the
  server's reply;
- `describe_hello(data)` and `render_hello(data, fmt)`: the field-by-field
  view of `pktscan hello`.
"""

from pktscan.tls.client import HandshakeOutcome, HandshakeReader
from pktscan.tls.events import Event
from pktscan.tls.explain import Field, describe_hello, render_hello
from pktscan.tls.sets import (
    PROTOCOL_SETS,
    ProtocolSet,
    build_set_hello,
    classify_client_hello,
    protocol_set,
)

__all__ = [
    "PROTOCOL_SETS",
    "Event",
    "Field",
    "HandshakeOutcome",
    "HandshakeReader",
    "ProtocolSet",
    "build_set_hello",
    "classify_client_hello",
    "describe_hello",
    "protocol_set",
    "render_hello",
]

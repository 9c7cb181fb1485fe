"""The raw handshake engine: the attempt ladder, one raw pass per attempt.

The kernel engine probes a port with a SYN and then connects again for each
attempt. In the raw engine the first attempt is the probe: its SYN finds the
port open, closed or filtered. On an open port the ClientHello goes out with
the ACK of the SYN/ACK. The wire shows, per attempt::

    SYN  ->  SYN/ACK  <-  ACK+ClientHello  ->  server flight  <-  RST  ->

A follow-up attempt (protocol sets 2 to 4) is a new connection from a new
source port. Results are the same `TlsResult` and `HttpResult` objects that
the kernel engine returns, so the JSON output does not depend on the engine.

`RawSession` sets the engine up for a scan: the nftables table that keeps
the kernel out, the engine's sockets, and the self-test that proves the two
work together; it undoes all of it on close.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pktscan.certs import decode_chain
from pktscan.grab.http import build_request, parse_response_head
from pktscan.grab.kernel import record_from_outcome
from pktscan.grab.rawengine import (
    DEFAULT_MAX_CONNECTIONS,
    ENGINE_PORT_RANGE,
    ExchangeState,
    HttpHead,
    RawEngine,
    check_foreign_source,
    owns_address,
    parse_source_ip,
    self_test,
)
from pktscan.net.firewall import KernelResetGuard
from pktscan.results import AttemptRecord, HttpResult, TlsResult
from pktscan.tls.client import HandshakeOutcome, HandshakeReader
from pktscan.tls.sets import PROTOCOL_SETS, ProtocolSet, build_set_hello

logger = logging.getLogger(__name__)

# The kernel engine's connect() retransmits the SYN after 1 s and 3 s within
# its 5 s timeout, so a follow-up attempt sends as many SYNs in that time.
FOLLOW_UP_SYNS = 3
# strerror texts of the kernel engine's connect failures, kept equal so that
# both engines write the same JSON.
REFUSED_DETAIL = os.strerror(111)  # ECONNREFUSED
UNANSWERED_DETAIL = "connect timed out"
RESET_DETAIL = os.strerror(104)  # ECONNRESET


@dataclass(slots=True)
class RawPortResult:
    """The raw engine's findings on one port.

    Attributes:
        state: open, closed or filtered, from the first attempt's SYN.
        tls: the attempt ladder's result on a TLS port that was open.
        http: the server's identification on an HTTP port that was open.
    """

    state: ExchangeState
    tls: TlsResult | None = None
    http: HttpResult | None = None


def _keep_certificate(
    result: TlsResult, protocol_set: ProtocolSet, outcome: HandshakeOutcome
) -> None:
    result.set_number = protocol_set.number
    result.version = outcome.version_name
    result.cipher = outcome.cipher_name
    result.chain = decode_chain(outcome.chain)
    result.key_exchange = dict(outcome.key_exchange) if outcome.key_exchange else None


async def grab_tls_raw(
    engine: RawEngine,
    ip: str,
    port: int,
    *,
    sni: str | None = None,
    timeout: float = 5.0,
    syn_attempts: int = 2,
    syn_wait: float = 1.0,
    before_hello: Callable[[], Awaitable[object]] | None = None,
    sets: Sequence[ProtocolSet] = PROTOCOL_SETS,
) -> RawPortResult:
    """Find the port's state with the first attempt, then run the ladder.

    Args:
        syn_attempts, syn_wait: SYNs of the first attempt and the wait after
            each, as the prober's retries + 1 and wait.
        before_hello: awaited once the first SYN/ACK arrived, before the
            first ClientHello (a bare ACK completes the handshake meanwhile).
    """
    result = TlsResult()
    target = f"{ip}:{port}"
    for index, protocol_set in enumerate(sets):
        reader = HandshakeReader(protocol_set.hello_format)
        hello = build_set_hello(protocol_set.number, os.urandom(32), sni)
        first = index == 0
        exchange = await engine.exchange(
            ip,
            port,
            hello,
            reader,
            timeout=timeout,
            syn_attempts=syn_attempts if first else FOLLOW_UP_SYNS,
            syn_wait=syn_wait if first else timeout / FOLLOW_UP_SYNS,
            before_request=before_hello if first else None,
        )
        if exchange.state != "open":
            if first:
                return RawPortResult(exchange.state)
            detail = REFUSED_DETAIL if exchange.state == "closed" else UNANSWERED_DETAIL
            logger.info("%s: set %d: connect failed: %s", target, index + 1, detail)
            result.attempts.append(
                AttemptRecord(protocol_set.number, "connect_failed", detail=detail)
            )
            break

        outcome = reader.finish(exchange.stop)
        logger.debug(
            "%s: set %d: %s (stopped by %s)",
            target,
            protocol_set.number,
            outcome.outcome,
            exchange.stop,
        )
        result.attempts.append(
            record_from_outcome(protocol_set, outcome, exchange.source_port)
        )
        if outcome.chain:
            _keep_certificate(result, protocol_set, outcome)
            logger.info(
                "%s: certificate at set %d (%s)",
                target,
                protocol_set.number,
                outcome.version_name,
            )
            break
    else:
        logger.info("%s: no certificate after %d attempts", target, len(sets))
    return RawPortResult("open", tls=result)


async def grab_http_raw(
    engine: RawEngine,
    ip: str,
    port: int,
    *,
    host: str | None = None,
    timeout: float = 5.0,
    syn_attempts: int = 2,
    syn_wait: float = 1.0,
    before_request: Callable[[], Awaitable[object]] | None = None,
) -> RawPortResult:
    """Send one HEAD request in the first pass and read the identification."""
    host_header = host or (f"[{ip}]" if ":" in ip else ip)
    head = HttpHead()
    exchange = await engine.exchange(
        ip,
        port,
        build_request(host_header),
        head,
        timeout=timeout,
        syn_attempts=syn_attempts,
        syn_wait=syn_wait,
        before_request=before_request,
    )
    if exchange.state != "open":
        return RawPortResult(exchange.state)
    if not head.data:
        error = {"timeout": "timed out", "reset": RESET_DETAIL}.get(
            exchange.stop or "", "closed without an answer"
        )
        return RawPortResult("open", http=HttpResult(None, None, error=error))
    http = parse_response_head(head.data)
    logger.info("%s:%d: HTTP %s, server %s", ip, port, http.status, http.server)
    return RawPortResult("open", http=http)


class RawSession:
    """The nftables table, the engine and the self-test, set up together.

    Use `async with RawSession(...) as engine:`. On entry it installs the
    table (after removing tables that dead runs left), starts the engine and
    runs the self-test. On exit, or when any of that fails, it closes the
    engine and deletes the table.

    Args:
        max_connections: the engine's connection table size.
        source_ip: see `RawEngine`; with an address that no interface
            carries, no table is installed and no self-test runs.
        guard: None to keep the kernel out with a new `KernelResetGuard`;
            pass False to run without one, for tests of what happens then.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        port_range: tuple[int, int] = ENGINE_PORT_RANGE,
        guard: KernelResetGuard | bool | None = None,
        source_ip: str | None = None,
    ) -> None:
        self.engine = RawEngine(
            port_range=port_range,
            max_connections=max_connections,
            source_ip=source_ip,
        )
        # From an address the kernel does not own, the kernel never receives
        # a segment of ours, so there is no table to add and nothing for the
        # self-test to check.
        self.foreign_source = source_ip is not None and not owns_address(
            parse_source_ip(source_ip)
        )
        if self.foreign_source:
            assert source_ip is not None
            check_foreign_source(source_ip)
            guard = False
        if guard is None or guard is True:
            guard = KernelResetGuard(port_range)
        self.guard: KernelResetGuard | None = guard or None

    async def __aenter__(self) -> RawEngine:
        try:
            if self.guard is not None:
                self.guard.install()
            await self.engine.start()
            if not self.foreign_source:
                await self_test(self.engine)
        except BaseException:
            await self.close()
            raise
        return self.engine

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the engine, then delete the table."""
        try:
            await self.engine.close()
        finally:
            if self.guard is not None:
                self.guard.remove()

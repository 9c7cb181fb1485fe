"""The discovery scan pipeline: resolve, probe, grab, write.

The order on the wire follows the documented discovery sequence: A lookups
for the names given, the SYN probe of every address and port, a PTR lookup
for each address that responded, then for each open port the attempt ladder
(or one HTTP request on port 80). With the kernel engine, the prober runs in
a thread and hands its answers over as they arrive, so certificates are
fetched while probing goes on. With the raw engine, the first attempt's SYN
is the probe, and the ClientHello follows the SYN/ACK in the same
connection. Every result is written the moment it is complete, so an interrupted
scan keeps everything finished before the interruption.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import dns.asyncresolver

from pktscan.errors import LocalError
from pktscan.grab.http import grab_http
from pktscan.grab.kernel import grab_tls
from pktscan.grab.raw import RawPortResult, RawSession, grab_http_raw, grab_tls_raw
from pktscan.grab.rawengine import (
    DEFAULT_MAX_CONNECTIONS,
    EngineStats,
    RawEngine,
    SourceError,
)
from pktscan.net.prober import ProbeResult, ProbeStats, probe
from pktscan.net.route import NoRouteError
from pktscan.resolve import lookup_names, lookup_ptr, make_resolver
from pktscan.results import PortResult
from pktscan.targets import (
    AddressRange,
    TargetSpace,
    parse_exclusions,
    parse_ports,
    parse_targets,
)

logger = logging.getLogger(__name__)

HTTP_PORTS = frozenset({80})
# A /8 with its broadcast addresses would otherwise log a line per port; the
# results and the summary still count every unroutable port.
UNROUTABLE_LOG_LIMIT = 10
ENGINES = ("raw", "kernel")
# The raw engine's target loop yields to the event loop after this many
# targets, so that replies are read while SYNs go out.
TARGET_BATCH = 64
# The loop sleeps only when this far ahead of the rate's schedule, because
# asyncio sleeps of less than the event loop's 1 ms timer resolution last
# about 1 ms each and would cap the rate near 1,000 SYNs per second.
PACING_SLACK_SECONDS = 0.005


class ResultSink(Protocol):
    """A destination for finished results: a JSON lines file, the inventory."""

    def write(self, result: PortResult) -> None: ...


@dataclass(slots=True)
class ScanOptions:
    """The targets and settings of a scan, from the CLI; `run_scan` validates them."""

    targets: Sequence[str]
    ports: str
    rate: int = 1000
    retries: int = 1
    wait: float = 1.0
    timeout: float = 5.0
    concurrency: int = 128
    resolvers: Sequence[str] | None = None
    dns: bool = True
    seed: int | None = None
    shard: tuple[int, int] = (0, 1)
    exclude: Sequence[str] = ()
    exclude_file: Path | None = None
    engine: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    source_ip: str | None = None


@dataclass(slots=True)
class ScanSummary:
    """Counts and timing of a finished (or interrupted) scan."""

    started: float
    ended: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    certificates: int = 0
    unresolved: list[str] = field(default_factory=list)
    probe_stats: ProbeStats | None = None
    interrupted: bool = False
    failures: int = 0
    engine: str = "kernel"
    engine_stats: EngineStats | None = None

    def count(self, result: PortResult) -> None:
        self.states[result.state] = self.states.get(result.state, 0) + 1
        if result.tls is not None and result.tls.chain:
            self.certificates += 1


ProgressCallback = Callable[[PortResult], None]


class _Scan:
    """The running state of one scan, shared by its tasks."""

    def __init__(
        self,
        options: ScanOptions,
        sinks: Sequence[ResultSink],
        on_result: ProgressCallback | None,
    ) -> None:
        self.options = options
        self.sinks = sinks
        self.on_result = on_result
        self.names: dict[str, str] = {}
        self.ptr_lookups: dict[str, asyncio.Task[str | None]] = {}
        self.resolver: dns.asyncresolver.Resolver | None = None
        self.stop = threading.Event()
        self.summary = ScanSummary(started=time.time())
        self.limit = asyncio.Semaphore(max(1, options.concurrency))
        self.unroutable = 0

    def emit(self, result: PortResult) -> None:
        result.time = time.time()
        for sink in self.sinks:
            sink.write(result)
        self.summary.count(result)
        if self.on_result is not None:
            self.on_result(result)

    async def ptr(self, ip: str) -> str | None:
        if self.resolver is None:
            return None
        task = self.ptr_lookups.get(ip)
        if task is None:
            task = asyncio.ensure_future(lookup_ptr(self.resolver, ip))
            self.ptr_lookups[ip] = task
        return await task

    async def known_ptr(self, ip: str) -> str | None:
        """Return the PTR name of an address already looked up, or None."""
        task = self.ptr_lookups.get(ip)
        return await task if task is not None else None

    async def handle(self, answer: ProbeResult) -> None:
        result = PortResult(
            ip=answer.ip,
            port=answer.port,
            state=answer.state,
            name=self.names.get(answer.ip),
        )
        if answer.state == "unroutable":
            # The prober logged the kernel's reason; the raw engine's result
            # carries it in the same field.
            result.error = "no route"
            self.emit(result)
            return
        try:
            if answer.state in ("open", "closed"):
                result.ptr = await self.ptr(answer.ip)
            else:
                result.ptr = await self.known_ptr(answer.ip)
            if answer.state == "open":
                async with self.limit:
                    await self.grab(result)
        except Exception as exc:
            self.record_failure(result, exc)
        self.emit(result)

    def record_failure(self, result: PortResult, exc: Exception) -> None:
        """Keep a result that a local failure left incomplete, and log why.

        A bug met on one port must not cost the results of the others, so
        the failure is recorded on the port's result and counted, and the
        scan's exit code reports it.
        """
        logger.exception("%s:%d: grab failed", result.ip, result.port)
        result.error = f"internal error: {type(exc).__name__}: {exc}"
        self.summary.failures += 1

    async def grab(self, result: PortResult) -> None:
        host = result.name
        if result.port in HTTP_PORTS:
            result.http = await grab_http(
                result.ip, result.port, host, self.options.timeout
            )
            return
        result.tls = await grab_tls(
            result.ip, result.port, sni=host, timeout=self.options.timeout
        )

    async def handle_raw(self, engine: RawEngine, ip: str, port: int) -> None:
        """Probe and grab one port with the raw engine, then emit its result."""
        options = self.options
        result = PortResult(ip=ip, port=port, state="filtered", name=self.names.get(ip))

        async def look_up_ptr() -> None:
            result.ptr = await self.ptr(ip)

        before = look_up_ptr if self.resolver is not None else None
        found: RawPortResult
        try:
            if port in HTTP_PORTS:
                found = await grab_http_raw(
                    engine,
                    ip,
                    port,
                    host=result.name,
                    timeout=options.timeout,
                    syn_attempts=options.retries + 1,
                    syn_wait=options.wait,
                    before_request=before,
                )
            else:
                found = await grab_tls_raw(
                    engine,
                    ip,
                    port,
                    sni=result.name,
                    timeout=options.timeout,
                    syn_attempts=options.retries + 1,
                    syn_wait=options.wait,
                    before_hello=before,
                )
        except NoRouteError as error:
            self.unroutable += 1
            if self.unroutable <= UNROUTABLE_LOG_LIMIT:
                logger.warning("%s:%d: no route: %s", ip, port, error)
            if self.unroutable == UNROUTABLE_LOG_LIMIT:
                logger.warning("more unroutable ports follow; not logged one by one")
            result.state = "unroutable"
            result.error = f"no route: {error}"
            self.emit(result)
            return
        except SourceError as error:
            # A limit of --source-ip, not a bug: one line, no traceback.
            logger.error("%s:%d: %s", ip, port, error.message)
            result.error = error.message
            result.state = "error"
            self.summary.failures += 1
            self.emit(result)
            return
        except Exception as exc:
            self.record_failure(result, exc)
            result.state = "error"
            self.emit(result)
            return
        result.state = found.state
        result.tls = found.tls
        result.http = found.http
        if found.state == "closed":
            result.ptr = await self.ptr(ip)
        elif found.state == "filtered":
            result.ptr = await self.known_ptr(ip)
        self.emit(result)


async def _resolve_targets(scan: _Scan, names: Sequence[str]) -> list[AddressRange]:
    """Resolve the names given as targets; record those that do not resolve."""
    if not names:
        return []
    assert scan.resolver is not None
    ranges = []
    for lookup in await lookup_names(scan.resolver, names):
        if not lookup.addresses:
            logger.warning("%s: not resolved: %s", lookup.name, lookup.error)
            scan.summary.unresolved.append(f"{lookup.name} ({lookup.error})")
            continue
        for address in lookup.addresses:
            scan.names.setdefault(address, lookup.name)
            ranges.append(AddressRange.from_network(address))
    return ranges


async def run_scan(
    options: ScanOptions,
    sinks: Sequence[ResultSink],
    on_result: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ScanSummary:
    """Scan the targets and write every port's result to the sinks.

    `on_total` is called once, before probing, with the number of ports
    this run covers (this shard's share, rounded down, when sharded).

    Raises:
        InputError: a target, port list or exclusion is invalid, or names
            were given with DNS turned off.
    """
    spec = parse_targets(options.targets)
    ports = parse_ports(options.ports)
    exclude_files = [str(options.exclude_file)] if options.exclude_file else []
    exclude = parse_exclusions(options.exclude, exclude_files)
    scan = _Scan(options, sinks, on_result)
    if stop is not None:
        scan.stop = stop
    if options.dns:
        scan.resolver = make_resolver(options.resolvers, timeout=options.timeout)
    elif spec.names:
        from pktscan.errors import InputError

        raise InputError(
            f"DNS names given with --no-dns: {', '.join(spec.names[:3])}",
            hint="drop --no-dns or give addresses instead of names",
        )

    networks = list(spec.networks) + await _resolve_targets(scan, spec.names)
    space = TargetSpace(
        networks, ports, exclude=exclude, seed=options.seed, shard=options.shard
    )
    if on_total is not None:
        on_total(space.size // options.shard[1])
    session = await _open_raw_session(options)
    if session is None:
        await _run_kernel(scan, space)
    else:
        try:
            scan.summary.engine = "raw"
            await _run_raw(scan, space, session.engine)
            scan.summary.engine_stats = session.engine.stats
        finally:
            await session.close()

    scan.summary.interrupted = scan.stop.is_set()
    scan.summary.ended = time.time()
    return scan.summary


async def _open_raw_session(options: ScanOptions) -> RawSession | None:
    """Set up the raw engine, or return None for the kernel engine.

    Without an explicit engine, the raw engine runs as root when its setup
    and self-test pass, and the kernel engine runs otherwise.

    Raises:
        InputError: the engine name is unknown.
        LocalError: the raw engine was requested and cannot run.
    """
    engine = options.engine
    if engine is not None and engine not in ENGINES:
        from pktscan.errors import InputError

        raise InputError(
            f"invalid engine {engine!r}", hint=f"give one of: {', '.join(ENGINES)}"
        )
    without_root = engine is None and os.geteuid() != 0 and options.source_ip is None
    if engine == "kernel" or without_root:
        return None
    session = RawSession(
        max_connections=options.max_connections, source_ip=options.source_ip
    )
    try:
        await session.__aenter__()
    except (LocalError, OSError) as error:
        if engine == "raw" or options.source_ip is not None:
            raise
        logger.warning("raw engine unavailable, using the kernel engine: %s", error)
        return None
    return session


async def _run_kernel(scan: _Scan, space: TargetSpace) -> None:
    """Probe with the prober in a thread and grab each open port as its
    result arrives."""
    options = scan.options
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[ProbeResult | None] = asyncio.Queue()

    def deliver(answer: ProbeResult) -> None:
        loop.call_soon_threadsafe(answers.put_nowait, answer)

    run_probe = functools.partial(
        probe,
        space,
        rate=options.rate,
        retries=options.retries,
        wait=options.wait,
        on_result=deliver,
        stop=scan.stop,
    )
    probing = loop.run_in_executor(None, run_probe)
    probing.add_done_callback(lambda _: answers.put_nowait(None))

    tasks: set[asyncio.Task[None]] = set()
    while (answer := await answers.get()) is not None:
        task = asyncio.ensure_future(scan.handle(answer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    scan.summary.probe_stats = await probing
    if tasks:
        await asyncio.gather(*tasks)


async def _run_raw(scan: _Scan, space: TargetSpace, engine: RawEngine) -> None:
    """Start one raw-engine task per target at the SYN rate, with at most
    `max_connections` targets in progress."""
    options = scan.options
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(options.max_connections)
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()

    def release(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()

    for count, (ip, port) in enumerate(space, 1):
        if scan.stop.is_set():
            break
        delay = 0.0
        if options.rate:
            delay = start + count / options.rate - loop.time()
        if delay > PACING_SLACK_SECONDS:
            await asyncio.sleep(delay)
        elif count % TARGET_BATCH == 0:
            await asyncio.sleep(0)
        await slots.acquire()
        task = asyncio.ensure_future(scan.handle_raw(engine, ip, port))
        tasks.add(task)
        task.add_done_callback(release)
    if tasks:
        await asyncio.gather(*tasks)

"""The SYN prober: send SYNs at a paced rate, classify the responses.

The calling thread decides what to send, a send thread sends it, and a
child process receives:

- The calling thread paces SYNs with a token bucket, retransmits probes left
  unanswered after `wait` seconds, and reports each outcome through
  `on_result`. It keeps a window of probes still waiting for a response, which
  contains about rate x wait x (retries + 1) entries, never the whole space.
- The send thread (`pktscan.net.synbatch.SendThread`) runs the C send loop
  on batches of IPv4 targets; other targets are sent from the calling
  thread in Python.
- The receiver process (`pktscan.net.receiver`) reads TCP segments to our
  source port, keeps those whose acknowledgment number matches the SYN
  cookie, answers each valid SYN/ACK with a crafted RST at once, and passes
  the responses to the calling thread through a pipe.

A response is valid by the cookie alone, with no lookup; the window only
decides whether it is the first response, a duplicate or a late one.

A probe is reported filtered only once the receiver has found its socket
empty at a time after the probe's deadline. A receiver that falls behind
under load therefore delays the verdict instead of turning an open port
whose SYN/ACK is still queued into a filtered one, and sending pauses until
it catches up; a receiver that stops reporting for MAX_RECEIVER_STALL no
longer holds either.

Per batch, the calling thread takes targets from the walk (packed
addresses, no text), looks up the route once per run of targets that share
it, and records the batch in the window. The C loop then computes the
cookies, patches the template and sends. Queued responses, expiries, the
stop flag and progress are checked once per batch (`_check_interval`).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Literal, NamedTuple

from pktscan.errors import LocalError
from pktscan.net.cookie import SynCookie
from pktscan.net.firewall import FirewallError, KernelResetGuard
from pktscan.net.packet import TCP_RST, TCP_SYN, PacketTemplate
from pktscan.net.rate import TokenBucket
from pktscan.net.receiver import ReceiverProcess, Response
from pktscan.net.route import NeighbourTable, NoRouteError, RouteTable
from pktscan.net.sockets import Receiver, Sender
from pktscan.net.synbatch import MAX_BATCH, SendThread, SynBatch
from pktscan.targets import TargetSpace, Walk

logger = logging.getLogger(__name__)

# Linux hands out ephemeral ports from 32768-60999 by default
# (net.ipv4.ip_local_port_range), so a source port above it does not collide
# with the host's own connections.
SOURCE_PORT_RANGE = (61001, 65535)
# Answered probes are remembered in two bitmaps of this many bits, one
# replacing the other every SEEN_GENERATION probes: at least the last 65536
# stay remembered, in 1 MiB whatever the number of targets.
SEEN_BITS = 1 << 22
SEEN_GENERATION = 65536
PROGRESS_SECONDS = 1.0
LOGGED_ROUTE_ERRORS = 10
LOGGED_SEND_ERRORS = 10
LOOPBACK_INTERFACE = "lo"
# The sender waits while the receiver process last found its socket empty
# more than this long ago: the receive ring has room for about half a second
# of responses at 100,000 a second.
MAX_RECEIVER_LAG = 0.25
# ... but never longer than this at a time, so that a receiver that stops
# reporting cannot stall the scan.
MAX_RECEIVER_PAUSE = 1.0
# After this long without a caught-up mark, probes are settled without the
# receiver: it has stopped, not fallen behind.
MAX_RECEIVER_STALL = 5.0
# At most this many probes go out between two checks of the responses,
# expiries and the stop flag, in one call of the C send loop; at 512 probes,
# about 2 ms at 256,000 SYN/s.
MAX_CHECK_INTERVAL = MAX_BATCH

Key = tuple[bytes, int]

State = Literal["open", "closed", "filtered", "unroutable"]


class ProbeResult(NamedTuple):
    """The outcome of probing one address and port.

    A named tuple, because one is built per probe, and a tuple is built in a
    third of the time of a frozen dataclass.

    Attributes:
        ip: the target address.
        port: the target port.
        state: open (SYN/ACK), closed (RST/ACK), filtered (no response) or
            unroutable (the kernel has no route that can carry a probe).
        ttl: TTL or hop limit of the response, None when filtered.
        rtt: seconds from the SYN to its response, None when filtered or when
            a retransmitted probe's response cannot be matched to one SYN.
        time: Unix time of the response, or of the end of the wait.
    """

    ip: str
    port: int
    state: State
    ttl: int | None
    rtt: float | None
    time: float

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    def json_line(self, time_text: str | None = None) -> str:
        """Return `json.dumps(self.to_json())` and a newline, formatted
        directly: the address and state need no escaping, and repr of a
        float is what json writes.

        Args:
            time_text: repr of `time`, when the caller has it already.
        """
        ttl = "null" if self.ttl is None else str(self.ttl)
        rtt = "null" if self.rtt is None else repr(self.rtt)
        when = repr(self.time) if time_text is None else time_text
        return (
            f'{{"ip": "{self.ip}", "port": {self.port}, "state": "{self.state}", '
            f'"ttl": {ttl}, "rtt": {rtt}, "time": {when}}}\n'
        )


@dataclass(slots=True)
class ProbeStats:
    """Counters of one probe run.

    Attributes:
        sent: SYNs sent, retransmissions included.
        sent_routed: those of `sent` that went through the kernel's routing
            (IPPROTO_RAW), because the next hop's link-layer address was not
            in the neighbour table. The others went out over AF_PACKET.
        received: responses with a valid cookie, duplicates included.
        duplicates: valid responses for a probe already answered.
        late: valid responses for a probe already reported as filtered.
            NOTE: only the last 65536 answered probes are remembered, so a
            duplicate for an older one is counted here too.
        invalid: TCP segments to our port whose cookie did not match.
        unroutable: targets skipped because the kernel has no route to them.
        resets_sent: crafted RSTs sent in response to SYN/ACKs.
        send_drops: packets that could not be sent: the device queue stayed
            full, or the socket reported an error.
        kernel_drops: packets the kernel dropped before our receive socket
            read them (PACKET_STATISTICS).
        receiver_waits: times sending paused because the receiver process
            had fallen behind.
        elapsed: seconds from the first SYN to the end of the final wait.
    """

    sent: int = 0
    sent_routed: int = 0
    received: int = 0
    open: int = 0
    closed: int = 0
    filtered: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    unroutable: int = 0
    resets_sent: int = 0
    send_drops: int = 0
    kernel_drops: int = 0
    receiver_waits: int = 0
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def endpoint(ip: str, port: int) -> str:
    """Format an address and port as ``ip:port``, or ``[ip]:port`` for IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# A probe waiting for a response: (deadline, attempts so far, time of the
# last SYN), all monotonic seconds. A tuple, because one is built per SYN.
_Pending = tuple[float, int, float]


def probe(
    targets: Iterable[tuple[str, int]] | Walk,
    *,
    rate: int,
    retries: int = 1,
    wait: float = 1.0,
    source_port: int | None = None,
    on_result: Callable[[ProbeResult], None] | None = None,
    stop: threading.Event | None = None,
    max_runtime: float | None = None,
    on_progress: Callable[[ProbeStats], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> ProbeStats:
    """SYN-probe every (address, port) and report open, closed and filtered.

    Open and closed ports reach `on_result` as their responses arrive, filtered
    ones once their last retransmission has waited `wait` seconds. When
    `stop` is set or `max_runtime` passes, sending stops, responses are awaited
    for `wait` more seconds, and probes still unanswered are reported as
    filtered. `on_result` runs in the calling thread.

    Args:
        targets: (address, port) pairs, consumed once and lazily.
        rate: SYNs per second, retransmissions included; 0 for no pacing.
        retries: retransmissions of an unanswered SYN.
        wait: seconds to wait for a response after each SYN.
        source_port: our TCP port; None picks one at random from 61001-65535.
        on_result: called once per probed port.
        stop: set from another thread to end the run early.
        max_runtime: seconds after which sending stops, as with `stop`.
        on_progress: called with the live counters about once a second.
        on_ready: called once the sockets are open, before the first SYN,
            for example to drop privileges (open sockets keep working).

    Raises:
        PrivilegeError: the raw sockets cannot be opened without root or
            CAP_NET_RAW.
        ValueError: an argument is out of range.
    """
    if rate < 0 or retries < 0 or wait < 0:
        raise ValueError(
            f"rate, retries and wait must not be negative: {rate}, {retries}, {wait}"
        )
    if source_port is not None and not 1 <= source_port <= 65535:
        raise ValueError(f"invalid source port {source_port}: must be 1-65535")
    if source_port is None:
        source_port = random.randint(*SOURCE_PORT_RANGE)

    prober = _Prober(rate, retries, wait, source_port, on_result)
    prober.on_progress = on_progress
    # Without a process that could delete it later, a table must not outlive
    # the privileges that on_ready gives up.
    # A port outside our range may be a service of this host (22, say),
    # which the table would cut off for the length of the run.
    low, high = SOURCE_PORT_RANGE
    ours = low <= source_port <= high
    guard = _keep_kernel_out(source_port) if on_ready is None and ours else None
    try:
        if on_ready is not None:
            on_ready()
        return prober.run(targets, stop or threading.Event(), max_runtime)
    finally:
        prober.close()
        if guard is not None:
            guard.remove()


def _keep_kernel_out(source_port: int) -> KernelResetGuard | None:
    """Drop segments to our source port before the kernel's TCP reads them.

    Our receiver reads them from its packet socket first, and the kernel
    then neither looks up a socket nor sends an RST of its own for every
    SYN/ACK. That work runs on the sending core: against the benchmark lab
    the table raised probe()'s rate by 9 to 37% (three runs alternating
    with and without). Without nftables the scan runs as before."""
    guard = KernelResetGuard((source_port, source_port))
    try:
        guard.install()
    except FirewallError as error:
        logger.info("the kernel will also reset each SYN/ACK: %s", error)
        guard.remove()
        return None
    return guard


class _Prober:
    def __init__(
        self,
        rate: int,
        retries: int,
        wait: float,
        source_port: int,
        on_result: Callable[[ProbeResult], None] | None,
    ) -> None:
        self.retries = retries
        self.wait = wait
        self.on_progress: Callable[[ProbeStats], None] | None = None
        self.progress_at = 0.0
        self.source_port = source_port
        self.on_result = on_result
        self.stats = ProbeStats()
        self.cookie = SynCookie()
        self.bucket = TokenBucket(rate)
        self.check_interval = _check_interval(rate)
        self.syn = {4: PacketTemplate(4, "S", with_options=True)}
        self.syn[6] = PacketTemplate(6, "S", with_options=True)
        self.batch: SynBatch | None = SynBatch(self.syn[4], self.cookie, source_port)
        self.send_thread: SendThread | None = None
        self.pending: OrderedDict[Key, _Pending] = OrderedDict()
        self.debug = False
        self.log_results = False
        self.stall_reported = False
        self.seen = RecentKeys(SEEN_BITS, SEEN_GENERATION)
        self.start = time.monotonic()

        self.routes = RouteTable()
        self.neighbours = NeighbourTable()
        self.sender: Sender | None = None
        self.receiver: Receiver | None = None
        self.child: ReceiverProcess | None = None
        try:
            self.sender = Sender()
            self.receiver = Receiver(source_port)
        except BaseException:
            self.close()
            raise
        self.child = ReceiverProcess(
            self.receiver, self.sender, self.cookie, source_port
        )

    def close(self) -> None:
        if self.send_thread is not None:
            self.send_thread.close()
            self.send_thread = None
        if self.child is not None:
            self.child.close()
        self.routes.close()
        if self.sender is not None:
            self.sender.close()
        if self.receiver is not None:
            self.receiver.close()

    # The calling thread

    def run(
        self,
        targets: Iterable[tuple[str, int]] | Walk,
        stop: threading.Event,
        max_runtime: float | None,
    ) -> ProbeStats:
        assert self.child is not None
        self.child.start()
        self.start = time.monotonic()
        self.progress_at = self.start
        end = None if max_runtime is None else self.start + max_runtime
        stopped = False
        interval = self.check_interval
        self.debug = logger.isEnabledFor(logging.DEBUG)
        self.log_results = logger.isEnabledFor(logging.INFO)
        if self.debug:
            # The C loop logs nothing per SYN.
            self.batch = None
        else:
            # Started after the receiver's fork, so that the child process
            # copies no second thread's state.
            assert self.batch is not None
            self.send_thread = SendThread(self.batch)
        probes = _packed_targets(targets)

        while True:
            if self._should_stop(stop, end):
                stopped = True
                break
            self._check(time.monotonic())
            self._keep_pace_with_receiver(stop, end)
            if not self._send_batch(probes, interval):
                break

        while self.pending and not stopped:
            if self._should_stop(stop, end):
                stopped = True
                break
            now = time.monotonic()
            self._check(now)
            if self.pending:
                # Past the deadline, the verdict waits for the receiver to
                # catch up, so the wait never drops to zero.
                first = next(iter(self.pending.values()))
                self._drain(min(max(first[0] - now, 0.002), 0.05))

        if stopped:
            logger.info("stopping: waiting %.1f s for late responses", self.wait)
            self._drain_until(time.monotonic() + self.wait)
            self._wait_for_receiver(time.monotonic())
            self._expire(float("inf"), resend=False)

        self._finish()
        return self.stats

    def _send_batch(self, probes: Iterator[Key], count: int) -> bool:
        """Send the first SYN to up to `count` targets; tell whether targets
        remain. Targets are taken from the walk only when they are about to
        be sent, so that a resumable Walk never counts one that was not."""
        targets = list(islice(probes, count))
        if targets:
            self.bucket.acquire(len(targets))
            self._send_targets(targets, 1)
        return len(targets) == count

    def _send_targets(self, targets: list[Key], attempt: int) -> None:
        """Send a SYN to each target: runs of IPv4 targets that share a
        route and a known next hop through the C send loop, the others one
        by one."""
        index = 0
        while index < len(targets):
            destination, port = targets[index]
            if self.batch is not None and len(destination) == 4:
                sent = self._send_run(targets, index, attempt)
                if sent:
                    index += sent
                    continue
            self._send_probe(destination, port, attempt)
            index += 1

    def _send_run(self, targets: list[Key], start: int, attempt: int) -> int:
        """Send SYNs through the C loop from targets[start] on, while the
        route stays the same. Return how many were sent: 0 when the first
        target needs the Python path."""
        assert self.batch is not None and self.sender is not None
        assert self.send_thread is not None
        destination = targets[start][0]
        try:
            route = self.routes.lookup(destination)
        except NoRouteError:
            return 0
        if route.local:
            return 0
        hop = self.neighbours.lookup(route.interface, route.next_hop)
        # The C loop writes Ethernet addresses only; other links (InfiniBand
        # has 20-byte ones) take the Python path.
        if hop is None or len(hop) != 6:
            return 0

        span = self.routes.span(destination)
        count = self.batch.run_length(targets, start, span)
        if count == 0:
            return 0
        sent = targets[start : start + count]
        now = time.monotonic()
        pending = self.pending
        # Removing first keeps the window ordered by deadline when a target
        # comes twice.
        if not pending.keys().isdisjoint(sent):
            for key in sent:
                pending.pop(key, None)
        pending.update(dict.fromkeys(sent, (now + self.wait, attempt, now)))

        self.stats.sent += count
        self.send_thread.submit(
            self.sender.link,
            route.source,
            (int((now - self.start) * 1000) + 1) & 0xFFFFFFFF,
            sent,
            route.interface,
            hop,
        )
        return count

    def _check(self, now: float) -> None:
        """Handle queued responses, then retransmit or report the probes
        whose wait ended before the receiver last caught up."""
        assert self.child is not None
        self._drain(0.0)
        mark = self.child.caught_up
        # Before its first mark, the receiver is measured from the start.
        if now - max(mark, self.start) > MAX_RECEIVER_STALL:
            # A receiver stopped (SIGSTOP, a debugger) would otherwise hold
            # every verdict, and the run, for as long as it stays stopped.
            if not self.stall_reported:
                logger.warning(
                    "the receiver process has not caught up for %.1f s; "
                    "settling probes without it",
                    now - max(mark, self.start),
                )
                self.stall_reported = True
            mark = now
        self._expire(min(now, mark), resend=True)
        self._report_progress(now)

    def _keep_pace_with_receiver(
        self, stop: threading.Event, end: float | None
    ) -> None:
        """Hold the next batch while the receiver is more than
        MAX_RECEIVER_LAG behind, for at most MAX_RECEIVER_PAUSE at a time.

        A sender faster than the receiver would otherwise grow the window of
        pending probes with the length of the scan, and once the receive
        ring overflowed, the kernel would drop responses. Waiting bounds both."""
        assert self.child is not None
        child = self.child
        now = time.monotonic()
        if now - child.caught_up <= MAX_RECEIVER_LAG or self.stall_reported:
            # After a stall, verdicts no longer wait for the receiver, and
            # neither does sending.
            return
        self.stats.receiver_waits += 1
        until = now + MAX_RECEIVER_PAUSE
        while now - child.caught_up > MAX_RECEIVER_LAG and now < until:
            if self._should_stop(stop, end):
                return
            self._drain(0.005)
            now = time.monotonic()

    def _should_stop(self, stop: threading.Event, end: float | None) -> bool:
        """Tell whether to stop sending: on request, at the end of the
        runtime, or when the receiver process has failed."""
        assert self.child is not None
        if stop.is_set() or self.child.error is not None:
            return True
        return end is not None and time.monotonic() >= end

    def _report_progress(self, now: float) -> None:
        if self.on_progress is None:
            return
        if now - self.progress_at >= PROGRESS_SECONDS:
            self.progress_at = now
            self.stats.elapsed = now - self.start
            self.on_progress(self.stats)

    def _finish(self) -> None:
        if self.send_thread is not None:
            self.send_thread.flush()
        self.stats.elapsed = time.monotonic() - self.start
        assert self.child is not None
        # Responses read after the last probe was settled are counted as
        # late or duplicates.
        responses, counters = self.child.stop()
        for response in responses:
            self._handle(response)
        self.stats.resets_sent = counters.resets_sent
        self.stats.invalid = counters.invalid
        if self.receiver is not None:
            self.stats.kernel_drops = self.receiver.statistics()[1]
        if self.sender is not None:
            self.stats.send_drops = self.sender.dropped
        thread = self.send_thread
        if thread is not None and thread.dropped:
            self.stats.send_drops += thread.dropped
            logger.error(
                "%d SYNs could not be sent: %s", thread.dropped, thread.last_error
            )
        if self.stats.unroutable > LOGGED_ROUTE_ERRORS:
            logger.error("%d targets had no route", self.stats.unroutable)
        if self.child.error is not None:
            raise ReceiverError(
                f"receiving responses failed: {self.child.error.strerror}",
                "results after the failure are missing; run the probe again",
            )

    def _send_probe(self, destination: bytes, port: int, attempt: int) -> None:
        assert self.sender is not None
        version = 4 if len(destination) == 4 else 6
        try:
            route = self.routes.lookup(destination)
        except NoRouteError as error:
            self.stats.unroutable += 1
            if self.stats.unroutable <= LOGGED_ROUTE_ERRORS:
                logger.error(
                    "%s no route: %s", endpoint(_text(destination), port), error
                )
            if self.on_result is not None:
                self.on_result(
                    ProbeResult(
                        _text(destination), port, "unroutable", None, None, time.time()
                    )
                )
            return

        now = time.monotonic()
        sequence = self.cookie.sequence(
            route.source, destination, self.source_port, port
        )
        # The IP ID comes from the cookie, which differs between probes, so
        # no random number is drawn per packet.
        packet = self.syn[version].fill(
            route.source,
            destination,
            self.source_port,
            port,
            sequence,
            ip_id=sequence & 0xFFFF,
            # _timestamp(now), inlined because it runs for every SYN.
            timestamp=(int((now - self.start) * 1000) + 1) & 0xFFFFFFFF,
        )
        # Packets injected on lo over AF_PACKET carry no route, and the
        # kernel drops them as martians (loopback source on input), so local
        # destinations go through the kernel's routing.
        hop = None
        if not route.local:
            hop = self.neighbours.lookup(route.interface, route.next_hop)
        # sockaddr_ll has room for 8 bytes: longer addresses (InfiniBand)
        # go through the kernel's routing.
        if hop is not None and len(hop) <= 8:
            sent = self.sender.send_link(packet, route.interface, version, hop)
        else:
            sent = self.sender.send_routed(packet, version, _text(destination))
            self.stats.sent_routed += 1
        self.stats.sent += 1
        if not sent and self.sender.dropped <= LOGGED_SEND_ERRORS:
            logger.error(
                "%s sending SYN failed: %s",
                endpoint(_text(destination), port),
                self.sender.last_error,
            )
        if self.debug:
            logger.debug(
                "%s SYN %d sent via %s",
                endpoint(_text(destination), port),
                attempt,
                route.interface,
            )
        # Removing first keeps the window ordered by deadline when the same
        # target comes twice.
        key = (destination, port)
        self.pending.pop(key, None)
        self.pending[key] = (now + self.wait, attempt, now)

    def _timestamp(self, now: float) -> int:
        """Return the TSval for a SYN sent at `now`: milliseconds since the
        start of the run, plus one so that it is never 0."""
        return (int((now - self.start) * 1000) + 1) & 0xFFFFFFFF

    def _expire(self, now: float, *, resend: bool) -> None:
        """Retransmit or report as filtered the probes whose wait is over."""
        resends: dict[int, list[Key]] = {}
        pending = self.pending
        report = self._report
        seen = self.seen
        # One time for every probe that expires in this call: they all
        # expire now.
        wall = time.time()
        while pending:
            key, entry = pending.popitem(last=False)
            deadline, attempts, _ = entry
            if deadline > now:
                pending[key] = entry
                pending.move_to_end(key, last=False)
                break
            if resend and attempts <= self.retries:
                resends.setdefault(attempts + 1, []).append(key)
                continue
            seen.add(key)
            report(ProbeResult(_text(key[0]), key[1], "filtered", None, None, wall))
        for attempt, keys in resends.items():
            for start in range(0, len(keys), MAX_BATCH):
                chunk = keys[start : start + MAX_BATCH]
                self.bucket.acquire(len(chunk))
                self._send_targets(chunk, attempt)

    def _drain(self, timeout: float) -> None:
        """Handle the responses the receiver wrote, waiting up to `timeout`
        for the first."""
        assert self.child is not None
        responses = self.child.read(timeout)
        if responses:
            self._handle_all(responses)

    def _wait_for_receiver(self, mark: float) -> None:
        """Handle responses until the receiver has caught up past `mark`, so
        that none that arrived before it is still in the ring; give up after
        a second, or at once when the receiver has failed."""
        assert self.child is not None
        end = time.monotonic() + 1.0
        while self.child.caught_up < mark and self.child.error is None:
            if time.monotonic() >= end:
                logger.warning("the receiver did not catch up within 1 s")
                return
            self._drain(0.01)

    def _drain_until(self, end: float) -> None:
        while (remaining := end - time.monotonic()) > 0:
            self._drain(min(remaining, 0.05))

    def _handle_all(self, responses: list[Response]) -> None:
        """Report the first response to each pending probe; count the rest.

        The loop of `_handle`, written out with local names, because it runs
        once per response: 0.4 us less per response than calling `_handle`.
        """
        if self.log_results:
            for response in responses:
                self._handle(response)
            return
        pending_pop = self.pending.pop
        seen_add = self.seen.add
        stats = self.stats
        on_result = self.on_result
        for response in responses:
            key = (response[0], response[1])
            entry = pending_pop(key, None)
            if entry is None or entry[1] != 1:
                if entry is not None:
                    self.pending[key] = entry
                self._handle(response)
                continue
            stats.received += 1
            seen_add(key)
            if response[2] & (TCP_SYN | TCP_RST) == TCP_SYN:
                state: State = "open"
                stats.open += 1
            else:
                state = "closed"
                stats.closed += 1
            if on_result is not None:
                on_result(
                    ProbeResult(
                        _text(response[0]),
                        response[1],
                        state,
                        response[3],
                        max(0.0, response[5] - entry[2]),
                        response[6],
                    )
                )

    def _handle(self, response: Response) -> None:
        key = (response.source, response.port)
        self.stats.received += 1
        entry = self.pending.pop(key, None)
        if entry is None:
            if key in self.seen:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s duplicate or late response",
                    endpoint(_text(response.source), response.port),
                )
            return

        self.seen.add(key)
        # A SYN with RST is a reset, as Linux's TCP treats it.
        opened = response.flags & (TCP_SYN | TCP_RST) == TCP_SYN
        state: State = "open" if opened else "closed"
        if entry[1] == 1:
            rtt: float | None = response.monotonic - entry[2]
        else:
            rtt = self._round_trip(response, entry)
        self._report(
            ProbeResult(
                _text(response.source),
                response.port,
                state,
                response.ttl,
                rtt,
                response.wall,
            )
        )

    def _round_trip(self, response: Response, entry: _Pending) -> float | None:
        """Return the RTT, or None when a retransmitted probe's response cannot
        be matched to one SYN (the ambiguity that Karn's algorithm avoids)."""
        received = response.monotonic
        _, attempts, sent_at = entry
        if attempts == 1:
            return max(0.0, received - sent_at)
        if response.timestamp_echo is None:
            return None
        # The echoed TSval shows which SYN was answered, at millisecond
        # resolution.
        elapsed_ms = self._timestamp(received) - response.timestamp_echo
        if not 0 <= elapsed_ms <= (self.retries + 1) * self.wait * 1000 + 1:
            return None
        return elapsed_ms / 1000

    def _report(self, result: ProbeResult) -> None:
        if result.state == "open":
            self.stats.open += 1
        elif result.state == "closed":
            self.stats.closed += 1
        else:
            self.stats.filtered += 1
        if self.log_results:
            logger.info(
                "%s %s ttl=%s rtt=%s",
                endpoint(result.ip, result.port),
                result.state,
                result.ttl,
                "-" if result.rtt is None else f"{result.rtt * 1000:.3f} ms",
            )
        if self.on_result is not None:
            self.on_result(result)


class ReceiverError(LocalError):
    """The receiver process failed, so responses after it were lost."""


class RecentKeys:
    """An approximate set of the most recent keys, in constant memory.

    Keys go into the current bitmap, one bit each, by hash. After
    `generation` additions the older bitmap is cleared and becomes the
    current one, so the last `generation` keys are always members. A key
    never added is a member by hash collision with a probability of about
    2 * generation / bits (3% with the prober's sizes).
    """

    def __init__(self, bits: int, generation: int) -> None:
        self.mask = bits - 1
        self.generation = generation
        self.current = bytearray(bits // 8)
        self.previous = bytearray(bits // 8)
        self.count = 0

    def add(self, key: Key) -> None:
        bit = hash(key) & self.mask
        self.current[bit >> 3] |= 1 << (bit & 7)
        self.count += 1
        if self.count >= self.generation:
            self.previous, self.current = self.current, self.previous
            self.current[:] = bytes(len(self.current))
            self.count = 0

    def __contains__(self, key: Key) -> bool:
        bit = hash(key) & self.mask
        flag = 1 << (bit & 7)
        return bool((self.current[bit >> 3] | self.previous[bit >> 3]) & flag)


def _check_interval(rate: int) -> int:
    """Return how many probes go out between two checks: one per
    millisecond of sending at `rate`, between 1 and MAX_CHECK_INTERVAL."""
    if rate == 0:
        return MAX_CHECK_INTERVAL
    return max(1, min(MAX_CHECK_INTERVAL, rate // 1000))


def _text(address: bytes) -> str:
    if len(address) == 4:
        return socket.inet_ntoa(address)
    return socket.inet_ntop(socket.AF_INET6, address)


def _packed_targets(targets: Iterable[tuple[str, int]] | Walk) -> Iterator[Key]:
    """Return an iterator of (packed address, port), taking a TargetSpace's
    or a Walk's packed form directly.

    Raises:
        ValueError: from the iteration, on a target address that is not an
            IPv4 or IPv6 address.
    """
    if isinstance(targets, Walk):
        return iter(targets)
    if isinstance(targets, TargetSpace):
        return iter(targets.walk())
    return (_pack(ip, port) for ip, port in targets)


def _pack(ip: str, port: int) -> Key:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_pton(family, ip), port
    except OSError:
        raise ValueError(f"invalid target address {ip!r}") from None

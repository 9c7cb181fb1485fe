"""Targets and ports from the command line, and the space of probes they span.

Target forms, given on the command line (several per argument when separated
by commas) or one a line in an ``@file`` (``#`` starts a comment):

- an IPv4 or IPv6 address: ``198.18.0.1``, ``2001:db8::1``
- a CIDR: ``198.18.0.0/24``, where host bits are ignored (``198.18.0.7/24`` is
  the same /24)
- a range: ``198.18.0.1-198.18.0.40``, or with only the last IPv4 octet or the
  last IPv6 group after the dash: ``198.18.0.1-40``, ``2001:db8::1-ff``
- a DNS name, kept unresolved: ``host.example``

`TargetSpace` enumerates addresses x ports in a pseudo-random order drawn from
a cyclic multiplicative group modulo a prime, as zmap does, with memory that
depends on the number of input ranges, never on the number of probes.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pktscan.errors import InputError

MIN_PORT = 1
MAX_PORT = 65535
# Our cap on one line of a target file: a name is at most 253 bytes and a
# range of IPv6 addresses under 100, so 4 KiB leaves room for comments.
MAX_TARGET_LINE_BYTES = 4096

TARGET_FORMS_HINT = (
    "use an address (198.18.0.1, 2001:db8::1), a CIDR (198.18.0.0/24), "
    "a range (198.18.0.1-198.18.0.40 or 198.18.0.1-40), a DNS name "
    "(host.example) or @FILE with one of these a line"
)
PORT_FORMS_HINT = "use ports and ranges from 1 to 65535, e.g. 80,443,8000-8010"

# A DNS label per RFC 1123 section 2.1, plus the underscore that service
# names such as _sip._tcp use.
_LABEL_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_MAX_NAME_LEN = 253

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one IP version, as integers."""

    version: int
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.version not in (4, 6):
            raise ValueError(f"IP version must be 4 or 6, not {self.version}")
        max_address = (1 << (32 if self.version == 4 else 128)) - 1
        if not 0 <= self.first <= self.last <= max_address:
            raise ValueError(
                f"invalid IPv{self.version} range {self.first}-{self.last}"
            )

    @classmethod
    def from_network(cls, network: IPNetwork | IPAddress | str) -> AddressRange:
        """Build the range of a network, a single address or its text form."""
        if isinstance(network, str):
            network = ipaddress.ip_network(network, strict=False)
        if isinstance(network, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return cls(network.version, int(network), int(network))
        return cls(
            network.version,
            int(network.network_address),
            int(network.broadcast_address),
        )

    @property
    def size(self) -> int:
        """Number of addresses in the range."""
        return self.last - self.first + 1

    def address(self, offset: int) -> str:
        """Return the text form of the address at `offset` from the start."""
        return _format_address(self.version, self.first + offset)

    def __str__(self) -> str:
        first = _format_address(self.version, self.first)
        if self.first == self.last:
            return first
        return f"{first}-{_format_address(self.version, self.last)}"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """Parsed targets: address ranges, and DNS names still to resolve."""

    networks: tuple[AddressRange, ...]
    names: tuple[str, ...]


def _format_address(version: int, value: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


# Parsing


def parse_ports(spec: str) -> tuple[int, ...]:
    """Parse a port list such as ``80,443,8000-8010``.

    Returns:
        The ports in ascending order, each once.

    Raises:
        InputError: a port is not a number from 1 to 65535, or a range is
            reversed or empty.
    """
    ports: set[int] = set()
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip():
        raise InputError("invalid port list '': no ports given", PORT_FORMS_HINT)
    for item in items:
        if not item:
            raise InputError(
                f"invalid port list '{spec}': empty item between commas",
                PORT_FORMS_HINT,
            )
        low_text, dash, high_text = item.partition("-")
        low = _parse_port(low_text.strip(), spec)
        high = _parse_port(high_text.strip(), spec) if dash else low
        if low > high:
            raise InputError(
                f"invalid port range '{item}': start {low} is after end {high}",
                PORT_FORMS_HINT,
            )
        ports.update(range(low, high + 1))
    return tuple(sorted(ports))


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise InputError(
            f"invalid port '{text}' in '{spec}': not a number", PORT_FORMS_HINT
        )
    port = int(text)
    if not MIN_PORT <= port <= MAX_PORT:
        raise InputError(
            f"invalid port '{text}' in '{spec}': must be from 1 to 65535",
            PORT_FORMS_HINT,
        )
    return port


def parse_targets(specs: Sequence[str]) -> TargetSpec:
    """Parse target specifications into address ranges and DNS names.

    Each spec is one of the forms in the module docstring, and an argument
    may contain several, separated by commas. ``@FILE`` reads one spec a line,
    with ``#`` comments and blank lines skipped.

    Raises:
        InputError: a spec matches none of the forms, a file cannot be read,
            or no target is given at all.
    """
    networks: list[AddressRange] = []
    names: list[str] = []
    for source, text in _expand_specs(specs):
        parsed = _parse_one(text, source, allow_names=True)
        if isinstance(parsed, str):
            if parsed not in names:
                names.append(parsed)
        else:
            networks.append(parsed)
    if not networks and not names:
        raise InputError("no targets given", TARGET_FORMS_HINT)
    return TargetSpec(tuple(networks), tuple(names))


def parse_exclusions(
    specs: Sequence[str] = (), files: Sequence[str] = ()
) -> tuple[AddressRange, ...]:
    """Parse ``--exclude`` values and ``--exclude-file`` files.

    Exclusions take addresses, CIDRs and ranges, never DNS names, because an
    exclusion must not depend on what a resolver returns.

    Raises:
        InputError: an exclusion is not an address, CIDR or range, or a file
            cannot be read.
    """
    ranges: list[AddressRange] = []
    all_specs = list(specs) + [f"@{name}" for name in files]
    for source, text in _expand_specs(all_specs):
        parsed = _parse_one(text, source, allow_names=False)
        assert isinstance(parsed, AddressRange)
        ranges.append(parsed)
    return tuple(ranges)


def _expand_specs(specs: Sequence[str]) -> Iterator[tuple[str | None, str]]:
    """Yield (source, spec) with files read and comma lists split.

    The source is ``FILE:LINE`` for specs read from a file, else None.
    """
    for spec in specs:
        if spec.startswith("@"):
            yield from _read_spec_file(spec[1:])
            continue
        for item in spec.split(","):
            item = item.strip()
            if item:
                yield None, item


def _read_spec_file(name: str) -> Iterator[tuple[str | None, str]]:
    if not name:
        raise InputError(
            "invalid target '@': missing file name after @", TARGET_FORMS_HINT
        )
    try:
        with Path(name).open("rb") as handle:
            yield from _spec_lines(handle, name)
    except OSError as error:
        raise InputError(
            f"cannot read target file '{name}': {error}",
            "check that the file exists, is readable and is UTF-8 text",
        ) from error


def _spec_lines(handle: BinaryIO, name: str) -> Iterator[tuple[str | None, str]]:
    for number, line in enumerate(_read_lines(handle, name), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            raise InputError(
                f"invalid target {line!r} at {name}:{number}: "
                "@FILE is not allowed inside a target file",
                "list the addresses of the other file directly",
            )
        yield f"{name}:{number}", line


def _read_lines(handle: BinaryIO, name: str) -> Iterator[str]:
    """Yield a target file's lines, each at most MAX_TARGET_LINE_BYTES long.

    Lines are read one at a time, so that a file of millions of targets is
    never held whole, and a file with no line ends (/dev/zero) fails at
    once instead of filling memory.
    """
    number = 0
    while line := handle.readline(MAX_TARGET_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_TARGET_LINE_BYTES:
            raise InputError(
                f"line {number} of target file '{name}' is longer than "
                f"{MAX_TARGET_LINE_BYTES} bytes",
                "give one address, CIDR, range or name per line",
            )
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"cannot read target file '{name}': line {number} is not UTF-8"
                f" ({error.reason} at byte {error.start})",
                "check that the file is UTF-8 text",
            ) from None


def _parse_one(
    text: str, source: str | None, *, allow_names: bool
) -> AddressRange | str:
    """Parse one spec; return a range, or a name when names are allowed."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return AddressRange.from_network(address)

    try:
        if "/" in text:
            return _parse_cidr(text)
        if "-" in text and _looks_like_address(text.partition("-")[0]):
            return _parse_range(text)
    except _SpecError as error:
        raise _invalid(text, source, str(error), allow_names=allow_names) from None
    if allow_names and _is_dns_name(text):
        return text.rstrip(".").lower()
    if allow_names:
        reason = "not an IPv4/IPv6 address, CIDR, range or DNS name"
    else:
        reason = "not an IPv4/IPv6 address, CIDR or range"
    raise _invalid(text, source, reason, allow_names=allow_names)


class _SpecError(Exception):
    """Internal: the reason a CIDR or range is invalid."""


def _invalid(
    text: str, source: str | None, reason: str, *, allow_names: bool
) -> InputError:
    kind = "target" if allow_names else "exclusion"
    where = f" at {source}" if source else ""
    hint = TARGET_FORMS_HINT
    if not allow_names:
        hint = (
            "use an address (198.18.0.1), a CIDR (198.18.0.0/24) or a range "
            "(198.18.0.1-198.18.0.40 or 198.18.0.1-40)"
        )
    return InputError(f"invalid {kind} '{text}'{where}: {reason}", hint)


def _looks_like_address(text: str) -> bool:
    """Tell whether text starts like an address, so a name like a-b.example
    is not mistaken for a range."""
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _parse_cidr(text: str) -> AddressRange:
    address_text, _, prefix_text = text.partition("/")
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        raise _SpecError(f"'{address_text}' is not an IPv4 or IPv6 address") from None
    max_prefix = address.max_prefixlen
    if not prefix_text.isdigit() or not prefix_text.isascii():
        raise _SpecError(f"prefix length '{prefix_text}' is not a number")
    if int(prefix_text) > max_prefix:
        raise _SpecError(
            f"prefix length {int(prefix_text)} is above {max_prefix}, "
            f"the maximum for IPv{address.version}"
        )
    network = ipaddress.ip_network(f"{address}/{int(prefix_text)}", strict=False)
    return AddressRange.from_network(network)


def _parse_range(text: str) -> AddressRange:
    start_text, _, end_text = text.partition("-")
    start = ipaddress.ip_address(start_text.strip())
    end_text = end_text.strip()
    end = _parse_range_end(start, end_text)
    if int(start) > int(end):
        raise _SpecError(f"range start {start} is after its end {end}")
    return AddressRange(start.version, int(start), int(end))


def _parse_range_end(start: IPAddress, end_text: str) -> IPAddress:
    """Parse a range end: a full address, or the last IPv4 octet (decimal) or
    IPv6 group (hexadecimal) that replaces the start's last one."""
    try:
        end = ipaddress.ip_address(end_text)
    except ValueError:
        pass
    else:
        if end.version != start.version:
            raise _SpecError(
                f"range mixes IPv{start.version} and IPv{end.version} addresses"
            )
        return end

    if start.version == 4:
        if not end_text.isdigit() or not end_text.isascii() or int(end_text) > 255:
            raise _SpecError(
                f"range end '{end_text}' is neither an IPv4 address nor "
                "a last octet from 0 to 255"
            )
        return ipaddress.IPv4Address((int(start) & ~0xFF) | int(end_text))
    if not re.fullmatch(r"[0-9A-Fa-f]{1,4}", end_text):
        raise _SpecError(
            f"range end '{end_text}' is neither an IPv6 address nor "
            "a last group from 0 to ffff"
        )
    return ipaddress.IPv6Address((int(start) & ~0xFFFF) | int(end_text, 16))


def _is_dns_name(text: str) -> bool:
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > _MAX_NAME_LEN:
        return False
    labels = name.split(".")
    if not all(_LABEL_RE.match(label) for label in labels):
        return False
    # An all-numeric last label makes 198.18.0.300 a bad address, not a name
    # (RFC 3696 section 2: top-level domains are never all-numeric).
    return not labels[-1].isdigit()


# The target space


def merge_ranges(ranges: Iterable[AddressRange]) -> tuple[AddressRange, ...]:
    """Sort ranges and join those that overlap or touch, so that each
    address appears once."""
    merged: list[AddressRange] = []
    for item in sorted(ranges):
        if merged:
            last = merged[-1]
            if last.version == item.version and item.first <= last.last + 1:
                if item.last > last.last:
                    merged[-1] = AddressRange(item.version, last.first, item.last)
                continue
        merged.append(item)
    return tuple(merged)


def subtract_ranges(
    ranges: Iterable[AddressRange], exclude: Iterable[AddressRange]
) -> tuple[AddressRange, ...]:
    """Remove every excluded address from the ranges.

    Work and memory grow with the number of ranges, not their sizes.
    """
    remaining = list(merge_ranges(ranges))
    for cut in merge_ranges(exclude):
        pieces: list[AddressRange] = []
        for item in remaining:
            if (
                item.version != cut.version
                or cut.last < item.first
                or cut.first > item.last
            ):
                pieces.append(item)
                continue
            if item.first < cut.first:
                pieces.append(AddressRange(item.version, item.first, cut.first - 1))
            if cut.last < item.last:
                pieces.append(AddressRange(item.version, cut.last + 1, item.last))
        remaining = pieces
    return tuple(remaining)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse a shard given as ``I/N``, with 0 <= I < N.

    Raises:
        InputError: the text is not two numbers separated by a slash, or I is
            not below N.
    """
    index_text, slash, count_text = text.partition("/")
    hint = "give the shard as I/N with 0 <= I < N, e.g. 0/4 ... 3/4"
    if not slash or not index_text.isdigit() or not count_text.isdigit():
        raise InputError(f"invalid shard '{text}': expected I/N", hint)
    index, count = int(index_text), int(count_text)
    if count < 1:
        raise InputError(f"invalid shard '{text}': the count must be 1 or more", hint)
    if index >= count:
        raise InputError(
            f"invalid shard '{text}': index {index} is not below the count {count}",
            hint,
        )
    return index, count


class TargetSpace:
    """Addresses x ports, enumerated in a seeded pseudo-random order.

    Each probe (address, port) gets an index in [0, size). The iteration walks
    the cyclic group of integers modulo a safe prime p > size, generated by a
    random element g: x, x*g, x*g^2, ... visits every value 1 .. p-1 exactly
    once, and values above size are skipped. Shard I of N takes the elements at
    positions I, I+N, I+2N, ... of that walk, so N runs that share a seed cover
    the space together once, with no overlap. The memory used is that of the
    merged input ranges.

    Args:
        networks: address ranges, networks or addresses, or their text forms
            (an address, CIDR or range); overlaps are merged.
        ports: destination ports; duplicates are dropped.
        exclude: ranges removed from the space before enumeration.
        seed: selects the generator and the start of the walk. Shards of one
            scan must share it; None draws a fresh one (see `seed`).
        shard: (I, N) with 0 <= I < N.

    Raises:
        ValueError: the shard is out of range, or a port is outside 1-65535.
        InputError: a network or exclusion given as text is invalid, or
            several shards are requested without a seed.
    """

    def __init__(
        self,
        networks: Iterable[AddressRange | IPNetwork | IPAddress | str],
        ports: Iterable[int],
        exclude: Iterable[AddressRange | IPNetwork | IPAddress | str] = (),
        seed: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"invalid shard {index}/{count}: need 0 <= I < N")
        self.ports = tuple(sorted(set(ports)))
        for port in self.ports:
            if not MIN_PORT <= port <= MAX_PORT:
                raise ValueError(f"invalid port {port}: must be from 1 to 65535")
        self.ranges = subtract_ranges(
            (_to_range(item) for item in networks),
            (_to_range(item) for item in exclude),
        )
        if count > 1 and seed is None:
            raise InputError(
                f"shard {index}/{count} given without a seed",
                "give the same --seed to every shard, so that they split one "
                "permutation of the space",
            )
        self.shard = (index, count)
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(63)

        # Cumulative address counts, for a binary search from index to range.
        self._starts: list[int] = []
        total = 0
        for item in self.ranges:
            self._starts.append(total)
            total += item.size
        self.address_count = total
        self.size = total * len(self.ports)

        self._prime = _next_safe_prime(self.size)
        self._generator, self._first = _pick_generator(self._prime, self.seed)

    def __len__(self) -> int:
        """Number of probes in the whole space, after exclusions and before
        sharding. Python's len() cannot exceed sys.maxsize; use `size` for
        larger IPv6 spaces."""
        return self.size

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for value in self.indices():
            yield self.probe_at(value)

    @property
    def shard_steps(self) -> int:
        """Number of walk steps in this shard, skipped values included: the
        largest `start` that `walk` accepts."""
        index, count = self.shard
        return (self._prime - 1 - index + count - 1) // count

    def indices(self, start: int = 0) -> Iterator[int]:
        """Yield this shard's probe indices in walk order, from walk step
        `start` of the shard on (see `walk`)."""
        if self.size == 0:
            return
        prime, generator = self._prime, self._generator
        index, count = self.shard
        step = pow(generator, count, prime)
        # The walk has p - 1 elements; this shard owns positions index,
        # index + count, ... below p - 1.
        element = self._first * pow(generator, index + start * count, prime) % prime
        for _ in range(self.shard_steps - start):
            if element <= self.size:
                yield element - 1
            element = element * step % prime

    def walk(self, start: int = 0) -> Walk:
        """Return this shard's probes as packed addresses, from walk step
        `start` on, counting the steps taken so that a scan can resume.

        Raises:
            ValueError: `start` is negative or beyond `shard_steps`.
        """
        if not 0 <= start <= self.shard_steps:
            raise ValueError(
                f"invalid walk start {start}: must be from 0 to {self.shard_steps}"
            )
        return Walk(self, start)

    def probe_at(self, value: int) -> tuple[str, int]:
        """Return the (address, port) with index `value`."""
        address_index, port_index = divmod(value, len(self.ports))
        position = bisect.bisect_right(self._starts, address_index) - 1
        item = self.ranges[position]
        address = item.address(address_index - self._starts[position])
        return address, self.ports[port_index]


class Walk:
    """One pass over a shard of a `TargetSpace`, yielding (packed address,
    port) pairs: 4 bytes for IPv4, 16 for IPv6.

    `position` is the number of walk steps taken so far, values skipped
    because they fall outside the space included. A new walk from
    `space.walk(position)` continues exactly after the last pair yielded.
    """

    def __init__(self, space: TargetSpace, start: int) -> None:
        self.space = space
        self.position = start

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        space = self.space
        if space.size == 0:
            return
        ports = space.ports
        port_count = len(ports)
        ranges = space.ranges
        starts = space._starts
        size = space.size
        prime = space._prime
        index, count = space.shard
        step = pow(space._generator, count, prime)
        exponent = index + self.position * count
        element = space._first * pow(space._generator, exponent, prime) % prime
        # One range, the common case, needs no search per probe.
        single = ranges[0] if len(ranges) == 1 else None
        for position in range(self.position + 1, space.shard_steps + 1):
            value = element - 1
            element = element * step % prime
            if value >= size:
                continue
            address_index, port_index = divmod(value, port_count)
            if single is not None:
                item = single
                offset = address_index
            else:
                found = bisect.bisect_right(starts, address_index) - 1
                item = ranges[found]
                offset = address_index - starts[found]
            width = 4 if item.version == 4 else 16
            # Set before yielding, so that a consumer that stops after this
            # pair resumes at the next one.
            self.position = position
            yield (item.first + offset).to_bytes(width, "big"), ports[port_index]
        self.position = space.shard_steps


def _to_range(item: AddressRange | IPNetwork | IPAddress | str) -> AddressRange:
    if isinstance(item, AddressRange):
        return item
    if isinstance(item, str):
        parsed = _parse_one(item, None, allow_names=False)
        assert isinstance(parsed, AddressRange)
        return parsed
    return AddressRange.from_network(item)


# Number theory for the permutation


_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53)


def _is_probable_prime(n: int) -> bool:
    """Test n with Miller-Rabin, using the first 16 primes as bases.

    NOTE: with fixed bases this is a probable-prime test. A composite modulus
    would make the walk skip probes; the coverage tests check full coverage
    for the sizes they use.
    """
    if n < 2:
        return False
    for prime in _SMALL_PRIMES:
        if n % prime == 0:
            return n == prime
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for base in _SMALL_PRIMES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _next_safe_prime(n: int) -> int:
    """Return the smallest safe prime p = 2q + 1 (q prime) with p > n.

    p - 1 = 2q has only the factors 2 and q, which makes testing a generator
    cheap, and p > n leaves room for the n values 1 .. n in the group.
    """
    q = max(2, n // 2)
    while True:
        p = 2 * q + 1
        if p > n and _is_probable_prime(q) and _is_probable_prime(p):
            return p
        q += 1


def _pick_generator(prime: int, seed: int) -> tuple[int, int]:
    """Draw a generator of the multiplicative group modulo a safe prime, and
    a start element, from the seed."""
    rng = random.Random(seed)
    q = (prime - 1) // 2
    while True:
        candidate = rng.randrange(2, prime - 1)
        # With p - 1 = 2q, g generates the group unless g^2 = 1 or g^q = 1.
        if pow(candidate, 2, prime) != 1 and pow(candidate, q, prime) != 1:
            break
    start = rng.randrange(1, prime)
    return candidate, start

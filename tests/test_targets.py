"""Tests for target and port parsing and the permuted target space."""

from __future__ import annotations

import ipaddress
import itertools
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktscan.errors import InputError
from pktscan.targets import (
    MAX_TARGET_LINE_BYTES,
    AddressRange,
    TargetSpace,
    merge_ranges,
    parse_exclusions,
    parse_ports,
    parse_shard,
    parse_targets,
)


def v4(first: str, last: str | None = None) -> AddressRange:
    return AddressRange(
        4,
        int(ipaddress.IPv4Address(first)),
        int(ipaddress.IPv4Address(last or first)),
    )


def v6(first: str, last: str | None = None) -> AddressRange:
    return AddressRange(
        6,
        int(ipaddress.IPv6Address(first)),
        int(ipaddress.IPv6Address(last or first)),
    )


# Ports


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("443", (443,)),
        ("80,443", (80, 443)),
        ("443,80,443", (80, 443)),
        ("8000-8003", (8000, 8001, 8002, 8003)),
        ("80, 443 ,8000-8001", (80, 443, 8000, 8001)),
        ("1,65535", (1, 65535)),
        ("7-7", (7,)),
    ],
)
def test_parse_ports_valid(spec: str, expected: tuple[int, ...]) -> None:
    assert parse_ports(spec) == expected


def test_parse_ports_full_range() -> None:
    ports = parse_ports("1-65535")
    assert len(ports) == 65535
    assert ports[0] == 1
    assert ports[-1] == 65535


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "invalid port list '': no ports given"),
        ("80,,443", "invalid port list '80,,443': empty item between commas"),
        ("0", "invalid port '0' in '0': must be from 1 to 65535"),
        ("65536", "invalid port '65536' in '65536': must be from 1 to 65535"),
        ("http", "invalid port 'http' in 'http': not a number"),
        ("80-", "invalid port '' in '80-': not a number"),
        ("-5", "invalid port '' in '-5': not a number"),
        ("90-80", "invalid port range '90-80': start 90 is after end 80"),
        ("1-2-3", "invalid port '2-3' in '1-2-3': not a number"),
        ("٣", "invalid port '٣' in '٣': not a number"),
    ],
)
def test_parse_ports_invalid(spec: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_ports(spec)
    assert caught.value.message == message
    assert caught.value.hint is not None
    assert "80,443,8000-8010" in caught.value.hint


# Targets


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("198.18.0.1", v4("198.18.0.1")),
        ("198.18.0.0/24", v4("198.18.0.0", "198.18.0.255")),
        ("198.18.0.7/24", v4("198.18.0.0", "198.18.0.255")),
        ("198.18.0.9/32", v4("198.18.0.9")),
        ("0.0.0.0/0", v4("0.0.0.0", "255.255.255.255")),
        ("198.18.0.1-198.18.0.40", v4("198.18.0.1", "198.18.0.40")),
        ("198.18.0.1-40", v4("198.18.0.1", "198.18.0.40")),
        ("198.18.0.250-198.18.1.3", v4("198.18.0.250", "198.18.1.3")),
        ("198.18.0.5-5", v4("198.18.0.5")),
        ("2001:db8::1", v6("2001:db8::1")),
        ("2001:db8::/120", v6("2001:db8::", "2001:db8::ff")),
        ("2001:db8::1-2001:db8::1:0", v6("2001:db8::1", "2001:db8::1:0")),
        ("2001:db8::1-ff", v6("2001:db8::1", "2001:db8::ff")),
        ("2001:db8::1-FF", v6("2001:db8::1", "2001:db8::ff")),
    ],
)
def test_parse_targets_network_forms(spec: str, expected: AddressRange) -> None:
    parsed = parse_targets([spec])
    assert parsed.networks == (expected,)
    assert parsed.names == ()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("host.example", "host.example"),
        ("Host.Example.", "host.example"),
        ("a-b.example", "a-b.example"),
        ("localhost", "localhost"),
        ("_sip._tcp.example", "_sip._tcp.example"),
        ("1.2.3.example", "1.2.3.example"),
    ],
)
def test_parse_targets_names(spec: str, expected: str) -> None:
    parsed = parse_targets([spec])
    assert parsed.names == (expected,)
    assert parsed.networks == ()


def test_parse_targets_comma_list_and_duplicate_names() -> None:
    parsed = parse_targets(["198.18.0.1,host.example", "host.example, 198.18.0.2"])
    assert parsed.networks == (v4("198.18.0.1"), v4("198.18.0.2"))
    assert parsed.names == ("host.example",)


def test_parse_targets_file(tmp_path: Path) -> None:
    target_file = tmp_path / "targets.txt"
    target_file.write_text(
        "# lab hosts\n198.18.0.1\n\n   198.18.1.0/30   # a small net\ntls.lab.example\n"
    )
    parsed = parse_targets([f"@{target_file}", "198.18.2.1-2"])
    assert parsed.networks == (
        v4("198.18.0.1"),
        v4("198.18.1.0", "198.18.1.3"),
        v4("198.18.2.1", "198.18.2.2"),
    )
    assert parsed.names == ("tls.lab.example",)


INVALID_TARGETS = [
    (
        "198.18.0.300",
        "invalid target '198.18.0.300': "
        "not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "198.18.0",
        "invalid target '198.18.0': not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "-host.example",
        "invalid target '-host.example': "
        "not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "host..example",
        "invalid target 'host..example': "
        "not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "a" * 64 + ".example",
        f"invalid target '{'a' * 64}.example': "
        "not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "host name",
        "invalid target 'host name': not an IPv4/IPv6 address, CIDR, range or DNS name",
    ),
    (
        "198.18.0.0/33",
        "invalid target '198.18.0.0/33': "
        "prefix length 33 is above 32, the maximum for IPv4",
    ),
    (
        "2001:db8::/129",
        "invalid target '2001:db8::/129': "
        "prefix length 129 is above 128, the maximum for IPv6",
    ),
    (
        "198.18.0.0/",
        "invalid target '198.18.0.0/': prefix length '' is not a number",
    ),
    (
        "198.18.0.0/x",
        "invalid target '198.18.0.0/x': prefix length 'x' is not a number",
    ),
    (
        "host/24",
        "invalid target 'host/24': 'host' is not an IPv4 or IPv6 address",
    ),
    (
        "198.18.0.40-198.18.0.1",
        "invalid target '198.18.0.40-198.18.0.1': "
        "range start 198.18.0.40 is after its end 198.18.0.1",
    ),
    (
        "198.18.0.40-1",
        "invalid target '198.18.0.40-1': "
        "range start 198.18.0.40 is after its end 198.18.0.1",
    ),
    (
        "198.18.0.1-256",
        "invalid target '198.18.0.1-256': "
        "range end '256' is neither an IPv4 address nor a last octet from 0 to 255",
    ),
    (
        "198.18.0.1-",
        "invalid target '198.18.0.1-': "
        "range end '' is neither an IPv4 address nor a last octet from 0 to 255",
    ),
    (
        "198.18.0.1-2001:db8::1",
        "invalid target '198.18.0.1-2001:db8::1': range mixes IPv4 and IPv6 addresses",
    ),
    (
        "2001:db8::1-10000",
        "invalid target '2001:db8::1-10000': "
        "range end '10000' is neither an IPv6 address nor a last group "
        "from 0 to ffff",
    ),
    ("@", "invalid target '@': missing file name after @"),
]


@pytest.mark.parametrize(("spec", "message"), INVALID_TARGETS)
def test_parse_targets_invalid(spec: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_targets([spec])
    assert caught.value.message == message
    assert caught.value.hint is not None
    assert "198.18.0.0/24" in caught.value.hint


def test_parse_targets_empty() -> None:
    with pytest.raises(InputError) as caught:
        parse_targets([" , "])
    assert caught.value.message == "no targets given"


def test_parse_targets_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{missing}"])
    assert caught.value.message.startswith(f"cannot read target file '{missing}': ")

    bad = tmp_path / "bad.txt"
    bad.write_text("198.18.0.1\n# comment\n198.18.0.999\n")
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{bad}"])
    assert caught.value.message == (
        f"invalid target '198.18.0.999' at {bad}:3: "
        "not an IPv4/IPv6 address, CIDR, range or DNS name"
    )

    nested = tmp_path / "nested.txt"
    nested.write_text(f"@{bad}\n")
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{nested}"])
    assert caught.value.message == (
        f"invalid target '@{bad}' at {nested}:1: "
        "@FILE is not allowed inside a target file"
    )


# Exclusions and shards


def test_parse_exclusions_specs_and_file(tmp_path: Path) -> None:
    exclude_file = tmp_path / "exclude.txt"
    exclude_file.write_text("# never\n198.18.5.0/24\n198.18.6.1-9\n")
    parsed = parse_exclusions(["198.18.0.1", "198.18.1.0/30"], [str(exclude_file)])
    assert parsed == (
        v4("198.18.0.1"),
        v4("198.18.1.0", "198.18.1.3"),
        v4("198.18.5.0", "198.18.5.255"),
        v4("198.18.6.1", "198.18.6.9"),
    )


def test_parse_exclusions_rejects_names() -> None:
    with pytest.raises(InputError) as caught:
        parse_exclusions(["host.example"])
    assert caught.value.message == (
        "invalid exclusion 'host.example': not an IPv4/IPv6 address, CIDR or range"
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", (0, 1)), ("3/4", (3, 4)), ("0/16", (0, 16))]
)
def test_parse_shard_valid(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", "invalid shard '1': expected I/N"),
        ("a/b", "invalid shard 'a/b': expected I/N"),
        ("-1/4", "invalid shard '-1/4': expected I/N"),
        ("4/4", "invalid shard '4/4': index 4 is not below the count 4"),
        ("0/0", "invalid shard '0/0': the count must be 1 or more"),
    ],
)
def test_parse_shard_invalid(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_shard(text)
    assert caught.value.message == message


def test_merge_ranges_joins_overlaps() -> None:
    merged = merge_ranges(
        [
            v4("198.18.0.10", "198.18.0.20"),
            v4("198.18.0.0", "198.18.0.10"),
            v4("198.18.0.21", "198.18.0.22"),
            v4("198.18.0.30"),
            v6("::1"),
        ]
    )
    assert merged == (v4("198.18.0.0", "198.18.0.22"), v4("198.18.0.30"), v6("::1"))


# The target space


def expected_probes(addresses: list[str], ports: list[int]) -> set[tuple[str, int]]:
    return {(address, port) for address in addresses for port in ports}


def hosts(cidr: str) -> list[str]:
    network = ipaddress.ip_network(cidr)
    return [str(address) for address in network]


def test_space_covers_every_probe_once() -> None:
    space = TargetSpace([v4("198.18.0.0", "198.18.0.255")], [80, 443, 8443], seed=7)
    probes = list(space)
    assert len(probes) == 768
    assert len(space) == 768
    assert set(probes) == expected_probes(hosts("198.18.0.0/24"), [80, 443, 8443])


def test_space_order_is_permuted_and_seeded() -> None:
    networks = [v4("198.18.0.0", "198.18.0.255")]
    first = list(TargetSpace(networks, [443], seed=1))
    again = list(TargetSpace(networks, [443], seed=1))
    other = list(TargetSpace(networks, [443], seed=2))
    in_order = [(address, 443) for address in hosts("198.18.0.0/24")]
    assert first == again
    assert first != other
    assert first != in_order
    assert sorted(first, key=lambda p: ipaddress.ip_address(p[0])) == in_order


@pytest.mark.parametrize("size", range(0, 40))
def test_space_small_sizes(size: int) -> None:
    networks = [v4("198.18.0.0", f"198.18.0.{size - 1}")] if size else []
    probes = list(TargetSpace(networks, [443], seed=size))
    assert sorted(probes) == sorted((f"198.18.0.{i}", 443) for i in range(size))


def test_space_overlapping_inputs_once() -> None:
    space = TargetSpace(
        ["198.18.0.0/30", "198.18.0.2", v4("198.18.0.3", "198.18.0.5")],
        [443, 443, 80],
        seed=3,
    )
    probes = list(space)
    assert len(probes) == 12
    assert set(probes) == expected_probes(
        [f"198.18.0.{i}" for i in range(6)], [80, 443]
    )


def test_space_exclusions() -> None:
    space = TargetSpace(
        ["198.18.0.0/24"],
        [443, 8443],
        exclude=["198.18.0.128/25", v4("198.18.0.10", "198.18.0.19"), "198.18.0.0"],
        seed=11,
    )
    kept = [f"198.18.0.{i}" for i in range(1, 128) if not 10 <= i <= 19]
    probes = list(space)
    assert space.size == len(kept) * 2
    assert len(probes) == len(kept) * 2
    assert set(probes) == expected_probes(kept, [443, 8443])


def test_space_exclusion_covering_everything() -> None:
    space = TargetSpace(["198.18.0.0/24"], [443], exclude=["198.18.0.0/16"], seed=1)
    assert space.size == 0
    assert list(space) == []


def test_space_mixed_ip_versions() -> None:
    space = TargetSpace(["2001:db8::/126", "198.18.0.0/31"], [443], seed=5)
    assert set(space) == expected_probes(
        [
            "198.18.0.0",
            "198.18.0.1",
            "2001:db8::",
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::3",
        ],
        [443],
    )


@pytest.mark.parametrize("shard_count", [1, 2, 3, 5, 8, 13])
def test_shards_are_disjoint_and_complete(shard_count: int) -> None:
    networks = ["198.18.0.0/25", "198.18.3.0-198.18.3.77"]
    exclude = ["198.18.0.32/28", "198.18.3.50"]
    ports = [22, 443]
    seen: list[tuple[str, int]] = []
    for index in range(shard_count):
        space = TargetSpace(
            networks, ports, exclude=exclude, seed=99, shard=(index, shard_count)
        )
        seen.extend(space)
    full = list(TargetSpace(networks, ports, exclude=exclude, seed=99))
    assert len(seen) == len(full)
    assert len(set(seen)) == len(seen)
    assert set(seen) == set(full)


def test_shards_differ_between_seeds_but_each_cover() -> None:
    networks = ["198.18.0.0/26"]
    shards_a = [
        list(TargetSpace(networks, [443], seed=1, shard=(i, 2))) for i in (0, 1)
    ]
    shards_b = [
        list(TargetSpace(networks, [443], seed=2, shard=(i, 2))) for i in (0, 1)
    ]
    assert shards_a[0] != shards_b[0]
    assert len(shards_a[0]) + len(shards_a[1]) == 64
    assert len(shards_b[0]) + len(shards_b[1]) == 64


def test_space_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="invalid shard 2/2"):
        TargetSpace(["198.18.0.1"], [443], shard=(2, 2))
    with pytest.raises(ValueError, match="invalid port 0"):
        TargetSpace(["198.18.0.1"], [0])


def test_space_memory_is_constant() -> None:
    """A /8 x 65535 ports space (10^12 probes) builds and starts iterating
    without materialising anything of its size."""
    tracemalloc.start()
    try:
        space = TargetSpace(["10.0.0.0/8"], range(1, 65536), seed=4)
        iterator = iter(space)
        first = [next(iterator) for _ in range(10_000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert space.size == (1 << 24) * 65535
    assert len(set(first)) == 10_000
    # The ports tuple (65535 ints, about 1 MB with their list) dominates;
    # one byte per probe would be 1 TB.
    assert peak < 8 * 1024 * 1024


def test_space_ipv6_huge() -> None:
    space = TargetSpace(["2001:db8::/64"], [443], seed=8)
    assert space.size == 1 << 64
    iterator = iter(space)
    first = [next(iterator) for _ in range(1000)]
    assert len(set(first)) == 1000
    for address, port in first:
        assert ipaddress.IPv6Address(address) in ipaddress.ip_network("2001:db8::/64")
        assert port == 443


def test_shards_need_a_seed() -> None:
    with pytest.raises(InputError) as caught:
        TargetSpace(["198.18.0.0/30"], [443], shard=(0, 2))
    assert caught.value.message == "shard 0/2 given without a seed"


# Properties


@st.composite
def small_spaces(
    draw: st.DrawFn,
) -> tuple[list[AddressRange], list[int], list[AddressRange]]:
    """Random IPv4 ranges inside 198.18.0.0/22, ports and exclusions."""
    base = int(ipaddress.IPv4Address("198.18.0.0"))

    def ranges(max_count: int) -> list[AddressRange]:
        result = []
        for _ in range(draw(st.integers(0, max_count))):
            first = draw(st.integers(0, 1023))
            length = draw(st.integers(0, 40))
            result.append(
                AddressRange(4, base + first, base + min(first + length, 1023))
            )
        return result

    networks = ranges(4)
    ports = draw(st.lists(st.integers(1, 65535), min_size=1, max_size=4))
    return networks, ports, ranges(3)


@settings(max_examples=60, deadline=None)
@given(
    space=small_spaces(),
    seed=st.integers(0, 2**63 - 1),
    shard_count=st.integers(1, 6),
)
def test_shards_partition_any_space(
    space: tuple[list[AddressRange], list[int], list[AddressRange]],
    seed: int,
    shard_count: int,
) -> None:
    networks, ports, exclude = space
    excluded = {
        str(ipaddress.IPv4Address(value))
        for item in exclude
        for value in range(item.first, item.last + 1)
    }
    addresses = {
        str(ipaddress.IPv4Address(value))
        for item in networks
        for value in range(item.first, item.last + 1)
    } - excluded
    expected = expected_probes(sorted(addresses), sorted(set(ports)))

    seen: list[tuple[str, int]] = []
    for index in range(shard_count):
        seen.extend(
            TargetSpace(
                networks, ports, exclude=exclude, seed=seed, shard=(index, shard_count)
            )
        )
    assert len(seen) == len(expected)
    assert set(seen) == expected


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 2**32 - 1),
    length=st.integers(0, 300),
)
def test_range_text_round_trip(first: int, length: int) -> None:
    item = AddressRange(4, first, min(first + length, 2**32 - 1))
    assert parse_targets([str(item)]).networks == (item,)


# Walks: the packed form and resuming


def _unpack(address: bytes) -> str:
    return str(ipaddress.ip_address(address))


@pytest.mark.parametrize("shard", [(0, 1), (1, 3)])
def test_walk_matches_text_order(shard: tuple[int, int]) -> None:
    networks = ["198.18.0.0/26", "198.18.5.7-198.18.5.20", "2001:db8::/124"]
    space = TargetSpace(networks, [22, 443], seed=8, shard=shard)
    packed = [(_unpack(address), port) for address, port in space.walk()]
    assert packed == list(space)


def test_walk_addresses_are_packed() -> None:
    space = TargetSpace(["198.18.0.1", "2001:db8::1"], [443], seed=1)
    addresses = sorted(address for address, _ in space.walk())
    assert addresses == [
        bytes.fromhex("20010db8000000000000000000000001"),
        bytes([198, 18, 0, 1]),
    ]


def test_walk_position_ends_at_shard_steps() -> None:
    space = TargetSpace(["198.18.0.0/28"], [443], seed=3, shard=(1, 2))
    walk = space.walk()
    list(walk)
    assert walk.position == space.shard_steps


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=300),
    cut=st.integers(min_value=0, max_value=300),
    shard_count=st.integers(min_value=1, max_value=4),
)
def test_walk_resumes_after_any_cut(size: int, cut: int, shard_count: int) -> None:
    """Stopping after `cut` pairs and walking again from the position gives
    the rest of the walk, with nothing lost and nothing repeated."""
    networks = [AddressRange(4, 0xC6120000, 0xC6120000 + size - 1)]
    for index in range(shard_count):
        space = TargetSpace(networks, [80], seed=21, shard=(index, shard_count))
        full = list(space.walk())
        walk = space.walk()
        head = list(itertools.islice(walk, cut))
        tail = list(space.walk(walk.position))
        assert head + tail == full


def test_walk_rejects_invalid_start() -> None:
    space = TargetSpace(["198.18.0.0/30"], [443], seed=1)
    with pytest.raises(ValueError, match="invalid walk start -1"):
        space.walk(-1)
    with pytest.raises(ValueError, match=f"invalid walk start {space.shard_steps + 1}"):
        space.walk(space.shard_steps + 1)


def test_target_file_line_too_long(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"198.18.0.1\n" + b"9" * (MAX_TARGET_LINE_BYTES + 1) + b"\n")
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{path}"])
    assert caught.value.message == (
        f"line 2 of target file '{path}' is longer than {MAX_TARGET_LINE_BYTES} bytes"
    )


def test_target_file_without_line_ends_stops(tmp_path: Path) -> None:
    # A file of zero bytes and no newline, as /dev/zero gives, fails at
    # the first line instead of being read whole.
    path = tmp_path / "zeros"
    path.write_bytes(bytes(3 * MAX_TARGET_LINE_BYTES))
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{path}"])
    assert caught.value.message.startswith("line 1 of target file")


def test_target_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"198.18.0.1\n\xff\n")
    with pytest.raises(InputError) as caught:
        parse_targets([f"@{path}"])
    assert caught.value.message == (
        f"cannot read target file '{path}': line 2 is not UTF-8"
        " (invalid start byte at byte 0)"
    )

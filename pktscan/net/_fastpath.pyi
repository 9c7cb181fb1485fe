"""Types of the C module pktscan/net/_fastpath.c."""

import mmap

Buffer = bytes | bytearray | memoryview | mmap.mmap

MAX_BATCH: int

def siphash24(key: Buffer, data: Buffer, /) -> int: ...
def fill_syn4(
    template: Buffer,
    ip_base: int,
    tcp_base: int,
    ip_id: int,
    ip_checksum: int,
    tcp: int,
    timestamp: int,
    source: Buffer,
    source_port: int,
    key: Buffer,
    tsval: int,
    targets: list[tuple[bytes, int]],
    /,
) -> bytes: ...
def send_syn4(
    template: Buffer,
    ip_base: int,
    tcp_base: int,
    ip_id: int,
    ip_checksum: int,
    tcp: int,
    timestamp: int,
    source: Buffer,
    source_port: int,
    key: Buffer,
    tsval: int,
    targets: list[tuple[bytes, int]],
    fd: int,
    ifindex: int,
    hop: Buffer,
    /,
) -> tuple[int, int, int]: ...
def accept_block(
    ring: Buffer,
    base: int,
    block_bytes: int,
    source_port: int,
    key: Buffer,
    reset_template: Buffer,
    ip_base: int,
    tcp_base: int,
    fd: int,
    monotonic: float,
    wall: float,
    /,
) -> tuple[bytes, list[tuple[bytes, int, bytes, float]], int, int, int]: ...
def span_run(
    targets: list[tuple[bytes, int]], start: int, network: int, mask: int, limit: int, /
) -> int: ...

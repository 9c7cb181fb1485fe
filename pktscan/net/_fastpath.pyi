"""Types of the C module pktscan/net/_fastpath.c."""

Buffer = bytes | bytearray | memoryview

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
    start: int,
    fd: int,
    ifindex: int,
    hop: Buffer,
    network: int,
    mask: int,
    /,
) -> tuple[int, int, int, int]: ...

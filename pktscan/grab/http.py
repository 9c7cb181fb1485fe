"""Server identification on port 80, which is not TLS.

One HEAD request; the status line and the Server header of the answer are
kept and the rest is discarded. The connection ends with an RST, like the
TLS attempts.
"""

from __future__ import annotations

import asyncio
import logging

from pktscan import __version__
from pktscan.grab.sockets import RECEIVE_SIZE, connect_abortive
from pktscan.results import HttpResult

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16384


def build_request(host: str) -> bytes:
    """Build the HEAD request sent to HTTP ports."""
    return (
        f"HEAD / HTTP/1.1\r\nHost: {host}\r\n"
        f"User-Agent: pktscan/{__version__}\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii", "replace")


def parse_response_head(data: bytes) -> HttpResult:
    """Read the status line and the Server header from a response head."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.decode("iso-8859-1").split("\r\n")
    status = lines[0].strip() if lines and lines[0] else None
    if status is not None and not status.startswith("HTTP/"):
        return HttpResult(None, None, error=f"not an HTTP response: {data[:32]!r}")

    server = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "server":
            server = value.strip()
            break
    return HttpResult(status, server)


async def grab_http(ip: str, port: int, host: str | None, timeout: float) -> HttpResult:
    """Send one HEAD request to ip:port and return the server's identification."""
    loop = asyncio.get_running_loop()
    try:
        sock = await connect_abortive(ip, port, timeout)
    except TimeoutError:
        return HttpResult(None, None, error="connect timed out")
    except OSError as exc:
        return HttpResult(None, None, error=exc.strerror or str(exc))

    host_header = host or (f"[{ip}]" if ":" in ip else ip)
    data = b""
    error = None
    deadline = loop.time() + timeout
    try:
        await asyncio.wait_for(
            loop.sock_sendall(sock, build_request(host_header)), timeout
        )
        while b"\r\n\r\n" not in data and len(data) < MAX_HEADER_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                error = "timed out"
                break
            chunk = await asyncio.wait_for(
                loop.sock_recv(sock, RECEIVE_SIZE), remaining
            )
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        error = "timed out"
    except OSError as exc:
        error = exc.strerror or str(exc)
    finally:
        sock.close()

    if not data:
        return HttpResult(None, None, error=error or "closed without an answer")
    result = parse_response_head(data)
    logger.info("%s:%d: HTTP %s, server %s", ip, port, result.status, result.server)
    return result

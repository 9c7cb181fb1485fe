"""The HTTP identification on port 80: request bytes and response parsing."""

from __future__ import annotations

import pytest

from pktscan.grab.http import build_request, parse_response_head


def test_request_is_head_with_host() -> None:
    request = build_request("www.lab.pktscan.test")
    assert request.startswith(b"HEAD / HTTP/1.1\r\nHost: www.lab.pktscan.test\r\n")
    assert request.endswith(b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "status", "server"),
    [
        (
            b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: x\r\n\r\n",
            "HTTP/1.1 200 OK",
            "nginx/1.22.1",
        ),
        (
            b"HTTP/1.0 404 Not Found\r\nserver:  Apache \r\n\r\nbody",
            "HTTP/1.0 404 Not Found",
            "Apache",
        ),
        (b"HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n", "HTTP/1.1 301 Moved", None),
        (b"HTTP/1.1 200 OK\r\nServer: partial", "HTTP/1.1 200 OK", "partial"),
    ],
)
def test_response_head_fields(data: bytes, status: str, server: str | None) -> None:
    result = parse_response_head(data)
    assert result.status == status
    assert result.server == server
    assert result.error is None


def test_non_http_answer_is_an_error() -> None:
    result = parse_response_head(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert result.status is None
    assert result.error == "not an HTTP response: b'SSH-2.0-OpenSSH_9.2\\r\\n'"

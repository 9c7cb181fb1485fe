"""The lab's port probe, on loopback."""

from __future__ import annotations

import socket

from pktscan.lab.probe import check, probe


def test_check_open_and_closed() -> None:
    with socket.socket() as listener, socket.socket() as unbound:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        # Bound but not listening: the kernel replies to a SYN with a reset.
        unbound.bind(("127.0.0.1", 0))
        open_port = listener.getsockname()[1]
        closed_port = unbound.getsockname()[1]
        assert check("127.0.0.1", open_port, 1.0) == "open"
        assert check("127.0.0.1", closed_port, 1.0) == "closed"


def test_probe_matches_expected_states() -> None:
    with socket.socket() as listener, socket.socket() as unbound:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        unbound.bind(("127.0.0.1", 0))
        open_target = f"127.0.0.1:{listener.getsockname()[1]}"
        closed_target = f"127.0.0.1:{unbound.getsockname()[1]}"
        expected = {open_target: "open", closed_target: "closed"}
        assert probe(expected, timeout=1.0, wait=0.0) == expected

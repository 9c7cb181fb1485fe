"""The results table prints peer text as it is, never as rich markup."""

from __future__ import annotations

from rich.console import Console

from pktscan.render import print_scan_table
from pktscan.results import HttpResult, PortResult


def test_markup_in_server_header_printed_verbatim() -> None:
    console = Console(width=200, record=True)
    result = PortResult(
        ip="198.18.0.19",
        port=80,
        state="open",
        http=HttpResult(status="HTTP/1.1 200 [/]", server="evil [bold]x[/] [/]"),
    )

    print_scan_table(console, [result])

    text = console.export_text()
    assert "HTTP: evil [bold]x[/] [/]" in text


def test_progress_words_are_singular_for_one() -> None:
    from pktscan.render import _plural

    assert _plural(1, "port") == "1 port"
    assert _plural(2, "certificate") == "2 certificates"

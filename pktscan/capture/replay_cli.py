"""The `pktscan capture replay` command: certificates from a capture, offline.

Exit codes: 0 when the file was read to its end and, with --to, the live
reply matched the recorded one. 1 when the file is damaged part-way or the
live reply differs. 2 when the file cannot be read, an output cannot be
written, or the live server cannot be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pktscan.capture.live import LiveComparison, parse_endpoint, send_flow
from pktscan.capture.replay import FOREIGN_SET, ReplayedFlow, ReplayReport, replay_file
from pktscan.certs import decode_certificate
from pktscan.errors import LocalError
from pktscan.store import JsonLinesWriter, open_inventory

EXIT_OK = 0
EXIT_DIFFERS = 1
EXIT_FAILED = 2
FINGERPRINT_HEX_DIGITS = 16


def _fail(error: LocalError) -> typer.Exit:
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)
    return typer.Exit(EXIT_FAILED)


def _flow_line(index: int, flow: ReplayedFlow) -> str:
    outcome = flow.outcome
    hello = (
        f"set {flow.set_number}"
        if flow.set_number != FOREIGN_SET
        else "hello from no protocol set"
    )
    parts = [
        f"flow {index}",
        f"packet {flow.connection.first_number}",
        flow.target,
        f"{hello} ({flow.hello_format} format)",
        outcome.outcome,
    ]
    if outcome.version_name:
        parts.append(outcome.version_name)
    if outcome.cipher_name:
        parts.append(outcome.cipher_name)
    if outcome.alert_name:
        parts.append(f"alert {outcome.alert_name}")
    if outcome.error:
        parts.append(f"error: {outcome.error}")
    line = "  ".join(parts)
    if outcome.chain:
        leaf = decode_certificate(outcome.chain[0])
        line += (
            f"\n  chain of {len(outcome.chain)}, leaf sha256 "
            f"{leaf.sha256[:FINGERPRINT_HEX_DIGITS]}  {leaf.subject or leaf.error}"
        )
    return line


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _state_counts(report: ReplayReport) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in report.results:
        counts[result.state] = counts.get(result.state, 0) + 1
    return counts


def render_replay(report: ReplayReport) -> str:
    """Format a replay as text: a line per TLS flow, then a summary."""
    lines = [f"{report.path}: {report.frames} frames"]
    lines += [_flow_line(i, flow) for i, flow in enumerate(report.flows, 1)]
    with_chain = sum(bool(r.tls and r.tls.chain) for r in report.results)
    states = _state_counts(report)
    state_text = ", ".join(f"{count} {state}" for state, count in states.items())
    if report.damage is not None:
        lines.append(f"damage: reading stopped at {report.damage}")
    lines.append(
        f"result: {_count(len(report.flows), 'TLS flow')}; "
        f"{_count(len(report.results), 'target')}"
        + (f" ({state_text})" if state_text else "")
        + f", {with_chain} with a certificate; "
        f"{_count(len(report.certificates()), 'distinct certificate')}"
    )
    return "\n".join(lines)


def render_comparison(comparison: LiveComparison) -> str:
    """Format a live comparison as a table of fields."""
    host, port = comparison.server
    lines = [
        f"sent the {comparison.sent}-byte ClientHello of the flow at packet "
        f"{comparison.flow.connection.first_number} to {host}:{port}"
    ]
    width = max(len(field.name) for field in comparison.fields)
    for field in comparison.fields:
        state = "same" if field.same else "DIFFERS"
        lines.append(
            f"  {field.name:<{width}}  {state:<7}  recorded {field.recorded}; "
            f"live {field.live}"
        )
    if comparison.same:
        lines.append("result: the live reply matches the recorded one")
    else:
        lines.append("result: the live reply differs from the recorded one")
    return "\n".join(lines)


def _write_outputs(report: ReplayReport, out: Path | None, db: str | None) -> None:
    if out is not None:
        with JsonLinesWriter(out) as writer:
            for result in report.results:
                writer.write(result)
    if db is not None:
        with open_inventory(db, background_flush=False) as inventory:
            scan_id = inventory.begin_scan({"replay": report.path})
            for result in report.results:
                inventory.add_result(scan_id, result)
            inventory.finish_scan(scan_id, _state_counts(report))


def _pick_flow(report: ReplayReport, number: int) -> ReplayedFlow:
    if not report.flows:
        raise LocalError(
            f"{report.path} has no TLS flow to send",
            hint="pick a capture with a ClientHello in it",
        )
    if number > len(report.flows):
        raise LocalError(
            f"flow {number} not found: {report.path} has {len(report.flows)} TLS flows",
            hint=f"give --flow 1 to {len(report.flows)}",
        )
    return report.flows[number - 1]


def replay(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file, may be gzipped")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="write one JSON line per target here ('-' for stdout)"
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="add the targets, as one scan, to this inventory: an SQLite "
            "file or a postgresql:// URL"
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="HOST:PORT",
            help="send a flow's ClientHello to this server and compare its reply "
            "with the recorded one",
        ),
    ] = None,
    flow: Annotated[
        int, typer.Option(min=1, help="the flow that --to sends, numbered as listed")
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="seconds --to waits to connect and for the reply"),
    ] = 5.0,
) -> None:
    """Run every TLS flow through the scanner's codec; write what a scan would."""
    # With --out -, the JSON lines own standard output and the text goes to
    # standard error.
    to_stdout = out == Path("-")
    try:
        server = parse_endpoint(to) if to is not None else None
        report = replay_file(file)
        typer.echo(render_replay(report), err=to_stdout)
        _write_outputs(report, out, db)
        comparison = None
        if server is not None:
            comparison = send_flow(_pick_flow(report, flow), server, timeout)
    except LocalError as error:
        raise _fail(error) from error
    if comparison is not None:
        typer.echo(render_comparison(comparison), err=to_stdout)
    differs = comparison is not None and not comparison.same
    failed = report.damage is not None or differs
    raise typer.Exit(EXIT_DIFFERS if failed else EXIT_OK)

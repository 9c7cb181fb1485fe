"""The `pktscan capture` commands: verify, show and replay captures.

Exit codes of `verify`: 0 when every target conforms, 1 when any deviates,
the file is damaged part-way or contains no target, 2 when the file cannot
be read at all. `show` exits 2 for an unreadable file and 0 otherwise.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated

import typer

from pktscan.capture.checker import (
    CheckReport,
    TargetVerdict,
    check_flows,
    detect_profile,
)
from pktscan.capture.flows import flows_from_file
from pktscan.capture.ladder import render_dns, render_ladder, render_svg
from pktscan.capture.replay_cli import replay
from pktscan.capture.sequence import Profile
from pktscan.errors import CaptureError

EXIT_CONFORMS = 0
EXIT_DEVIATES = 1
EXIT_UNREADABLE = 2

app = typer.Typer(
    help="Check and display packet captures of scans.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def capture() -> None:
    """Check and display packet captures of scans."""


def _fail_unreadable(error: CaptureError) -> typer.Exit:
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)
    return typer.Exit(EXIT_UNREADABLE)


def _attempt_text(verdict: TargetVerdict) -> str:
    parts = []
    for attempt in verdict.attempts:
        label = f"set {attempt.set_number}" if attempt.set_number else attempt.hello
        if attempt.certificate:
            outcome = f"certificate in packet {attempt.certificate_number}"
        elif attempt.alert:
            outcome = f"no certificate, {attempt.alert}"
        else:
            outcome = "no certificate"
        parts.append(f"{label} ({outcome}, close: {attempt.close})")
    return "; ".join(parts) or "none"


def _target_sort_key(verdict: TargetVerdict) -> tuple[int, int, int]:
    """Order targets by address, then port, as scan tables list them."""
    host, _, port = verdict.target.rpartition(":")
    address = ipaddress.ip_address(host.strip("[]"))
    return address.version, int(address), int(port)


def render_report(report: CheckReport, *, only_deviating: bool = False) -> str:
    """Format a report as text: a line per target, then its deviations."""
    lines = [f"{report.path}: {report.frames} frames, profile {report.profile.value}"]
    start = report.start_time or 0.0
    for verdict in sorted(report.targets, key=_target_sort_key):
        if only_deviating and verdict.conforms:
            continue
        state = "conforms" if verdict.conforms else "DEVIATES"
        lines.append(
            f"{verdict.target}  {state}  probe {verdict.probe or 'none'}  "
            f"attempts: {_attempt_text(verdict)}"
        )
        for deviation in verdict.deviations:
            where = f"packet {deviation.number}" if deviation.number else "no packet"
            when = (
                f"+{deviation.timestamp - start:.6f}s"
                if deviation.timestamp is not None
                else "-"
            )
            lines.append(
                f"  {where}  {when}  expected {deviation.expected}; "
                f"seen {deviation.seen}"
            )
    if report.damage is not None:
        lines.append(f"damage: reading stopped at {report.damage}")
    if not report.targets:
        lines.append("result: no target traffic found")
    else:
        deviating = sum(not verdict.conforms for verdict in report.targets)
        lines.append(f"result: {deviating} of {len(report.targets)} targets deviate")
    return "\n".join(lines)


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file, may be gzipped")],
    profile: Annotated[
        Profile | None,
        typer.Option(
            help="expected client: scan (SYN probe, then a kernel connection "
            "per attempt), raw (one raw pass per attempt) or any (any TLS "
            "client); default: raw when the capture has no separate SYN probe "
            "but carries data, else scan",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print the report as JSON")
    ] = False,
    only_deviating: Annotated[
        bool,
        typer.Option(
            "--only-deviating", help="list only targets that deviate (text output)"
        ),
    ] = False,
) -> None:
    """Check that a capture shows the documented wire sequence per target."""
    try:
        flows = flows_from_file(file)
    except CaptureError as error:
        raise _fail_unreadable(error) from error
    report = check_flows(flows, profile or detect_profile(flows), str(file))
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render_report(report, only_deviating=only_deviating))
    passed = report.conforms and bool(report.targets)
    raise typer.Exit(EXIT_CONFORMS if passed else EXIT_DEVIATES)


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng file, may be gzipped")],
    svg: Annotated[
        Path | None, typer.Option(help="also write the ladders as SVG to this file")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="maximum number of connections to draw")
    ] = 50,
) -> None:
    """Draw each TCP connection as a ladder diagram, TLS records named."""
    try:
        flows = flows_from_file(file)
    except CaptureError as error:
        raise _fail_unreadable(error) from error
    start = flows.start_time or 0.0
    drawn = list(flows.connections[:limit])
    sections = [render_ladder(connection, start) for connection in drawn]
    if flows.dns:
        sections.insert(0, "DNS\n" + render_dns(flows.dns, start))
    if len(flows.connections) > limit:
        sections.append(
            f"{len(flows.connections) - limit} more connections not shown; "
            "raise --limit to see them"
        )
    if flows.damage is not None:
        sections.append(f"damage: reading stopped at {flows.damage}")
    typer.echo("\n\n".join(sections) if sections else "no TCP connections")
    if svg is not None:
        try:
            svg.write_text(render_svg(drawn, start, flows.dns), encoding="utf-8")
        except OSError as error:
            typer.echo(f"error: cannot write {svg}: {error.strerror}", err=True)
            raise typer.Exit(EXIT_UNREADABLE) from error


app.command()(replay)

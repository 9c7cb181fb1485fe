"""The pktscan command line: parse options, call one function, print.

Errors of pktscan's own hierarchy are shown as one `error:` line and, for
local errors, a `hint:` line, with exit code 2; no traceback reaches the
user for them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

try:
    # Typer 0.2x vendors click as typer._click and exports no UsageError.
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer depends on click
    from click.exceptions import UsageError  # type: ignore[no-redef,import-not-found]

from pktscan import __version__
from pktscan.errors import InputError, LocalError, PktscanError
from pktscan.grab.rawengine import DEFAULT_MAX_CONNECTIONS, parse_source_ip
from pktscan.render import print_scan_table, scan_progress
from pktscan.results import PortResult
from pktscan.scan import ENGINES, ResultSink, ScanOptions, ScanSummary, run_scan
from pktscan.store import open_inventory
from pktscan.store.jsonl import JsonLinesWriter
from pktscan.store.sqlite import Inventory

if TYPE_CHECKING:
    from pktscan.store.postgres import PostgresInventory

EXIT_INTERRUPTED = 130
# Bound on --wait and --timeout: one hour is longer than any TCP peer is
# worth waiting for, and rejects inf and nan, which never time out.
MAX_SECONDS = 3600
# Some ports were not fully scanned because of failures on our side.
EXIT_FAILURES = 1

app = typer.Typer(
    name="pktscan",
    help="Packet-level TLS certificate discovery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _add_lab() -> None:
    from pktscan.lab.cli import app as lab_app

    app.add_typer(lab_app, name="lab", help="The built-in lab network of real servers.")


def _add_capture() -> None:
    from pktscan.capture.cli import app as capture_app

    app.add_typer(capture_app, name="capture", help="Verify, replay and draw captures.")


def _add_inventory() -> None:
    from pktscan.store.cli import app as inventory_app

    app.add_typer(inventory_app, name="inventory", help="The certificate inventory.")


def _add_probe() -> None:
    from pktscan.net.cli import probe as probe_command

    app.command("probe")(probe_command)


def _add_grab() -> None:
    from pktscan.grab.cli import grab as grab_command

    app.command("grab")(grab_command)


def _add_report() -> None:
    from pktscan.report.cli import report as report_command

    app.command("report")(report_command)


# Commands whose modules load only when they run, or for the help text.
_OTHER_COMMANDS: dict[str, Callable[[], None]] = {
    "lab": _add_lab,
    "capture": _add_capture,
    "inventory": _add_inventory,
    "probe": _add_probe,
    "grab": _add_grab,
    "report": _add_report,
}
_OWN_COMMANDS = ("scan", "hello")


def add_commands(argv: Sequence[str]) -> None:
    """Register the commands of other modules that this command line needs.

    `pktscan scan` then does not import the capture checker, PostgreSQL's
    driver and the rest, which took 0.2 of its 0.6 s start-up. Help, a
    typo and no command at all register every command, so that the list
    and the suggestions stay complete.
    """
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name in _OWN_COMMANDS:
        return
    for command, add in _OTHER_COMMANDS.items():
        if name is None or name == command or name not in _OTHER_COMMANDS:
            add()


err_console = Console(stderr=True, soft_wrap=True)


def _parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if sep and index.isdigit() and count.isdigit():
        shard = (int(index), int(count))
        if 0 <= shard[0] < shard[1]:
            return shard
    raise InputError(
        f"invalid shard {text!r}",
        hint="give --shard I/N with 0 <= I < N, e.g. --shard 0/4",
    )


@app.command()
def scan(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Addresses, CIDRs, ranges (198.18.0.1-198.18.0.40), DNS names,"
            " or @FILE with one of those a line."
        ),
    ],
    ports: Annotated[
        str,
        typer.Option("--ports", "-p", help="Ports: list and ranges, e.g. 443,8443."),
    ] = "443",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write JSON lines here ('-' for stdout)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Inventory to write: a SQLite file or a postgresql:// URL"
            " (default: inventory.sqlite in the user's data dir)."
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            help="Name shared by the shards of one scan, so that they land in"
            " one scan record of a shared inventory."
        ),
    ] = None,
    no_db: Annotated[
        bool, typer.Option("--no-db", help="Do not write the inventory.")
    ] = False,
    pcap: Annotated[
        Path | None, typer.Option(help="Record the scan's packets to this pcap file.")
    ] = None,
    rate: Annotated[
        int, typer.Option(help="SYN probes per second; 0 for as fast as possible.")
    ] = 1000,
    retries: Annotated[int, typer.Option(help="SYN retransmissions per port.")] = 1,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for late SYN probe responses.")
    ] = 1.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds per TLS attempt (connect and read).")
    ] = 5.0,
    concurrency: Annotated[
        int, typer.Option(help="Maximum ports grabbed at once.")
    ] = 128,
    resolver: Annotated[
        list[str] | None,
        typer.Option(help="DNS server address (repeatable); default resolv.conf."),
    ] = None,
    no_dns: Annotated[
        bool, typer.Option("--no-dns", help="No DNS at all: no names, no PTR.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the target permutation.")
    ] = None,
    shard: Annotated[
        str, typer.Option(help="This machine's share I/N of the target space.")
    ] = "0/1",
    exclude: Annotated[
        list[str] | None, typer.Option(help="CIDR to leave out (repeatable).")
    ] = None,
    exclude_file: Annotated[
        Path | None, typer.Option(help="File of CIDRs to leave out.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no table.")
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Handshake engine: raw (one raw-socket pass per attempt, needs"
            " root and nftables) or kernel (connect() per attempt). Default: raw"
            " when it can run, else kernel."
        ),
    ] = None,
    max_connections: Annotated[
        int,
        typer.Option(help="Raw engine: maximum connections open at once."),
    ] = DEFAULT_MAX_CONNECTIONS,
    source_ip: Annotated[
        str | None,
        typer.Option(
            help="Raw engine: send from this IPv4 address. If no interface"
            " carries it, pktscan answers ARP for it and adds no nftables table."
        ),
    ] = None,
) -> None:
    """Probe ports, fetch every TLS certificate, and record what was found."""
    options = ScanOptions(
        targets=targets,
        ports=ports,
        rate=rate,
        retries=retries,
        wait=wait,
        timeout=timeout,
        concurrency=concurrency,
        resolvers=resolver or None,
        dns=not no_dns,
        seed=seed,
        shard=_parse_shard(shard),
        exclude=exclude or (),
        exclude_file=exclude_file,
        engine=engine,
        max_connections=max_connections,
        source_ip=source_ip,
    )
    _validate_numbers(options)
    _reject_conflicts(
        ("--no-db", no_db, "--db", db is not None),
        ("--no-db", no_db, "--run", run is not None),
        ("--no-dns", no_dns, "--resolver", bool(resolver)),
    )

    # The inventory commits each port's result before its JSON line is
    # written, so a scan killed at any moment (SIGKILL included) has every
    # port of its JSON lines in the inventory. One commit per result costs
    # about half the batched write rate (650 against 1,500 results/s, 2-CPU
    # VM), still above a million ports an hour.
    sinks: list[ResultSink] = []
    inventory = None
    scan_id = 0
    if not no_db:
        inventory = open_inventory(db, batch_size=1)
        scan_id = inventory.begin_scan(
            {"argv": sys.argv[1:], "targets": list(targets), "ports": ports},
            shard=shard if shard != "0/1" else None,
            run=run,
        )
        sinks.append(_InventorySink(inventory, scan_id))
    if out is not None:
        sinks.append(JsonLinesWriter(out))

    results: list[PortResult] = []
    show = not quiet and out != Path("-")
    summary = _run_with_capture(options, sinks, results.append, pcap, show)

    for sink in sinks:
        close = getattr(sink, "close", None)
        if close is not None:
            close()
    if inventory is not None:
        inventory.finish_scan(scan_id, dict(summary.states))
        inventory.close()

    if show:
        print_scan_table(_table_console(), results)
    _print_statistics(summary)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failures:
        err_console.print(
            f"error: {summary.failures} port(s) could not be grabbed because of"
            " a local failure; their results carry an error field"
        )
        raise typer.Exit(EXIT_FAILURES)


@app.command()
def hello(
    set_number: Annotated[
        int, typer.Option("--set", min=1, max=4, help="Protocol set, 1 to 4.")
    ] = 1,
    sni: Annotated[
        str | None, typer.Option(help="Server name to put in the SNI extension.")
    ] = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="hex, annotated, json or raw (bytes)."),
    ] = "annotated",
) -> None:
    """Print the ClientHello of a protocol set, byte by byte, explained."""
    import os

    from pktscan.tls.explain import render_hello
    from pktscan.tls.sets import build_set_hello

    formats = ("hex", "annotated", "json", "raw")
    if output_format not in formats:
        raise InputError(
            f"invalid --format {output_format!r}",
            hint=f"give one of: {', '.join(formats)}",
        )
    try:
        data = build_set_hello(set_number, os.urandom(32), sni)
    except ValueError as exc:
        raise InputError(
            f"invalid --sni {sni!r}: {exc}",
            hint="give --sni a DNS name such as www.example.test, not an address",
        ) from None
    if output_format == "raw" and sys.stdout.isatty():
        raise InputError(
            "--format raw writes binary bytes, and the output is a terminal",
            hint="redirect it to a file (> hello.bin) or a pipe, or use --format hex",
        )
    rendered = render_hello(data, output_format)  # type: ignore[arg-type]
    if isinstance(rendered, bytes):
        sys.stdout.buffer.write(rendered)
        sys.stdout.buffer.flush()
    else:
        typer.echo(rendered)


class _InventorySink:
    def __init__(self, inventory: Inventory | PostgresInventory, scan_id: int) -> None:
        self.inventory = inventory
        self.scan_id = scan_id

    def write(self, result: PortResult) -> None:
        self.inventory.add_result(self.scan_id, result)


def _table_console() -> Console:
    """Return a console for the results table, as wide as a fingerprint row.

    Off a terminal rich assumes 80 columns, which folds every fingerprint;
    files and pipes get a width that fits a row instead.
    """
    console = Console()
    if console.is_terminal:
        return console
    return Console(width=200)


def _reject_conflicts(*pairs: tuple[str, bool, str, bool]) -> None:
    """Raise InputError when two options that exclude each other are both given."""
    for first, first_given, second, second_given in pairs:
        if first_given and second_given:
            raise InputError(
                f"{first} and {second} cannot be used together",
                hint=f"drop one of {first} and {second}",
            )


def _validate_numbers(options: ScanOptions) -> None:
    checks = [
        ("--rate", options.rate, options.rate >= 0, "0 or more"),
        ("--retries", options.retries, options.retries >= 0, "0 or more"),
        (
            "--wait",
            options.wait,
            0 <= options.wait <= MAX_SECONDS,
            f"0 to {MAX_SECONDS} seconds",
        ),
        (
            "--timeout",
            options.timeout,
            0 < options.timeout <= MAX_SECONDS,
            f"more than 0 and at most {MAX_SECONDS} seconds",
        ),
        ("--concurrency", options.concurrency, options.concurrency > 0, "1 or more"),
        (
            "--max-connections",
            options.max_connections,
            options.max_connections > 0,
            "1 or more",
        ),
    ]
    for flag, value, valid, expected in checks:
        if not valid:
            raise InputError(f"invalid {flag} {value}", hint=f"give {flag} {expected}")
    if options.engine is not None and options.engine not in ENGINES:
        raise InputError(
            f"invalid --engine {options.engine!r}",
            hint=f"give --engine {' or '.join(ENGINES)}",
        )
    if options.source_ip is not None:
        parse_source_ip(options.source_ip)
        if options.engine == "kernel":
            raise InputError(
                "--source-ip needs the raw engine, and --engine kernel was given",
                hint="leave out --engine kernel, or --source-ip",
            )


def _run_with_capture(
    options: ScanOptions,
    sinks: Sequence[ResultSink],
    collect: Callable[[PortResult], None],
    pcap: Path | None,
    show_progress: bool,
) -> ScanSummary:
    recorder = None
    if pcap is not None:
        from pktscan.capture.recorder import PcapRecorder

        recorder = PcapRecorder(pcap, bpf=_capture_filter(options.ports))
        recorder.start()
    try:
        return _run_async(options, sinks, collect, show_progress)
    finally:
        if recorder is not None:
            # Late RSTs from both sides arrive within a few milliseconds.
            time.sleep(0.3)
            stats = recorder.stop()
            err_console.print(
                f"capture: {stats.packets} packets written to {pcap},"
                f" {stats.kernel_drops} dropped by the kernel"
            )


def _capture_filter(ports: str) -> str:
    from pktscan.targets import parse_ports

    port_list = parse_ports(ports)
    if len(port_list) <= 64:
        tcp = " or ".join(f"port {port}" for port in port_list)
        return f"(tcp and ({tcp})) or (udp and port 53)"
    return "tcp or (udp and port 53)"


def _run_async(
    options: ScanOptions,
    sinks: Sequence[ResultSink],
    collect: Callable[[PortResult], None],
    show_progress: bool,
) -> ScanSummary:
    stop = threading.Event()

    async def main() -> ScanSummary:
        loop = asyncio.get_running_loop()
        interrupts = 0

        def on_interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            stop.set()
            if interrupts == 1:
                err_console.print(
                    "interrupted: sending stopped; finishing the ports in progress"
                    " (Ctrl-C again to abandon them)"
                )
            else:
                for task in asyncio.all_tasks(loop):
                    if task is not asyncio.current_task(loop):
                        task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        with scan_progress(err_console, enabled=show_progress) as progress:

            def on_result(result: PortResult) -> None:
                collect(result)
                progress(result)

            return await run_scan(
                options, sinks, on_result, stop, on_total=progress.set_total
            )

    return asyncio.run(main())


def _print_statistics(summary: ScanSummary) -> None:
    states = ", ".join(
        f"{count} {state}" for state, count in sorted(summary.states.items())
    )
    line = (
        f"scan: {states or 'no ports'}; {summary.certificates} with a certificate;"
        f" {summary.ended - summary.started:.1f} s; {summary.engine} engine"
    )
    stats = summary.probe_stats
    if stats is not None:
        line += f"; {stats.sent} SYN sent, {stats.kernel_drops} kernel drops"
    engine_stats = summary.engine_stats
    if engine_stats is not None:
        noun = "connection" if engine_stats.connections == 1 else "connections"
        line += (
            f"; {engine_stats.connections} {noun},"
            f" at most {engine_stats.peak_connections} at once,"
            f" {engine_stats.kernel_drops} kernel drops"
        )
    err_console.print(line)
    for name in summary.unresolved:
        err_console.print(f"not resolved: {name}")


@app.callback(invoke_without_command=True)
def _main_options(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version.")
    ] = False,
) -> None:
    if version:
        typer.echo(f"pktscan {__version__}")
        raise typer.Exit()
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    # Log through the console that draws the progress line, so that log
    # lines print above it instead of into it.
    handler = RichHandler(
        console=err_console, show_time=False, show_path=False, markup=False
    )
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[handler])


def main() -> None:
    """Run the CLI, turning pktscan's errors into messages and exit code 2."""
    add_commands(sys.argv[1:])
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        message = exc.format_message()
        if not message:
            # No arguments at all: the help text was printed instead.
            sys.exit(2)
        typer.echo(f"error: {message}", err=True)
        command = exc.ctx.command_path if exc.ctx is not None else "pktscan"
        typer.echo(f"hint: see '{command} --help'", err=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except PktscanError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        if isinstance(exc, LocalError) and exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)

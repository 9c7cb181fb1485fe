"""The ``pktscan probe`` command: SYN-probe targets, one JSON line per port."""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Annotated, TextIO

import typer

from pktscan.errors import InputError, LocalError, PktscanError, PrivilegeError
from pktscan.net.prober import ProbeResult, ProbeStats
from pktscan.net.prober import probe as run_probe
from pktscan.targets import (
    TargetSpace,
    parse_exclusions,
    parse_ports,
    parse_shard,
    parse_targets,
)

logger = logging.getLogger(__name__)


def probe(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Addresses, CIDRs, ranges (198.18.0.1-40) or @FILE; "
            "DNS names are not resolved by this command."
        ),
    ],
    ports: Annotated[
        str,
        typer.Option("--ports", "-p", help="Ports and ranges, e.g. 80,443,8000-8010."),
    ],
    rate: Annotated[
        int, typer.Option(min=0, help="SYNs per second; 0 for as fast as possible.")
    ] = 1000,
    retries: Annotated[
        int, typer.Option(min=0, help="Retransmissions of an unanswered SYN.")
    ] = 1,
    wait: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds to wait for a response after each SYN."),
    ] = 1.0,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the probe order; shards of one scan share it."),
    ] = None,
    shard: Annotated[
        str, typer.Option(help="Probe shard I of N (I/N, 0 <= I < N); needs --seed.")
    ] = "0/1",
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Address, CIDR or range to skip; may be repeated."),
    ] = None,
    exclude_file: Annotated[
        list[Path] | None,
        typer.Option(help="File of addresses, CIDRs or ranges to skip, one a line."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the JSON lines here, not stdout."),
    ] = None,
    max_runtime: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Stop sending after this many seconds, then wait for responses.",
        ),
    ] = None,
    source_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="TCP source port; default: random in 61001-65535."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Switch to this user once the raw sockets are open, "
            "before the first SYN."
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress line on stderr; default: when stderr is a terminal.",
        ),
    ] = None,
) -> None:
    """SYN-probe TARGETS x PORTS: one JSON line per port (open and closed as
    responses arrive, filtered after the wait), then statistics on stderr."""
    space = _build_space(targets, ports, seed, shard, exclude, exclude_file)
    account = _find_user(user) if user is not None else None
    show_progress = sys.stderr.isatty() if progress is None else progress
    stop = threading.Event()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "interrupted: sending stopped, waiting for late responses "
            "(Ctrl-C again to quit at once)",
            file=sys.stderr,
        )

    with ExitStack() as stack:
        sink: TextIO = sys.stdout
        if output is not None:
            try:
                sink = stack.enter_context(output.open("w", encoding="utf-8"))
            except OSError as error:
                raise InputError(
                    f"cannot open output file '{output}': {error.strerror}",
                    "check that the directory exists and is writable",
                ) from error

        def write(result: ProbeResult) -> None:
            sink.write(json.dumps(result.to_json()) + "\n")
            sink.flush()

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            stats = run_probe(
                space,
                rate=rate,
                retries=retries,
                wait=wait,
                source_port=source_port,
                on_result=write,
                stop=stop,
                max_runtime=max_runtime,
                on_progress=_print_progress if show_progress else None,
                on_ready=None if account is None else lambda: _switch_user(account),
            )
        finally:
            signal.signal(signal.SIGINT, previous)
    if show_progress:
        print(file=sys.stderr)
    print(format_stats(stats), file=sys.stderr)


def _print_progress(stats: ProbeStats) -> None:
    rate = stats.sent / stats.elapsed if stats.elapsed > 0 else 0.0
    print(
        f"\rprobe: {stats.sent} SYN sent ({rate:.0f}/s), {stats.open} open, "
        f"{stats.closed} closed, {stats.filtered} filtered",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _find_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise InputError(
            f"user '{name}' not found", "give an existing user name, e.g. nobody"
        ) from None


def _switch_user(account: pwd.struct_passwd) -> None:
    """Drop root for the given user; the open raw sockets keep working,
    because the kernel checks CAP_NET_RAW only when a socket is created."""
    try:
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    except PermissionError as error:
        raise PrivilegeError(
            f"cannot switch to user '{account.pw_name}': {error.strerror}",
            "run as root to use --user, or leave --user out",
        ) from error
    logger.info("switched to user %s (uid %d)", account.pw_name, account.pw_uid)


def _build_space(
    targets: list[str],
    ports: str,
    seed: int | None,
    shard: str,
    exclude: list[str] | None,
    exclude_file: list[Path] | None,
) -> TargetSpace:
    spec = parse_targets(targets)
    if spec.names:
        raise InputError(
            f"DNS names are not probed by this command: {', '.join(spec.names[:3])}",
            "give addresses, or use 'pktscan scan', which resolves names",
        )
    return TargetSpace(
        spec.networks,
        parse_ports(ports),
        exclude=parse_exclusions(exclude or [], [str(p) for p in exclude_file or []]),
        seed=seed,
        shard=parse_shard(shard),
    )


def format_stats(stats: ProbeStats) -> str:
    """Format the statistics line printed after a probe run."""
    return (
        f"probe: {stats.sent} SYN sent, {stats.received} valid responses "
        f"({stats.open} open, {stats.closed} closed, {stats.filtered} filtered), "
        f"{stats.duplicates} duplicates, {stats.late} late, "
        f"{stats.invalid} invalid, {stats.unroutable} unroutable, "
        f"{stats.resets_sent} RST sent, {stats.send_drops} send drops, "
        f"{stats.kernel_drops} kernel drops, {stats.elapsed:.2f} s"
    )


def main() -> None:
    """Run the probe command on its own (``python -m pktscan.net.cli``),
    showing pktscan's errors as ``error:`` and ``hint:`` lines with exit
    code 2."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(probe)
    try:
        app()
    except PktscanError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if isinstance(error, LocalError) and error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

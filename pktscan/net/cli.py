"""The ``pktscan probe`` command: SYN-probe targets, one result line per port."""

from __future__ import annotations

import logging
import os
import pwd
import random
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Annotated, TextIO

import typer

from pktscan.errors import InputError, LocalError, PktscanError, PrivilegeError
from pktscan.net.output import OutputFormat, ProgressLine, ResultWriter
from pktscan.net.prober import ProbeStats
from pktscan.net.prober import probe as run_probe
from pktscan.net.resume import ResumeState, read_resume, resume_text, write_resume
from pktscan.targets import (
    TargetSpace,
    Walk,
    parse_exclusions,
    parse_ports,
    parse_shard,
    parse_targets,
)

logger = logging.getLogger(__name__)
# Exit code of a run stopped by Ctrl-C, as shells report SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


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
        typer.Option("--output", "-o", help="Write the result lines here, not stdout."),
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
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Resume file: when it exists, skip the probes it records as "
            "done and append to --output; written when the scan stops early, "
            "removed when it completes.",
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="json: one JSON object a line; list: 'STATE tcp PORT IP TIME' "
            "lines in the layout of masscan -oL's result lines, without its "
            "header and end lines, and with closed and filtered ports too.",
        ),
    ] = OutputFormat.json,
) -> None:
    """SYN-probe TARGETS x PORTS: one line per port (open and closed as
    responses arrive, filtered after the wait), then statistics on stderr."""
    state = None
    if resume is not None:
        state = read_resume(resume)
        if seed is None and state is not None:
            seed = state.seed
        if seed is None:
            # A resumable scan needs its order again later, so it gets a
            # seed now even when none was given.
            seed = random.SystemRandom().getrandbits(63)
    space = _build_space(targets, ports, seed, shard, exclude, exclude_file)
    start = 0
    if resume is not None and state is not None:
        start = state.start_for(space, resume)
    walk = space.walk(start)
    account = _find_user(user) if user is not None else None
    show_progress = sys.stderr.isatty() if progress is None else progress
    stop = threading.Event()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        again = "quit at once"
        if resume is not None:
            again += ", keeping the resume file at the start of this run"
        print(
            f"interrupted: sending stopped, waiting for late responses "
            f"(Ctrl-C again to {again})",
            file=sys.stderr,
        )

    with ExitStack() as stack:
        sink: TextIO = sys.stdout
        if output is not None:
            try:
                # A resumed scan appends to the lines of the earlier run.
                if start > 0:
                    stream = output.open("a", encoding="utf-8")
                else:
                    stream = output.open("w", encoding="utf-8")
                sink = stack.enter_context(stream)
            except OSError as error:
                raise InputError(
                    f"cannot open output file '{output}': {error.strerror}",
                    "check that the directory exists and is writable",
                ) from error

        resume_handle: TextIO | None = None
        if resume is not None:
            # Written now, while root, so that a bad path fails before the
            # first SYN and a killed run can start again from here. The
            # handle lets the end of the run rewrite it after --user.
            write_resume(resume, ResumeState.of(space, start))
            try:
                resume_handle = stack.enter_context(resume.open("r+", encoding="utf-8"))
            except OSError as error:
                raise InputError(
                    f"cannot open resume file '{resume}': {error.strerror}",
                    "check that the directory exists and is writable",
                ) from error

        writer = ResultWriter(sink, output_format)
        progress_line = ProgressLine(walk, start, space.shard_steps)

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            stats = run_probe(
                walk,
                rate=rate,
                retries=retries,
                wait=wait,
                source_port=source_port,
                on_result=writer.write,
                stop=stop,
                max_runtime=max_runtime,
                on_progress=progress_line.print if show_progress else None,
                on_ready=None if account is None else lambda: _switch_user(account),
            )
        except KeyboardInterrupt:
            print("probe: quit at once; results so far are written", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            signal.signal(signal.SIGINT, previous)
            writer.flush()
        if show_progress:
            print(file=sys.stderr)
        print(format_stats(stats), file=sys.stderr)
        warning = format_loss_warning(stats)
        if warning:
            print(warning, file=sys.stderr)
        if resume is not None:
            _update_resume(resume, space, walk, resume_handle)
    if stop.is_set():
        raise typer.Exit(EXIT_INTERRUPTED)


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


def _update_resume(
    path: Path, space: TargetSpace, walk: Walk, handle: TextIO | None
) -> None:
    """Record where an early stop left the walk, or remove the file of a
    completed scan. Without the permission for that (after --user), the
    file is rewritten through `handle`, which was opened as root."""
    complete = walk.position >= space.shard_steps
    state = ResumeState.of(space, min(walk.position, space.shard_steps))
    try:
        if complete:
            path.unlink(missing_ok=True)
        else:
            write_resume(path, state)
    except (InputError, PermissionError):
        if handle is None:
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(resume_text(state))
        handle.flush()
    if complete:
        return
    print(
        f"probe: stopped early; rerun with the same arguments and --resume "
        f"{path} to continue",
        file=sys.stderr,
    )


def format_loss_warning(stats: ProbeStats) -> str:
    """Return a warning line when packets were lost on our side, else ''."""
    if not stats.kernel_drops and not stats.send_drops:
        return ""
    line = (
        f"warning: {stats.kernel_drops} received packets dropped by the kernel "
        f"and {stats.send_drops} probes not sent; open ports may be missing, "
        "so lower --rate and probe again"
    )
    if stats.send_drops and stats.sent_routed:
        line += (
            f" ({stats.sent_routed} SYNs went to next hops not yet in the "
            "neighbour table: addresses that do not answer ARP also fill the "
            "send buffer)"
        )
    return line


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

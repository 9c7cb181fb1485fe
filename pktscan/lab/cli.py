"""`pktscan lab` commands: up, down, status, exec."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from pktscan.errors import LocalError
from pktscan.lab.lab import Lab
from pktscan.lab.plan import DEFAULT_NAME, STATE_ROOT

app = typer.Typer(
    name="lab",
    help="Network namespaces with real TLS servers, for tests and demos.",
    no_args_is_help=True,
)

NameOption = Annotated[
    str,
    typer.Option("--name", help="Lab name; namespaces are NAME-scan and NAME-tgt."),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"State directory of the lab [default: {STATE_ROOT}/NAME].",
    ),
]


def _fail(error: LocalError, code: int = 1) -> NoReturn:
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)
    raise typer.Exit(code)


@app.command()
def up(
    name: NameOption = DEFAULT_NAME,
    state_dir: StateDirOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the manifest as JSON.")
    ] = False,
) -> None:
    """Create the lab and wait until every server accepts connections."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lab = Lab(name, state_dir)
        manifest = lab.up()
    except LocalError as error:
        _fail(error)
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))
        return
    typer.echo(f"lab {name} is up; manifest: {lab.manifest_path}")
    for server in manifest["servers"]:
        typer.echo(
            f"  {server['name']:<18} {server['address']:<13} "
            f"port {server['port']:<4} {server['expected_state']}"
        )
    typer.echo(f"run a command in it: pktscan lab exec --name {name} -- CMD")


@app.command()
def down(name: NameOption = DEFAULT_NAME, state_dir: StateDirOption = None) -> None:
    """Stop the lab's servers and delete its namespaces and state."""
    try:
        Lab(name, state_dir).down()
    except LocalError as error:
        _fail(error)
    typer.echo(f"lab {name} is down")


@app.command()
def status(
    name: NameOption = DEFAULT_NAME,
    state_dir: StateDirOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the status as JSON.")
    ] = False,
) -> None:
    """Show each server, its address, its processes and its port state.

    Exits with 1 when a server is not as expected.
    """
    try:
        report = Lab.load(name, state_dir).status()
    except LocalError as error:
        _fail(error)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        for entry in report:
            processes = ", ".join(
                f"{process} {'running' if alive else 'stopped'}"
                for process, alive in entry["processes"].items()
            )
            verdict = "ok" if entry["ok"] else "FAIL"
            target = f"{entry['address']}:{entry['port']}"
            typer.echo(
                f"{verdict:<4} {entry['name']:<18} {target:<17} "
                f"port {entry['port_state']} (expected {entry['expected_state']})"
                f"{'; ' + processes if processes else ''}"
            )
    if not all(entry["ok"] for entry in report):
        raise typer.Exit(1)


@app.command(
    "exec",
    context_settings={"allow_interspersed_args": False},
)
def exec_command(
    command: Annotated[
        list[str], typer.Argument(help="Command and its arguments, after --.")
    ],
    name: NameOption = DEFAULT_NAME,
    state_dir: StateDirOption = None,
) -> None:
    """Run a command inside the scanner namespace and exit with its code."""
    try:
        argv = Lab.load(name, state_dir).exec_argv(command)
    except LocalError as error:
        # 2, not 1, so that it differs from the usual failure of a command.
        _fail(error, 2)
    # Replace this process with `ip netns exec`, which in turn execs the
    # command: signals sent to this PID (SIGTERM, SIGINT) then reach the
    # command itself, and its exit status is this process's exit status.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        typer.echo(f"error: cannot run {argv[0]}: {error.strerror}", err=True)
        typer.echo("hint: install iproute2, which provides ip", err=True)
        raise typer.Exit(2) from error


if __name__ == "__main__":
    app()

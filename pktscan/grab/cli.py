"""`pktscan grab HOST:PORT`: run the attempt ladder on one port and show it.

Without `--explain` the ladder runs in `kernel.grab_tls`, as in a scan.
With `--explain` it runs in `transcript.grab_recorded`, which keeps every
chunk received, and `explain.explain_grab` prints each packet and record.
The exit code is 0 when a certificate was found and 1 when none was.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Annotated, Any

import typer

from pktscan.errors import InputError
from pktscan.grab.explain import explain_grab, hint_for, summary_lines
from pktscan.grab.kernel import grab_tls
from pktscan.grab.transcript import AttemptTranscript, grab_recorded
from pktscan.resolve import lookup_name, make_resolver
from pktscan.results import TlsResult
from pktscan.tls.explain import describe_hello
from pktscan.tls.sets import PROTOCOL_SETS, ProtocolSet, protocol_set

EXIT_NO_CERTIFICATE = 1
TARGET_HINT = (
    "give HOST:PORT, e.g. 198.18.0.10:443, [2001:db8::1]:443 or "
    "www.example.test:443, with PORT from 1 to 65535"
)


def parse_host_port(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" or "[IPv6]:PORT" into host and port.

    Raises:
        InputError: the text has no port, a port outside 1-65535, or an
            empty host.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InputError(f"invalid target {text!r}: no ]:PORT", hint=TARGET_HINT)
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise InputError(f"invalid target {text!r}: no :PORT", hint=TARGET_HINT)
    if not host:
        raise InputError(f"invalid target {text!r}: empty host", hint=TARGET_HINT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(
            f"invalid port {port_text!r} in target {text!r}", hint=TARGET_HINT
        )
    return host, int(port_text)


async def resolve_host(host: str) -> tuple[str, str | None]:
    """Return the address to connect to and the DNS name, if HOST was a name.

    Raises:
        InputError: HOST is a name that resolves to no address.
    """
    try:
        return str(ipaddress.ip_address(host)), None
    except ValueError:
        pass
    lookup = await lookup_name(make_resolver(), host, ipv6=True)
    if not lookup.addresses:
        raise InputError(
            f"name {host!r} did not resolve: {lookup.error}",
            hint="check the name and the resolver in /etc/resolv.conf, or give "
            "an address",
        )
    return lookup.addresses[0], host


def _chosen_sets(set_number: int | None) -> tuple[ProtocolSet, ...]:
    if set_number is None:
        return PROTOCOL_SETS
    return (protocol_set(set_number),)


def _plain_lines(ip: str, port: int, result: TlsResult) -> list[str]:
    lines = []
    for attempt in result.attempts:
        details = [v for v in (attempt.version, attempt.cipher, attempt.alert) if v]
        if attempt.outcome == "connect_failed" and attempt.detail:
            details.append(attempt.detail)
        text = f"set {attempt.set_number}: {attempt.outcome}"
        if details:
            text += f" ({', '.join(details)})"
        lines.append(text)
    return [f"grab {ip}:{port}", *lines, *summary_lines(result)]


def _attempt_json(attempt: AttemptTranscript) -> dict[str, Any]:
    """Describe an attempt as JSON, with its hello split into named fields."""
    document = attempt.to_json()
    if attempt.hello:
        document["hello_fields"] = [
            {
                "offset": field.offset,
                "hex": field.data.hex(),
                "field": field.name,
                "meaning": field.meaning,
            }
            for field in describe_hello(attempt.hello)
        ]
    document["hint"] = hint_for(attempt)
    return document


def _json_output(
    ip: str, port: int, name: str | None, result: TlsResult, explained: Any
) -> str:
    document: dict[str, Any] = {
        "ip": ip,
        "port": port,
        "name": name,
        "tls": result.to_json(),
    }
    if explained is not None:
        document["transcript"] = explained
    return json.dumps(document, indent=2)


def grab(
    target: Annotated[
        str,
        typer.Argument(
            help="HOST:PORT; HOST is an address ([IPv6] in brackets) or a DNS "
            "name, resolved with the system resolver."
        ),
    ],
    sni: Annotated[
        str | None,
        typer.Option(
            help="Server name to send in SNI (sets 2 and 3); default HOST when "
            "it is a name."
        ),
    ] = None,
    set_number: Annotated[
        int | None,
        typer.Option("--set", min=1, max=4, help="Try only this protocol set, 1 to 4."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds per attempt, for connect and for reading.")
    ] = 5.0,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Show every packet and record of every attempt."
        ),
    ] = False,
    json_format: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON.")
    ] = False,
) -> None:
    """Fetch the certificate of one port with the attempt ladder, and show how.

    Exits with 0 when an attempt brought a certificate, 1 when none did,
    and 2 on invalid input.
    """
    host, port = parse_host_port(target)
    if not timeout > 0:
        raise InputError(
            f"invalid --timeout {timeout}", hint="give --timeout more than 0 seconds"
        )
    ip, name = asyncio.run(resolve_host(host))
    server_name = sni if sni is not None else name
    sets = _chosen_sets(set_number)

    if explain:
        transcript = asyncio.run(
            grab_recorded(ip, port, sni=server_name, timeout=timeout, sets=sets)
        )
        result = transcript.result
        if json_format:
            attempts = [_attempt_json(attempt) for attempt in transcript.attempts]
            typer.echo(_json_output(ip, port, name, result, attempts))
        else:
            typer.echo(explain_grab(transcript), nl=False)
    else:
        result = asyncio.run(
            grab_tls(ip, port, sni=server_name, timeout=timeout, sets=sets)
        )
        if json_format:
            typer.echo(_json_output(ip, port, name, result, None))
        else:
            typer.echo("\n".join(_plain_lines(ip, port, result)))

    if result.set_number is None:
        raise typer.Exit(EXIT_NO_CERTIFICATE)

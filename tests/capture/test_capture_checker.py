"""Sequence checker tests on captures built packet by packet."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dpkt
import pytest
from capture_builders import (
    SCANNER,
    TARGET,
    AttemptPlan,
    CaptureBuilder,
    Conversation,
    certificate_flight,
    dns_exchange,
    probe_open,
    run_attempt,
    scan_target,
)

from pktscan.capture.checker import CheckReport, Deviation, check_file
from pktscan.capture.lookups import address_of_reverse_name
from pktscan.capture.sequence import Profile
from pktscan.tls.sets import build_set_hello


def _check(builder: CaptureBuilder, tmp_path: Path, profile: Profile) -> CheckReport:
    return check_file(builder.write(tmp_path / "scan.pcap"), profile)


def _only_target_deviations(report: CheckReport) -> tuple[Deviation, ...]:
    assert len(report.targets) == 1
    return report.targets[0].deviations


def test_scan_sequence_conforms(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(1, certificate=False), AttemptPlan(3)])
    report = _check(builder, tmp_path, Profile.SCAN)

    assert report.conforms
    verdict = report.targets[0]
    assert verdict.target == f"{TARGET}:443"
    assert verdict.probe == "open"
    assert [a.set_number for a in verdict.attempts] == [1, 3]
    assert [a.certificate for a in verdict.attempts] == [False, True]
    assert verdict.attempts[0].alert == "Alert(handshake_failure)"
    assert verdict.attempts[1].certificate_number == numbers.attempts[1]["flight"]
    assert verdict.attempts[1].hello_number == numbers.attempts[1]["hello"]
    assert [a.close for a in verdict.attempts] == ["RST from scanner"] * 2


def test_scan_missing_rst(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(2, close="none")])
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    last = numbers.attempts[0]["last"]
    assert deviations == (
        Deviation(
            last,
            builder.packets[last - 1][0],
            "RST from scanner as its last packet",
            "end of the connection",
        ),
    )


def test_scan_fin_instead_of_rst(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(2, close="fin")])
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    fin = numbers.attempts[0]["close"]
    assert len(deviations) == 1
    assert deviations[0].number == fin
    assert deviations[0].expected == "RST from scanner as its last packet"
    assert deviations[0].seen == "FIN/ACK from scanner"


def test_scan_attempts_out_of_order(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    plans = [AttemptPlan(3, certificate=False), AttemptPlan(2)]
    numbers = scan_target(builder, plans)
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert len(deviations) == 1
    assert deviations[0].number == numbers.attempts[1]["hello"]
    assert deviations[0].expected == "ClientHello of a set above 3"
    assert deviations[0].seen == "ClientHello (set 2)"


def test_scan_attempt_after_certificate(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(1), AttemptPlan(2)])
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    certificate = numbers.attempts[0]["flight"]
    assert len(deviations) == 1
    assert deviations[0].number == numbers.attempts[1]["syn"]
    assert deviations[0].expected == (
        f"no attempt after the certificate in packet {certificate}"
    )
    assert deviations[0].seen == "ClientHello (set 2) from port 50002"


def test_scan_five_attempts(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    plans = [AttemptPlan(n, certificate=False) for n in (1, 2, 3, 4)]
    numbers = scan_target(builder, plans)
    extra = run_attempt(
        builder, AttemptPlan(4, certificate=False), 50009, (TARGET, 443)
    )
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert len(numbers.attempts) == 4
    assert [d.number for d in deviations] == [extra["syn"], extra["hello"]]
    assert deviations[0].expected == "no further lookup or connection for this target"
    assert deviations[1].expected == "ClientHello of a set above 4"


def test_scan_certificate_segments_reordered(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    scan_target(builder, [], name=None)
    server = (TARGET, 443)
    conversation = Conversation(builder, (SCANNER, 50001), server, 10, 20)
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(build_set_hello(1, bytes(32)))
    flight = certificate_flight(2000)
    head, tail = flight[:1200], flight[1200:]
    second = conversation.server_segment(1200, tail)
    first = conversation.server_segment(0, head)
    conversation.server_next += len(flight)
    conversation.client_ack()
    conversation.client_rst()
    report = _check(builder, tmp_path, Profile.SCAN)

    assert second < first
    assert report.conforms
    attempt = report.targets[0].attempts[0]
    assert attempt.set_number == 1
    assert attempt.certificate
    assert attempt.certificate_number == first


def test_scan_missing_ptr_with_dns(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(3)], ptr=False)
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    synack = numbers.probe_syn + 1
    assert deviations == (
        Deviation(
            synack,
            builder.packets[synack - 1][0],
            f"PTR query and answer for {TARGET}",
            "none",
        ),
    )


def test_scan_ptr_after_hello(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(builder, [AttemptPlan(3)], ptr=False)
    reverse = ipaddress.ip_address(TARGET).reverse_pointer
    query, _ = dns_exchange(builder, reverse, dpkt.dns.DNS_PTR, "www.lab.test", 2)
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert len(deviations) == 1
    assert deviations[0].number == numbers.attempts[0]["hello"]
    assert (
        deviations[0].expected == f"ClientHello after the PTR query in packet {query}"
    )


def test_scan_one_ptr_per_address(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    closed = Conversation(builder, (SCANNER, 61001), (TARGET, 80))
    closed.syn()
    closed.server_rst_ack()
    scan_target(builder, [AttemptPlan(3)], name=None)
    report = _check(builder, tmp_path, Profile.SCAN)

    assert [t.target for t in report.targets] == [f"{TARGET}:80", f"{TARGET}:443"]
    assert report.conforms


def test_scan_ptr_for_silent_address(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe = Conversation(builder, (SCANNER, 61000), (TARGET, 443))
    probe.syn()
    probe.syn()
    reverse = ipaddress.ip_address(TARGET).reverse_pointer
    query, _ = dns_exchange(builder, reverse, dpkt.dns.DNS_PTR, "www.lab.test", 2)
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert len(deviations) == 1
    assert deviations[0].number == query
    assert deviations[0].expected == (
        f"no PTR query for {TARGET}, which did not answer"
    )


def test_scan_without_dns_capture(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    scan_target(builder, [AttemptPlan(3)], name=None, ptr=False)
    assert _check(builder, tmp_path, Profile.SCAN).conforms


def test_scan_closed_port(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    server = (TARGET, 8443)
    probe = Conversation(builder, (SCANNER, 61000), server)
    probe.syn()
    probe.server_rst_ack()
    report = _check(builder, tmp_path, Profile.SCAN)

    assert report.conforms
    assert report.targets[0].probe == "closed"
    assert report.targets[0].attempts == ()


def test_scan_attempt_after_closed(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    server = (TARGET, 443)
    probe = Conversation(builder, (SCANNER, 61000), server)
    probe.syn()
    probe.server_rst_ack()
    numbers = run_attempt(builder, AttemptPlan(1), 50001, server)
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert [d.number for d in deviations] == [numbers["syn"]]
    assert deviations[0].expected == "no further lookup or connection for this target"


def test_scan_probe_without_rst(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe = Conversation(builder, (SCANNER, 61000), (TARGET, 443))
    probe.syn()
    synack = probe.syn_ack()
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    time = builder.packets[synack - 1][0]
    assert deviations == (
        Deviation(synack, time, "RST from scanner", "end of the connection"),
        Deviation(synack, time, "attempt connection", "no more traffic"),
    )


def test_scan_ack_carrying_hello(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe_open(builder, 61000, (TARGET, 443))
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.syn()
    conversation.syn_ack()
    hello = conversation.client_data(build_set_hello(3, bytes(32)))
    conversation.server_data(certificate_flight())
    conversation.client_rst()
    path = builder.write(tmp_path / "raw.pcap")

    scan = check_file(path, Profile.SCAN)
    raw = check_file(path, Profile.RAW)

    deviations = scan.targets[0].deviations
    assert len(deviations) == 1
    assert deviations[0].number == hello
    assert deviations[0].expected == "ACK from scanner"
    assert deviations[0].seen == "PSH/ACK from scanner with 517 bytes"
    # raw: the probe is a separate connection the raw engine never makes.
    assert [d.expected for d in raw.targets[0].deviations] == [
        "ClientHello from scanner"
    ]


def test_raw_single_pass_conforms(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_data(build_set_hello(1, bytes(32)), flags=dpkt.tcp.TH_ACK)
    conversation.server_data(certificate_flight())
    conversation.client_rst()
    report = _check(builder, tmp_path, Profile.RAW)

    assert report.conforms
    assert report.targets[0].attempts[0].set_number == 1


def test_hello_from_no_set(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    foreign = bytearray(build_set_hello(3, bytes(32)))
    foreign[-1] ^= 0xFF
    foreign[50] ^= 0xFF  # a cipher suite byte
    numbers = scan_target(builder, [AttemptPlan(3, hello=bytes(foreign))])
    deviations = _only_target_deviations(_check(builder, tmp_path, Profile.SCAN))

    assert [d.number for d in deviations] == [numbers.attempts[0]["hello"]]
    assert deviations[0].expected == "ClientHello of protocol set 1-4"
    assert deviations[0].seen == "ClientHello (no protocol set)"


def test_port_80_http_request(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    request = b"GET / HTTP/1.0\r\nHost: 198.18.0.2\r\n\r\n"
    scan_target(
        builder, [AttemptPlan(1, hello=request)], server=(TARGET, 80), name=None
    )
    report = _check(builder, tmp_path, Profile.SCAN)

    assert report.conforms
    assert report.targets[0].attempts[0].hello == "HTTP GET / HTTP/1.0"


def test_any_profile_fin_close(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    run_attempt(builder, AttemptPlan(3, close="fin"), 50001, (TARGET, 443))
    report = _check(builder, tmp_path, Profile.ANY)

    assert report.conforms
    assert report.targets[0].attempts[0].close == "FIN from client"


def test_any_profile_ignores_probes(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe_open(builder, 61000, (TARGET, 443))
    report = _check(builder, tmp_path, Profile.ANY)

    assert report.targets == ()


def test_scan_ipv6_target(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    server = ("2001:db8::2", 443)
    probe = Conversation(builder, ("2001:db8::1", 61000), server, 77, 88)
    probe.syn()
    probe.syn_ack()
    probe.client_rst(with_ack=False)
    reverse = ipaddress.ip_address(server[0]).reverse_pointer
    query_id = 3
    dns_exchange(builder, reverse, dpkt.dns.DNS_PTR, "v6.lab.test", query_id)
    attempt = Conversation(builder, ("2001:db8::1", 50001), server)
    attempt.syn()
    attempt.syn_ack()
    attempt.client_ack()
    attempt.client_data(build_set_hello(3, bytes(32)))
    attempt.server_data(certificate_flight())
    attempt.client_rst()
    report = _check(builder, tmp_path, Profile.SCAN)

    assert report.conforms
    assert report.targets[0].target == "[2001:db8::2]:443"
    assert report.targets[0].attempts[0].certificate


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("2.0.18.198.in-addr.arpa", "198.18.0.2"),
        (ipaddress.ip_address("2001:db8::2").reverse_pointer, "2001:db8::2"),
        ("2.0.18.in-addr.arpa", None),
        ("x.0.18.198.in-addr.arpa", None),
        ("example.test", None),
    ],
)
def test_reverse_name_address(name: str, address: str | None) -> None:
    assert address_of_reverse_name(name) == address


def test_scan_lost_segment(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe_open(builder, 61000, (TARGET, 443))
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(build_set_hello(3, bytes(32)))
    flight = certificate_flight()
    conversation.server_next += 100  # the first 100 bytes were never captured
    after_gap = conversation.server_data(flight[100:])
    conversation.client_rst()
    report = _check(builder, tmp_path, Profile.SCAN)

    deviations = report.targets[0].deviations
    assert len(deviations) == 1
    assert deviations[0].number == after_gap
    assert deviations[0].expected == "every byte from target in the capture"
    assert deviations[0].seen == "100 bytes missing before this packet"
    assert not report.targets[0].attempts[0].certificate

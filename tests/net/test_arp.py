"""Tests for the ARP request parser and reply builder."""

from __future__ import annotations

from scapy.layers.l2 import ARP, Ether

from pktscan.net.arp import ArpRequest, build_reply, parse_request

THEIR_MAC = bytes.fromhex("0a0000000002")
OUR_MAC = bytes.fromhex("0a0000000001")
THEIR_IP = bytes([198, 18, 7, 2])
OUR_IP = bytes([198, 18, 7, 99])


def request_frame(**fields: object) -> bytes:
    arp = ARP(op=1, hwsrc="0a:00:00:00:00:02", psrc="198.18.7.2", pdst="198.18.7.99")
    for name, value in fields.items():
        setattr(arp, name, value)
    return bytes(Ether(src="0a:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") / arp)


def test_parse_request() -> None:
    assert parse_request(request_frame()) == ArpRequest(THEIR_MAC, THEIR_IP, OUR_IP)


def test_parse_ignores_replies_short_frames_and_other_protocols() -> None:
    assert parse_request(request_frame(op=2)) is None
    assert parse_request(request_frame()[:41]) is None
    assert parse_request(request_frame(ptype=0x86DD)) is None
    ip_frame = bytes(Ether(type=0x0800)) + bytes(28)
    assert parse_request(ip_frame) is None


def test_reply_tells_our_mac_for_the_address() -> None:
    reply = Ether(build_reply(ArpRequest(THEIR_MAC, THEIR_IP, OUR_IP), OUR_MAC))
    assert (reply.src, reply.dst, reply.type) == (
        "0a:00:00:00:00:01",
        "0a:00:00:00:00:02",
        0x0806,
    )
    arp = reply[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (
        2,
        "0a:00:00:00:00:01",
        "198.18.7.99",
        "0a:00:00:00:00:02",
        "198.18.7.2",
    )

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from callstream.errors import RtpError
from callstream.rtp.packet import RtpPacket, is_rtcp
from tests.rtp.pcap import load_hex_fixture, read_udp

SIPP_G711A = Path("/usr/share/sip-tester/g711a.pcap")


def test_parse_real_pcma_packet() -> None:
    data = load_hex_fixture("pcma_30ms")[0]
    packet = RtpPacket.parse(data)
    assert packet.payload_type == 8
    assert packet.marker is True
    assert packet.sequence_number == 0xE6FD
    assert packet.timestamp == 0xF0
    assert packet.ssrc == 0xDEE0EE8F
    assert len(packet.payload) == 240
    assert packet.payload == data[12:]
    assert packet.csrc == ()
    assert packet.extension_profile is None
    assert packet.padding_bytes == 0


def test_parse_real_telephone_event_packet() -> None:
    packet = RtpPacket.parse(load_hex_fixture("dtmf_digit_1")[0])
    assert (packet.payload_type, packet.marker) == (101, True)
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (0x1F30, 0x33E0, 0x0E05384E)
    assert packet.payload == bytes.fromhex("010a0000")


@pytest.mark.parametrize(
    "name", ["pcma_30ms", "pcma_speech", "dtmf_digit_1", "dtmf_digit_pound", "dtmf_digit_star"]
)
def test_fixtures_round_trip(name: str) -> None:
    for data in load_hex_fixture(name):
        assert RtpPacket.parse(data).serialize() == data


@pytest.mark.skipif(not SIPP_G711A.exists(), reason="SIPp sample captures not installed")
def test_whole_sipp_capture_round_trips() -> None:
    datagrams = read_udp(SIPP_G711A)
    assert len(datagrams) == 236
    for datagram in datagrams:
        assert RtpPacket.parse(datagram.payload).serialize() == datagram.payload


def test_serialize_common_case() -> None:
    packet = RtpPacket(0, 65535, 0xFFFFFFFF, 0x01020304, b"\xff" * 160, marker=True)
    data = packet.serialize()
    assert data[:12] == bytes.fromhex("8080ffffffffffff01020304")
    assert data[12:] == b"\xff" * 160


def test_csrc_extension_and_padding_round_trip() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x08])
        + struct.pack("!HII", 7, 1234, 0xCAFEBABE)
        + struct.pack("!II", 11, 22)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"
        + b"audio"
        + b"\x00\x00\x03"
    )
    packet = RtpPacket.parse(data)
    assert packet.csrc == (11, 22)
    assert packet.extension_profile == 0xBEDE
    assert packet.extension == b"\x10\xaa\x00\x00"
    assert packet.payload == b"audio"
    assert packet.padding_bytes == 3
    assert packet.marker is False
    assert packet.serialize() == data


def test_empty_extension_round_trips() -> None:
    packet = RtpPacket(96, 1, 2, 3, b"x", extension_profile=0x1000)
    data = packet.serialize()
    assert data[0] == 0x90
    assert RtpPacket.parse(data) == packet


HEADER = bytes.fromhex("80000001000000a000000001")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short"),
        (HEADER[:11], "RTP packet too short"),
        (b"\x40" + HEADER[1:], "unsupported RTP version 1"),
        (b"\x00" + HEADER[1:], "unsupported RTP version 0"),
        (b"\x82" + HEADER[1:] + b"\x00\x00\x00\x01", "CSRC list truncated"),
        (b"\x90" + HEADER[1:] + b"\xbe\xde", "RTP header extension truncated"),
        (
            b"\x90" + HEADER[1:] + b"\xbe\xde\x00\x02" + b"\x00" * 7,
            "RTP header extension truncated",
        ),
        (b"\xa0" + HEADER[1:] + b"ab\x04", "RTP padding larger than payload"),
        (b"\xa0" + HEADER[1:] + b"ab\x00", "RTP padding larger than payload"),
        (b"\xa0" + HEADER[1:], "RTP padding larger than payload"),
    ],
)
def test_rejections(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as caught:
        RtpPacket.parse(data)
    assert str(caught.value) == message
    assert caught.value.status == 400


def test_padding_exactly_whole_payload_is_accepted() -> None:
    packet = RtpPacket.parse(b"\xa0" + HEADER[1:] + b"\x00\x00\x03")
    assert packet.payload == b""
    assert packet.padding_bytes == 3


def test_is_rtcp() -> None:
    sender_report = bytes.fromhex("80c8000600000001") + bytes(20)
    receiver_report = bytes.fromhex("81c90007")
    bye = bytes.fromhex("81cb0001")
    assert is_rtcp(sender_report)
    assert is_rtcp(receiver_report)
    assert is_rtcp(bye)
    assert not is_rtcp(load_hex_fixture("pcma_30ms")[0])
    assert not is_rtcp(load_hex_fixture("dtmf_digit_1")[0])  # PT 101 with marker = 0xE5
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(bytes.fromhex("00c8"))

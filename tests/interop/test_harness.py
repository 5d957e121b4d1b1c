"""The interop harness proven without the gateway: SIPp against SIPp, SIPp against
baresip, the pcap/RTP decoder and the log parser. When these pass, a failure in
the gateway tests is the gateway's."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop import pcap
from tests.interop.conftest import Baresip, SippRunner
from tests.interop.harness import (
    HOST,
    Capture,
    PortAllocator,
    parse_events,
    read_wav,
    write_wav,
)
from tests.interop.listening import SIPP_PCAP_DIR, envelope_correlation, heard_on, pcap_audio
from tests.interop.media import decoded_ulaw, tone_ul

G711A_PCAP = SIPP_PCAP_DIR / "g711a.pcap"
DTMF_1_PCAP = SIPP_PCAP_DIR / "dtmf_2833_1.pcap"


def need_sipp_pcaps() -> None:
    if not G711A_PCAP.exists():
        pytest.skip(f"{G711A_PCAP} missing (Debian package sip-tester)")


# ---------------------------------------------------------------- pcap decoding


def test_reads_sipp_g711a_capture() -> None:
    need_sipp_pcaps()
    linktype, records = pcap.read_pcap(G711A_PCAP)
    packets = list(pcap.rtp_packets(pcap.udp_datagrams(G711A_PCAP)))
    assert linktype == pcap.LINKTYPE_EN10MB
    assert len(records) == len(packets) == 236
    assert {p.pt for p in packets} == {pcap.PT_PCMA}
    assert {len(p.payload) for p in packets} == {240}  # 30 ms packets
    audio = pcap.rtp_audio(packets)
    assert len(audio) == 236 * 240 * 2
    assert rms_dbfs(audio) == pytest.approx(-24.7, abs=0.1)


def test_reads_rfc4733_digit_from_sipp_capture() -> None:
    need_sipp_pcaps()
    found = pcap.events(pcap.rtp_packets(pcap.udp_datagrams(DTMF_1_PCAP)))
    assert {code for code, _, _ in found} == {1}
    assert found[-1][1] is True  # the last packets carry the end bit


def _udp_ipv4(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, 6000, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 2]),
    )  # fmt: skip
    return header + udp


_RTP = bytes([0x80, 0x00, 0x00, 0x07, 0, 0, 0, 160, 0, 0, 0, 9]) + bytes([0xFF]) * 160

_LINK_HEADERS = {
    pcap.LINKTYPE_EN10MB: bytes(12) + b"\x08\x00",
    pcap.LINKTYPE_LINUX_SLL: bytes(14) + b"\x08\x00",
    pcap.LINKTYPE_LINUX_SLL2: b"\x08\x00" + bytes(18),
    pcap.LINKTYPE_NULL: struct.pack("<I", 2),
    pcap.LINKTYPE_LOOP: struct.pack("!I", 2),
    pcap.LINKTYPE_RAW: b"",
}


@pytest.mark.parametrize("linktype", sorted(_LINK_HEADERS))
@pytest.mark.parametrize(("endian", "magic"), [("<", 0xA1B2C3D4), (">", 0xA1B23C4D)])
def test_reads_every_link_type(tmp_path: Path, linktype: int, endian: str, magic: int) -> None:
    frame = _LINK_HEADERS[linktype] + _udp_ipv4(_RTP)
    data = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    data += struct.pack(endian + "IIII", 5, 250, len(frame), len(frame)) + frame
    path = tmp_path / "one.pcap"
    path.write_bytes(data + b"\x00\x01")  # a torn last record is ignored
    (datagram,) = pcap.udp_datagrams(path)
    assert datagram.src == ("127.0.0.1", 40000)
    assert datagram.dst == ("127.0.0.2", 6000)
    assert datagram.time == pytest.approx(5 + 250 * (1e-6 if magic == 0xA1B2C3D4 else 1e-9))
    (packet,) = pcap.rtp_packets([datagram])
    assert (packet.pt, packet.seq, packet.ts, packet.ssrc) == (0, 7, 160, 9)
    assert pcap.rtp_audio([packet]) == bytes(320)  # mu-law 0xFF is zero


def test_rejects_pcapng(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    path.write_bytes(bytes.fromhex("0a0d0d0a") + bytes(28))
    with pytest.raises(pcap.PcapError, match=r"not a classic pcap file \(magic 0a0d0d0a\)"):
        pcap.read_pcap(path)


def test_rejects_short_rtp() -> None:
    with pytest.raises(ValueError, match="RTP packet too short: 11 bytes"):
        pcap.RtpPacket.parse(bytes(11))
    with pytest.raises(ValueError, match="RTP version 0 is not 2"):
        pcap.RtpPacket.parse(bytes(12))


@pytest.mark.parametrize(
    ("pt", "code", "value"),
    [(0, 0xFF, 0), (0, 0x7F, 0), (0, 0x00, -32124), (0, 0x80, 32124),
     (8, 0xD5, 8), (8, 0x55, -8), (8, 0xAA, 32256), (8, 0x2A, -32256)],
)  # fmt: skip
def test_g711_decode_tables(pt: int, code: int, value: int) -> None:
    assert struct.unpack("<h", pcap.decode_g711(bytes([code]), pt)) == (value,)


def test_g711_rejects_other_payload_types() -> None:
    with pytest.raises(ValueError, match="payload type 18 is not G.711"):
        pcap.decode_g711(b"\x00", 18)


# ---------------------------------------------------------------- log grammar


def test_parses_call_event_lines() -> None:
    text = (
        "2024-01-01 12:00:00 INFO callstream starting on 127.0.0.1:5060\n"
        "call 6f1c incoming from=sip:a@h to=sip:echo@h sip_call_id=abc@1\n"
        'INFO call 6f1c answered codec=PCMA note="two words"\n'
        "call 6f1c ended by=remote reason=bye\n"
    )
    events = parse_events(text)
    assert [(e.call_id, e.event) for e in events] == [
        ("6f1c", "incoming"),
        ("6f1c", "answered"),
        ("6f1c", "ended"),
    ]
    assert events[0].fields == {"from": "sip:a@h", "to": "sip:echo@h", "sip_call_id": "abc@1"}
    assert events[1].fields == {"codec": "PCMA", "note": "two words"}


# ---------------------------------------------------------------- real peers


def test_sipp_echo_peer_returns_g711a_speech_and_digit(
    sipp: SippRunner, ports: PortAllocator, capture: Callable[[int], Capture]
) -> None:
    need_sipp_pcaps()
    peer = sipp.start("builtin:uas", None, "-rtp_echo", timeout=40, listen=True)
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp.start(
            "uac_pcap_echo", f"{HOST}:{peer.port}", "-s", "echo", timeout=40, media_port=media_port
        )
        result = caller.wait(60)
    assert result.returncode == 0, result.explain()
    heard, packets = heard_on(cap.path, caller.media_port)
    assert rms_dbfs(heard) > -30
    assert envelope_correlation(pcap_audio(G711A_PCAP), heard) > 0.95
    assert 1 in {code for code, _, _ in pcap.events(packets)}


def test_sipp_echo_peer_returns_tone(
    sipp: SippRunner, ports: PortAllocator, capture: Callable[[int], Capture], tmp_path: Path
) -> None:
    peer = sipp.start("builtin:uas", None, "-rtp_echo", timeout=30, listen=True)
    tone = tone_ul(tmp_path)
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp.start(
            "uac_tone_echo", f"{HOST}:{peer.port}", "-s", "echo", timeout=30, files=[tone],
            media_port=media_port,
        )  # fmt: skip
        result = caller.wait(45)
    assert result.returncode == 0, result.explain()
    heard, _ = heard_on(cap.path, caller.media_port)
    assert len(heard) >= 2 * 8000 * 2.9
    assert dominant_frequency(heard) == pytest.approx(1000, abs=20)
    assert rms_dbfs(heard) == pytest.approx(rms_dbfs(decoded_ulaw(tone)), abs=0.5)


@pytest.mark.parametrize(("password", "answered"), [("p", True), ("wrong", False)])
def test_sipp_digest_trunk_checks_credentials(
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
    password: str,
    answered: bool,
) -> None:
    trunk = sipp.start("uas_digest", None, timeout=20, listen=True, files=[tone_ul(tmp_path)])
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp.start(
            "uac_auth_check", f"{HOST}:{trunk.port}", "-s", "trunk", "-au", "u", "-ap", password,
            timeout=15, media_port=media_port,
        )  # fmt: skip
        caller_result = caller.wait(30)
    trunk_result = trunk.wait(30)
    if answered:
        assert caller_result.returncode == 0, caller_result.explain()
        assert trunk_result.returncode == 0, trunk_result.explain()
        heard, _ = heard_on(cap.path, caller.media_port)
        assert dominant_frequency(heard) == pytest.approx(1000, abs=20)
    else:
        assert caller_result.returncode != 0
        assert trunk_result.returncode != 0
        assert "403 Forbidden" in trunk_result.messages


def test_baresip_records_what_sipp_sends(
    sipp: SippRunner, baresip_factory: Callable[[Path], Baresip], tmp_path: Path
) -> None:
    source = write_wav(tmp_path / "baresip_says.wav", bytes(8000 * 2 * 10))
    phone = baresip_factory(source)
    caller = sipp.start(
        "uac_tone_echo", f"{HOST}:{phone.port}", "-s", "bob", timeout=30, files=[tone_ul(tmp_path)]
    )
    result = caller.wait(45)
    assert result.returncode == 0, result.explain()
    phone.wait_for_log("terminated", 10)
    (recording,) = phone.received()
    pcm, rate = read_wav(recording)
    assert rate == 8000
    assert len(pcm) >= 2 * 8000 * 2.5
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=20)
    assert rms_dbfs(pcm) > -10

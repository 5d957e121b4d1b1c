import uuid

import pytest

from callstream.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from callstream.errors import MediaError
from callstream.rtp.packet import RtpPacket
from callstream.wire.base import WireOptionError
from callstream.wire.rtp import RtpWire
from tests.rtp.pcap import load_hex_fixture

STREAM_ID = uuid.UUID("0b8c6a52-3f1e-4d2a-9c47-5e6f7a8b9c0d")
SILENCE_FRAME = bytes(320)
# A frame of a ramp: samples 0, 100, 200, ... so the payload is not all one byte.
RAMP_FRAME = b"".join((100 * n).to_bytes(2, "little", signed=True) for n in range(160))


def _wire() -> RtpWire:
    return RtpWire(
        stream_id=STREAM_ID,
        options={},
        ssrc=0x11223344,
        sequence_number=0xFFFF,
        timestamp=0xFFFFFFA0,
    )


def _packet(sequence_number: int, payload: bytes, payload_type: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type, sequence_number, 1000, ssrc, payload).serialize()


def test_outgoing_packets_are_172_bytes_with_exact_headers() -> None:
    wire = _wire()
    first = wire.encode_audio(SILENCE_FRAME)
    second = wire.encode_audio(SILENCE_FRAME)
    third = wire.encode_audio(RAMP_FRAME)
    # Marker on the first only; the sequence number and timestamp wrap around.
    assert first == bytes.fromhex("8080ffffffffffa011223344") + b"\xff" * 160
    assert second == bytes.fromhex("800000000000004011223344") + b"\xff" * 160
    assert third[:12] == bytes.fromhex("80000001000000e011223344")
    assert len(first) == len(second) == len(third) == 172
    assert third[12:] == ulaw_encode(RAMP_FRAME)


def test_outgoing_packets_parse_back_and_decode_to_the_frame() -> None:
    sender = _wire()
    receiver = RtpWire(stream_id=STREAM_ID, options={})
    packet = RtpPacket.parse(sender.encode_audio(RAMP_FRAME))
    assert (packet.payload_type, packet.ssrc, packet.marker) == (0, 0x11223344, True)
    decoded = receiver.decode(sender.encode_audio(RAMP_FRAME))
    assert decoded.faults == []
    assert decoded.audio == [ulaw_decode(ulaw_encode(RAMP_FRAME))]


def test_defaults_are_random_per_stream() -> None:
    wires = [RtpWire(stream_id=uuid.uuid4(), options={}) for _ in range(4)]
    assert len({wire.ssrc for wire in wires}) == 4
    assert all(0 <= wire.ssrc < 2**32 for wire in wires)
    assert all(0 <= wire.next_sequence_number < 2**16 for wire in wires)


def test_no_options_and_no_dtmf_opening_or_closing() -> None:
    wire = _wire()
    assert wire.opening() == [] and wire.closing() == []
    assert wire.encode_dtmf("5") is None and wire.error_message() is None
    with pytest.raises(WireOptionError, match="^format: not an option of the rtp encapsulation$"):
        RtpWire(stream_id=STREAM_ID, options={"format": "ulaw"})


def test_frame_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(MediaError, match="^frame must be 320 bytes, got 160$"):
        _wire().encode_audio(bytes(160))


def test_real_pcma_capture_decodes_packet_by_packet() -> None:
    wire = _wire()
    for name in ("pcma_30ms", "pcma_speech"):
        for data in load_hex_fixture(name):
            decoded = wire.decode(data)
            assert decoded.faults == []
            assert decoded.audio == [alaw_decode(data[12:])]
            assert len(decoded.audio[0]) == 480  # 30 ms: any payload length is accepted


def test_real_telephone_event_capture_is_refused_by_payload_type() -> None:
    decoded = _wire().decode(load_hex_fixture("dtmf_digit_1")[0])
    assert decoded.audio == []
    assert decoded.faults == ["payload type 101 is not PCMU (0) or PCMA (8)"]


def test_pcmu_with_csrc_extension_and_padding() -> None:
    payload = ulaw_encode(RAMP_FRAME)[:100]
    data = RtpPacket(
        0,
        5,
        800,
        9,
        payload,
        marker=True,
        csrc=(1, 2),
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding_bytes=3,
    ).serialize()
    assert data[0] == 0xB2  # V=2, P, X, CC=2
    decoded = _wire().decode(data)
    assert decoded.faults == [] and decoded.audio == [ulaw_decode(payload)]


def test_gaps_are_not_filled_and_late_packets_are_taken_in_arrival_order() -> None:
    wire = _wire()
    audio = []
    for sequence_number, fill in ((10, b"\x11"), (14, b"\x22"), (12, b"\x33")):
        decoded = wire.decode(_packet(sequence_number, fill * 160))
        assert decoded.faults == []
        audio += decoded.audio
    assert audio == [ulaw_decode(fill * 160) for fill in (b"\x11", b"\x22", b"\x33")]


def test_duplicates_of_recent_packets_are_dropped() -> None:
    wire = _wire()
    assert wire.decode(_packet(100, b"\x01" * 160)).faults == []
    duplicate = wire.decode(_packet(100, b"\x01" * 160))
    assert duplicate.audio == [] and duplicate.faults == ["duplicate RTP packet"]
    for sequence_number in range(101, 132):  # 31 more: 100 is still among the last 32
        wire.decode(_packet(sequence_number, b"\x01"))
    assert wire.decode(_packet(100, b"\x01")).faults == ["duplicate RTP packet"]
    wire.decode(_packet(132, b"\x01"))  # now 100 has left the window
    assert wire.decode(_packet(100, b"\x01")).faults == []


def test_a_new_ssrc_starts_a_new_duplicate_window() -> None:
    wire = _wire()
    wire.decode(_packet(1, b"\x01", ssrc=1))
    assert wire.decode(_packet(1, b"\x01", ssrc=2)).faults == []
    assert wire.decode(_packet(1, b"\x01", ssrc=2)).faults == ["duplicate RTP packet"]


def test_empty_payload_gives_no_audio_and_no_fault() -> None:
    decoded = _wire().decode(_packet(1, b""))
    assert decoded.audio == [] and decoded.faults == []


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("hello", "text message where binary was expected"),
        (b"", "RTP packet too short"),
        (b"\x80\x00\x00", "RTP packet too short"),
        (bytes.fromhex("4000000100000000000000070000"), "RTP version 1 is not supported"),
        (bytes.fromhex("0000000100000000000000070000"), "RTP version 0 is not supported"),
        (bytes.fromhex("c000000100000000000000070000"), "RTP version 3 is not supported"),
        # An RTCP sender report (PT 200) multiplexed on the stream.
        (bytes.fromhex("80c8000600000007") + bytes(20), "RTCP is not accepted on a media stream"),
        (bytes.fromhex("82000001000000000000000700000001"), "CSRC list truncated"),
        (bytes.fromhex("900000010000000000000007bede00"), "RTP header extension truncated"),
        (bytes.fromhex("a00000010000000000000007ffff09"), "RTP padding larger than payload"),
        (_packet(1, b"\x00" * 160, payload_type=9), "payload type 9 is not PCMU (0) or PCMA (8)"),
        (_packet(1, b"\x00" * 4, payload_type=101), "payload type 101 is not PCMU (0) or PCMA (8)"),
    ],
)
def test_each_rejection_has_its_exact_fault(message: bytes | str, fault: str) -> None:
    decoded = _wire().decode(message)
    assert decoded.faults == [fault]
    assert decoded.audio == [] and decoded.dtmf == [] and decoded.hangup is False


def test_duplicates_are_found_across_the_sequence_wrap_and_after_late_packets() -> None:
    wire = _wire()
    faults = [wire.decode(_packet(n, b"\x01")).faults for n in (65534, 65535, 0, 1)]
    assert faults == [[], [], [], []]
    for repeated in (65535, 0, 1):
        assert wire.decode(_packet(repeated, b"\x01")).faults == ["duplicate RTP packet"]
    assert wire.decode(_packet(65533, b"\x01")).faults == []  # late, never seen
    assert wire.decode(_packet(65534, b"\x01")).faults == ["duplicate RTP packet"]
    assert wire.decode(_packet(2, b"\x01")).faults == []  # the next after the newest
    assert wire.decode(_packet(65533, b"\x01")).faults == ["duplicate RTP packet"]
    assert wire.decode(_packet(2, b"\x01")).faults == ["duplicate RTP packet"]

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callstream.errors import ConfigError, MediaError, RtpError
from callstream.media.frame import FRAME_BYTES, SILENCE
from callstream.rtp.dtmf import DtmfDetector, DtmfDigit, TelephoneEvent
from callstream.rtp.packet import RtpPacket
from callstream.rtp.session import ReceivedMedia, RtpSession
from tests.audio_analysis import dominant_frequency, sine
from tests.rtp.pcap import load_hex_fixture

TONE = sine(1000, 0.02)


def _session(**kwargs: int | None) -> RtpSession:
    defaults: dict[str, int | None] = {
        "ssrc": 0x11223344,
        "initial_sequence": 65534,
        "initial_timestamp": 0xFFFFFF60,
    }
    defaults.update(kwargs)
    return RtpSession(**defaults)  # type: ignore[arg-type]


def _audio(sequence_number: int, payload_type: int = 0, ssrc: int = 5) -> bytes:
    payload = ulaw_encode(TONE) if payload_type == 0 else b"\xd5" * 160
    return RtpPacket(
        payload_type, sequence_number, 160 * sequence_number, ssrc, payload
    ).serialize()


def test_receive_real_pcma_capture() -> None:
    session = _session()
    frames: list[bytes] = []
    for data in load_hex_fixture("pcma_30ms") + load_hex_fixture("pcma_speech"):
        received = session.receive(data)
        assert received.dtmf == []
        frames += received.frames
    assert [len(frame) for frame in frames] == [480] * 13  # 30 ms packets
    payload = RtpPacket.parse(load_hex_fixture("pcma_speech")[0]).payload
    assert frames[3] == alaw_decode(payload)
    # The two fixtures are 48 sequence numbers apart: 47 lost, skipped at once.
    assert session.packets_lost == 47
    assert session.packets_received == 13
    assert session.bytes_received == 13 * 252


def test_receive_decodes_by_packet_payload_type() -> None:
    session = _session(payload_type=8)
    received = session.receive(_audio(1, payload_type=0))
    assert received.frames == [ulaw_decode(ulaw_encode(TONE))]
    assert len(received.frames[0]) == FRAME_BYTES
    assert session.receive(_audio(2, payload_type=8)).frames == [alaw_decode(b"\xd5" * 160)]


def test_receive_real_dtmf_capture() -> None:
    session = _session()
    digits: list[DtmfDigit] = []
    for data in load_hex_fixture("dtmf_digit_pound"):
        received = session.receive(data)
        assert received.frames == []
        digits += received.dtmf
    assert digits == [DtmfDigit("#", 280)]
    assert session.packets_duplicate == 2  # the end packet resent with one sequence number


def test_rtcp_is_ignored() -> None:
    session = _session()
    assert session.receive(bytes.fromhex("80c8000600000001") + bytes(20)) == ReceivedMedia()
    assert (session.rtcp_received, session.packets_received, session.malformed) == (1, 0, 0)


def test_unknown_payload_types_are_counted_and_keep_sequence() -> None:
    session = _session()
    assert len(session.receive(_audio(1)).frames) == 1
    comfort_noise = RtpPacket(13, 2, 320, 5, b"\x40").serialize()
    assert session.receive(comfort_noise) == ReceivedMedia()
    assert len(session.receive(_audio(3)).frames) == 1  # no gap: delivered at once
    assert session.unknown_payload_type == 1
    assert session.packets_lost == 0


def test_malformed_packet_raises_and_is_counted() -> None:
    session = _session()
    with pytest.raises(RtpError, match="^RTP packet too short$"):
        session.receive(b"\x80\x00\x00")
    short_event = RtpPacket(101, 1, 0, 5, b"\x01").serialize()
    assert session.receive(short_event) == ReceivedMedia()
    assert session.malformed == 2


def test_reordered_packets_come_out_in_order_and_flush_needs_two_ticks() -> None:
    session = _session()
    assert len(session.receive(_audio(10)).frames) == 1
    assert session.receive(_audio(12)).frames == []
    assert session.flush() == ReceivedMedia()  # held: give 11 one tick
    assert len(session.receive(_audio(11)).frames) == 2
    assert session.receive(_audio(14)).frames == []
    assert session.flush() == ReceivedMedia()
    assert len(session.flush().frames) == 1  # 13 never came
    assert session.packets_lost == 1
    assert session.receive(_audio(13)) == ReceivedMedia()
    assert session.packets_late == 1


def test_dtmf_whose_end_was_lost_is_reported_when_audio_resumes() -> None:
    session = _session()
    session.receive(_audio(1))
    for sequence_number, duration in ((2, 160), (3, 320), (4, 480)):
        event = TelephoneEvent(4, False, 10, duration).serialize()
        session.receive(RtpPacket(101, sequence_number, 320, 5, event).serialize())
    # The three end packets (5-7) are lost; audio resumes with 8, held behind the gap.
    assert session.receive(RtpPacket(0, 8, 320 + 6 * 160, 5, b"\xff" * 160).serialize()) == (
        ReceivedMedia()
    )
    assert session.flush() == ReceivedMedia()
    received = session.flush()
    assert received.dtmf == [DtmfDigit("4", 60)]
    assert session.packets_lost == 3
    assert len(received.frames) == 1


def test_send_audio_sequence_timestamp_and_marker() -> None:
    session = _session()
    packets = [RtpPacket.parse(session.send_frame(TONE)) for _ in range(3)]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert [p.timestamp for p in packets] == [0xFFFFFF60, 0, 160]
    assert [p.marker for p in packets] == [True, False, False]
    assert {p.ssrc for p in packets} == {0x11223344}
    assert {p.payload_type for p in packets} == {0}
    assert packets[0].payload == ulaw_encode(TONE)
    assert session.packets_sent == 3


def test_send_none_sends_comfort_silence() -> None:
    session = _session()
    assert RtpPacket.parse(session.send_frame(None)).payload == b"\xff" * 160
    session.set_payload_type(8)
    packet = RtpPacket.parse(session.send_frame(None))
    assert (packet.payload_type, packet.payload) == (8, b"\xd5" * 160)
    assert RtpPacket.parse(session.send_frame(SILENCE)).payload == b"\xd5" * 160


def test_set_payload_type_rejects_non_g711() -> None:
    session = _session()
    with pytest.raises(MediaError, match="^no G.711 codec for payload type 18$"):
        session.set_payload_type(18)
    assert session.payload_type == 0
    session.payload_type = 8
    assert RtpPacket.parse(session.send_frame(TONE)).payload_type == 8


@pytest.mark.parametrize(
    ("encoding", "encode", "decode"),
    [("PCMU", ulaw_encode, ulaw_decode), ("pcma", alaw_encode, alaw_decode)],
)
def test_a_dynamic_payload_type_mapped_to_g711_is_sent_and_decoded_as_it(
    encoding: str, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    """SDP may map G.711 to a dynamic number (``a=rtpmap:96 PCMU/8000``): audio goes
    out with that number and comes in decoded by it; the static numbers still decode."""
    session = _session()
    session.set_payload_type(96, encoding)
    packet = RtpPacket.parse(session.send_frame(TONE))
    assert (packet.payload_type, packet.payload) == (96, encode(TONE))
    assert session.payload_type == 96
    incoming = RtpPacket(96, 1, 160, 5, encode(TONE)).serialize()
    assert session.receive(incoming).frames == [decode(encode(TONE))]
    assert session.receive(_audio(2, payload_type=0)).frames == [ulaw_decode(ulaw_encode(TONE))]
    assert session.unknown_payload_type == 0


def test_a_dynamic_payload_type_needs_a_g711_encoding() -> None:
    session = _session()
    with pytest.raises(MediaError, match="^no G.711 codec for payload type 96$"):
        session.set_payload_type(96)
    with pytest.raises(MediaError, match="^no G.711 codec named 'opus'$"):
        session.set_payload_type(96, "opus")
    with pytest.raises(MediaError, match="^no G.711 codec for payload type 18$"):
        session.set_payload_type(18, "PCMU")  # a static number is what it is
    assert session.payload_type == 0
    # a packet of an unmapped dynamic type is counted, not decoded
    assert session.receive(RtpPacket(97, 1, 160, 5, b"\xff" * 160).serialize()).frames == []
    assert session.unknown_payload_type == 1


def test_send_frame_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="^send_frame needs 320 bytes of PCM, got 2$"):
        _session().send_frame(b"\x00\x00")


def test_send_tick_returns_one_packet() -> None:
    session = _session()
    first = session.send_tick(None)
    assert len(first) == 1
    assert RtpPacket.parse(first[0]).sequence_number == 65534
    assert RtpPacket.parse(session.send_tick(None)[0]).sequence_number == 65535


def test_send_dtmf_replaces_audio_and_timestamps_keep_advancing() -> None:
    session = _session(initial_sequence=100, initial_timestamp=1000)
    session.send_frame(TONE)
    session.send_dtmf("7", duration_ms=60)
    packets = [RtpPacket.parse(session.send_frame(TONE)) for _ in range(10)]
    events = packets[:5]
    assert [p.payload_type for p in packets] == [101] * 5 + [0] * 5
    assert [p.sequence_number for p in packets] == list(range(101, 111))
    assert {p.timestamp for p in events} == {1160}
    assert [p.marker for p in events] == [True, False, False, False, False]
    assert [TelephoneEvent.parse(p.payload) for p in events] == [
        TelephoneEvent(7, False, 10, 160),
        TelephoneEvent(7, False, 10, 320),
        TelephoneEvent(7, True, 10, 480),
        TelephoneEvent(7, True, 10, 480),
        TelephoneEvent(7, True, 10, 480),
    ]
    assert [p.timestamp for p in packets[5:]] == [1000 + 160 * n for n in range(6, 11)]
    assert not packets[5].marker
    detector = DtmfDetector()
    reported = [detector.receive(p) for p in events]
    assert reported == [None, None, DtmfDigit("7", 60), None, None]


def test_send_dtmf_between_two_sessions() -> None:
    alice, bob = _session(), _session(ssrc=99)
    alice.send_dtmf("12#", duration_ms=100)
    heard: list[DtmfDigit] = []
    audio_frames = 0
    for _ in range(40):
        received = bob.receive(alice.send_frame(TONE))
        heard += received.dtmf
        audio_frames += len(received.frames)
    assert heard == [DtmfDigit("1", 100), DtmfDigit("2", 100), DtmfDigit("#", 100)]
    assert audio_frames == 40 - 3 * 7
    assert dominant_frequency(bob.receive(alice.send_frame(TONE)).frames[0]) == pytest.approx(
        1000, abs=5
    )


def test_send_dtmf_without_telephone_event() -> None:
    session = _session(telephone_event_pt=None)
    with pytest.raises(ConfigError, match="^cannot send DTMF: the peer did not accept"):
        session.send_dtmf("1")


def test_random_identifiers_when_not_given() -> None:
    session = RtpSession()
    packet = RtpPacket.parse(session.send_frame(None))
    assert packet.ssrc == session.ssrc
    assert 0 <= packet.sequence_number <= 0xFFFF
    assert {RtpSession().ssrc for _ in range(5)} != {session.ssrc}


def test_sans_io_modules_import_no_io() -> None:
    import ast
    from pathlib import Path

    import callstream

    root = Path(callstream.__file__).parent
    modules = [
        "rtp/packet.py",
        "rtp/dtmf.py",
        "rtp/reorder.py",
        "rtp/session.py",
        "codecs/g711.py",
        "codecs/resample.py",
        "media/mixer.py",
        "media/tone.py",
    ]
    for module in modules:
        tree = ast.parse((root / module).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"asyncio", "socket", "time", "selectors"}, module


def test_skipped_ticks_advance_the_timestamp_but_not_the_sequence_number() -> None:
    session = _session(initial_sequence=7, initial_timestamp=0xFFFFFF60)
    first = RtpPacket.parse(session.send_frame(None))
    session.skip_ticks(25)
    second = RtpPacket.parse(session.send_frame(None))
    assert (first.sequence_number, second.sequence_number) == (7, 8)
    assert (first.timestamp, second.timestamp) == (0xFFFFFF60, (26 * 160 - 160) & 0xFFFFFFFF)
    session.skip_ticks(0)
    assert RtpPacket.parse(session.send_frame(None)).timestamp == second.timestamp + 160


# -- the per-packet fast path (receive_in_order) ------------------------------------------


def _packet_from(step: tuple[str, int, int, int]) -> bytes:
    """One datagram of a generated stream: audio, DTMF, RTCP or garbage."""
    kind, sequence_number, ssrc, value = step
    if kind == "rtcp":
        return bytes((0x80, 200)) + bytes(26)
    if kind == "garbage":
        return bytes((value & 0xFF,)) * (value % 14)
    if kind == "event":
        event = TelephoneEvent(event=value % 16, end=value % 3 == 0, volume=10, duration=value)
        timestamp = (160 * (sequence_number - value % 3)) & 0xFFFFFFFF
        payload_type, payload = 101, event.serialize()
    else:
        payload_type = {"pcmu": 0, "pcma": 8, "unknown": 13, "empty": 0}[kind]
        timestamp = 160 * sequence_number
        payload = b"" if kind == "empty" else bytes((value & 0xFF,)) * 160
    return RtpPacket(payload_type, sequence_number, timestamp, ssrc, payload).serialize()


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["pcmu"] * 6 + ["pcma", "event", "rtcp", "garbage", "unknown", "empty"]),
        st.sampled_from([1, 1, 1, 0, 2, 3, -1, -2]),  # sequence move: 1 in order, 0 repeats
        st.sampled_from([5, 5, 5, 6]),
        st.integers(0, 2000),
    ),
    min_size=5,
    max_size=60,
)


@settings(max_examples=300)
@given(_STEPS, st.integers(0, 65535))
def test_the_fast_path_gives_what_receive_gives(
    steps: list[tuple[str, int, int, int]], first_sequence: int
) -> None:
    reference, fast = _session(), _session()
    sequence_number = first_sequence
    for index, (kind, move, ssrc, value) in enumerate(steps):
        sequence_number = (sequence_number + move) % 65536
        data = _packet_from((kind, sequence_number, ssrc, value))
        outcomes = []
        for session, first_try_fast in ((reference, False), (fast, True)):
            frame = session.receive_in_order(data) if first_try_fast else None
            if frame is not None:
                outcomes.append(([frame], []))
                continue
            try:
                received = session.receive(data)
            except RtpError as error:
                outcomes.append(([str(error)], []))
                continue
            outcomes.append((received.frames, received.dtmf))
        assert outcomes[0] == outcomes[1]
        if index % 3 == 2:  # a tick
            assert bool(reference.waiting_packets) == bool(fast.waiting_packets)
            if reference.waiting_packets:
                flushed = reference.flush(), fast.flush()
                assert flushed[0] == flushed[1]
            else:
                assert reference.flush() == ReceivedMedia()
    for counter in ("packets_received", "bytes_received", "malformed", "rtcp_received"):
        assert getattr(reference, counter) == getattr(fast, counter), counter
    assert (reference.packets_duplicate, reference.packets_late, reference.packets_lost) == (
        fast.packets_duplicate,
        fast.packets_late,
        fast.packets_lost,
    )


def test_the_fast_path_takes_in_order_audio_and_leaves_the_rest() -> None:
    session = _session()
    assert session.receive(_audio(10)).frames  # the first packet starts the stream
    assert session.receive_in_order(_audio(11)) == ulaw_decode(ulaw_encode(TONE))
    assert session.receive_in_order(_audio(11)) is None  # a duplicate: receive() judges it
    assert session.receive_in_order(_audio(13)) is None  # after a gap
    assert session.receive(_audio(13)).frames == []  # held for the gap
    assert session.waiting_packets
    assert session.receive_in_order(_audio(12)) is None  # fills it, but 13 is held
    assert len(session.receive(_audio(12)).frames) == 2
    assert session.receive_in_order(_audio(14, ssrc=9)) is None  # a new source
    assert session.packets_received == 4  # the duplicate never reached receive()

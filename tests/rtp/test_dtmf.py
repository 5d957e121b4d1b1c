from __future__ import annotations

import pytest

from callstream.errors import ConfigError, RtpError
from callstream.rtp.dtmf import (
    DIGIT_TO_EVENT,
    EVENT_TO_DIGIT,
    DtmfDetector,
    DtmfDigit,
    DtmfSender,
    DtmfTick,
    TelephoneEvent,
)
from callstream.rtp.packet import RtpPacket
from tests.rtp.pcap import load_hex_fixture


def _event_packet(
    event: int,
    timestamp: int,
    duration: int,
    end: bool = False,
    sequence_number: int = 1,
    ssrc: int = 0x1234,
) -> RtpPacket:
    payload = TelephoneEvent(event, end, 10, duration).serialize()
    return RtpPacket(101, sequence_number, timestamp, ssrc, payload)


def test_digit_tables() -> None:
    assert [EVENT_TO_DIGIT[event] for event in range(16)] == list("0123456789*#ABCD")
    assert DIGIT_TO_EVENT["#"] == 11
    assert DIGIT_TO_EVENT["*"] == 10
    assert DIGIT_TO_EVENT["D"] == 15


def test_parse_real_payloads() -> None:
    packets = [RtpPacket.parse(data) for data in load_hex_fixture("dtmf_digit_1")]
    first = TelephoneEvent.parse(packets[0].payload)
    assert first == TelephoneEvent(event=1, end=False, volume=10, duration=0)
    last = TelephoneEvent.parse(packets[-1].payload)
    assert last == TelephoneEvent(event=1, end=True, volume=10, duration=0x08C0)
    for packet in packets:
        assert TelephoneEvent.parse(packet.payload).serialize() == packet.payload


def test_serialize() -> None:
    assert TelephoneEvent(11, True, 63, 800).serialize() == bytes.fromhex("0bbf0320")
    assert TelephoneEvent(0, False, 0, 0).serialize() == bytes(4)


def test_parse_ignores_reserved_bit_and_extra_bytes() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("05ca0140ffff")) == TelephoneEvent(5, True, 10, 320)


def test_payload_too_short() -> None:
    with pytest.raises(RtpError, match="^telephone-event payload too short$"):
        TelephoneEvent.parse(b"\x01\x0a\x00")


@pytest.mark.parametrize(
    ("name", "digit"),
    [("dtmf_digit_1", "1"), ("dtmf_digit_pound", "#"), ("dtmf_digit_star", "*")],
)
def test_detector_reports_real_capture_once(name: str, digit: str) -> None:
    detector = DtmfDetector()
    reports = [detector.receive(RtpPacket.parse(data)) for data in load_hex_fixture(name)]
    # Seven updates, then the end packet three times: reported on the first end.
    assert reports[:7] == [None] * 7
    assert reports[7] == DtmfDigit(digit, 280)  # duration 0x08C0 = 2240 units at 8 kHz
    assert reports[8:] == [None, None]
    assert detector.flush() is None


def test_detector_reports_event_whose_end_was_lost_when_next_starts() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(5, 1000, 160)) is None
    assert detector.receive(_event_packet(5, 1000, 320)) is None
    assert detector.receive(_event_packet(7, 2600, 160)) == DtmfDigit("5", 40)
    assert detector.receive(_event_packet(7, 2600, 800, end=True)) == DtmfDigit("7", 100)


def test_detector_ignores_late_retransmit_of_a_finished_event() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(5, 1000, 800, end=True)) == DtmfDigit("5", 100)
    assert detector.receive(_event_packet(6, 3000, 160)) is None
    assert detector.receive(_event_packet(5, 1000, 800, end=True)) is None
    # An older timestamp never reported is stale too (reordered from long ago).
    assert detector.receive(_event_packet(9, 500, 800, end=True)) is None
    assert detector.receive(_event_packet(6, 3000, 480, end=True)) == DtmfDigit("6", 60)


def test_detector_handles_timestamp_wrap() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(1, 0xFFFFFF00, 400, end=True)) == DtmfDigit("1", 50)
    assert detector.receive(_event_packet(2, 0x00000200, 400, end=True)) == DtmfDigit("2", 50)


def test_detector_tolerates_ssrc_change() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(3, 1000, 160, ssrc=1)) is None
    # Same timestamp, new source: a new event; the unfinished one is reported.
    assert detector.receive(_event_packet(4, 1000, 160, ssrc=2)) == DtmfDigit("3", 20)
    assert detector.receive(_event_packet(4, 1000, 320, end=True, ssrc=2)) == DtmfDigit("4", 40)
    assert detector.receive(_event_packet(8, 10, 320, end=True, ssrc=3)) == DtmfDigit("8", 40)


def test_detector_flush_reports_unfinished_event_once() -> None:
    detector = DtmfDetector()
    assert detector.flush() is None
    detector.receive(_event_packet(12, 1000, 480))
    assert detector.flush() == DtmfDigit("A", 60)
    assert detector.flush() is None
    assert detector.receive(_event_packet(12, 1000, 800, end=True)) is None


def test_detector_ignores_non_dtmf_events() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(16, 1000, 800, end=True)) is None  # flash
    assert detector.receive(_event_packet(0, 2000, 800, end=True)) == DtmfDigit("0", 100)


def test_detector_raises_on_short_payload() -> None:
    with pytest.raises(RtpError, match="^telephone-event payload too short$"):
        DtmfDetector().receive(RtpPacket(101, 1, 1, 1, b"\x01"))


def _run(sender: DtmfSender, ticks: int, start: int = 8000) -> list[DtmfTick | None]:
    return [sender.next_tick(start + 160 * index) for index in range(ticks)]


def test_sender_one_digit() -> None:
    sender = DtmfSender()
    assert not sender.busy
    sender.send("5", duration_ms=100, volume=10)
    assert sender.busy
    ticks = _run(sender, 12)
    sent = [tick for tick in ticks if tick is not None]
    assert ticks[7:] == [None] * 5
    assert [TelephoneEvent.parse(tick.payload) for tick in sent] == [
        TelephoneEvent(5, False, 10, 160),
        TelephoneEvent(5, False, 10, 320),
        TelephoneEvent(5, False, 10, 480),
        TelephoneEvent(5, False, 10, 640),
        TelephoneEvent(5, True, 10, 800),
        TelephoneEvent(5, True, 10, 800),
        TelephoneEvent(5, True, 10, 800),
    ]
    assert [tick.marker for tick in sent] == [True] + [False] * 6
    assert {tick.timestamp for tick in sent} == {8000}
    assert not sender.busy  # 60 ms gap (3 ticks) over by tick 10


def test_sender_gap_between_digits_and_round_trip_through_detector() -> None:
    sender = DtmfSender(gap_ms=60)
    sender.send("1#", duration_ms=40)
    ticks = _run(sender, 16)
    # Digit: 2 packets (the second is the first end) + 2 more ends; gap 3; next digit.
    assert [tick is not None for tick in ticks] == [True] * 4 + [False] * 3 + [True] * 4 + [
        False
    ] * 5
    first, second = ticks[0], ticks[7]
    assert first is not None and second is not None
    assert (first.timestamp, second.timestamp) == (8000, 8000 + 7 * 160)
    assert second.marker
    detector = DtmfDetector()
    digits = []
    for sequence, tick in enumerate(ticks):
        if tick is not None:
            packet = RtpPacket(101, sequence, tick.timestamp, 1, tick.payload, tick.marker)
            digit = detector.receive(packet)
            if digit is not None:
                digits.append(digit)
    assert digits == [DtmfDigit("1", 40), DtmfDigit("#", 40)]


def test_sender_duration_not_a_multiple_of_packet() -> None:
    sender = DtmfSender()
    sender.send("a", duration_ms=50)
    events = [TelephoneEvent.parse(tick.payload) for tick in _run(sender, 3) if tick]
    assert events == [
        TelephoneEvent(12, False, 10, 160),
        TelephoneEvent(12, False, 10, 320),
        TelephoneEvent(12, True, 10, 400),
    ]


def test_sender_clear_keeps_current_digit() -> None:
    sender = DtmfSender(gap_ms=0)
    sender.send("12", duration_ms=40)
    assert sender.next_tick(0) is not None
    sender.clear()
    ticks = _run(sender, 6, start=160)
    assert [tick is not None for tick in ticks] == [True, True, True, False, False, False]


@pytest.mark.parametrize(
    ("digits", "kwargs", "message"),
    [
        ("12x", {}, "^not a DTMF digit: 'x'$"),
        ("1", {"duration_ms": 0}, "^DTMF duration out of range: 0 ms$"),
        ("1", {"duration_ms": 9000}, "^DTMF duration out of range: 9000 ms$"),
        ("1", {"volume": 64}, "^DTMF volume out of range: 64$"),
    ],
)
def test_sender_rejects(digits: str, kwargs: dict[str, int], message: str) -> None:
    sender = DtmfSender()
    with pytest.raises(ConfigError, match=message):
        sender.send(digits, **kwargs)
    assert not sender.busy


def test_detector_reports_unfinished_event_when_audio_resumes() -> None:
    detector = DtmfDetector()
    assert detector.receive(_event_packet(9, 1000, 320)) is None
    audio_during = RtpPacket(0, 5, 1000 + 320 + 320, 0x1234, b"")
    assert detector.audio_received(audio_during) is None
    other_source = RtpPacket(0, 6, 5000, 0x9999, b"")
    assert detector.audio_received(other_source) is None
    audio_after = RtpPacket(0, 7, 1000 + 320 + 321, 0x1234, b"")
    assert detector.audio_received(audio_after) == DtmfDigit("9", 40)
    assert detector.audio_received(audio_after) is None
    assert detector.receive(_event_packet(9, 1000, 480, end=True)) is None

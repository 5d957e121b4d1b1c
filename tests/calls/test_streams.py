"""MediaStream with real wires and a recording stand-in for its target (unit test)."""

from __future__ import annotations

import uuid

import pytest

from callstream.calls.streams import CLOSE_INVALID_DATA, CLOSE_NORMAL, MediaStream
from callstream.media.frame import FRAME_BYTES
from callstream.media.sources import AudioSource
from callstream.wire import WIRES
from tests.audio_analysis import sine


class RecordingTarget:
    def __init__(self) -> None:
        self.taps: list[object] = []
        self.sources: list[AudioSource] = []

    def attach(self, tap: object, source: AudioSource) -> None:
        self.taps.append(tap)
        self.sources.append(source)

    def detach(self, tap: object, source: AudioSource) -> None:
        self.taps.remove(tap)
        self.sources.remove(source)


class Harness:
    def __init__(self, encapsulation: str, **options: str) -> None:
        self.sent: list[bytes | str] = []
        self.closed: list[tuple[int, str]] = []
        self.changes: list[str] = []
        self.target = RecordingTarget()
        wire = WIRES[encapsulation](stream_id=uuid.uuid4(), options=options)
        self.stream = MediaStream(
            account_id="a1",
            wire=wire,
            target=self.target,
            send=self.sent.append,
            close=lambda code, reason: self.closed.append((code, reason)),
            call_id="c1",
            encapsulation=encapsulation,
            format=options.get("format"),
            max_buffer_s=1.0,
            on_change=lambda stream: self.changes.append(stream.status),
        )


async def test_start_sends_the_opening_and_attaches() -> None:
    h = Harness("audiosocket")
    h.stream.start()
    assert h.sent == [b"\x01\x00\x10" + h.stream.id.bytes]
    assert h.target.taps == [h.stream.on_frame] and h.target.sources == [h.stream.playout]
    assert h.changes == ["streaming"] and h.stream.tm_start is not None


async def test_frames_to_the_client_are_sent_at_once_and_counted() -> None:
    h = Harness("sln", format="ulaw")
    h.stream.start()
    h.stream.on_frame(sine(440, 0.02))
    h.stream.on_frame(sine(440, 0.02))
    assert [len(m) for m in h.sent] == [160, 160]
    assert (h.stream.counters.frames_sent, h.stream.counters.bytes_sent) == (2, 320)


async def test_client_audio_is_paced_through_the_playout_buffer() -> None:
    h = Harness("sln")
    h.stream.start()
    burst = sine(600, 0.1)  # 5 frames in one message
    h.stream.receive(burst, now=0.0)
    (source,) = h.target.sources
    frames = [source.read_frame() for _ in range(6)]
    assert frames[:5] == [burst[i * FRAME_BYTES : (i + 1) * FRAME_BYTES] for i in range(5)]
    assert frames[5] is None
    assert h.stream.counters.bytes_received == len(burst)


async def test_overflow_is_counted_in_the_record() -> None:
    h = Harness("sln")
    h.stream.start()
    h.stream.receive(bytes(FRAME_BYTES * 60), now=0.0)  # 1.2 s into a 1 s buffer
    assert h.stream.record().frames_dropped_overflow == 10


async def test_malformed_input_is_dropped_counted_and_the_stream_kept() -> None:
    h = Harness("sln")
    h.stream.start()
    h.stream.receive(b"\x00" * 321, now=0.0)
    h.stream.receive("text", now=0.5)
    h.stream.receive(bytes(FRAME_BYTES), now=1.0)  # good audio resets the garbage clock
    h.stream.receive(b"\x00", now=2.5)
    assert h.closed == []
    assert h.stream.counters.frames_dropped_malformed == 3
    assert len(h.stream.playout) == 1  # only the good frame


async def test_only_garbage_for_two_seconds_closes_with_1007_naming_the_fault() -> None:
    h = Harness("rtp")
    h.stream.start()
    bad_version = b"\x40" + bytes(171)
    h.stream.receive(bad_version, now=10.0)
    h.stream.receive(bad_version, now=11.0)
    assert h.closed == []
    h.stream.receive(bad_version, now=12.0)
    assert h.closed == [
        (CLOSE_INVALID_DATA, "only malformed input for 2 s: RTP version 1 is not supported")
    ]
    assert h.target.taps == [] and h.stream.status == "ended"


async def test_audiosocket_hangup_from_the_client_ends_the_stream() -> None:
    h = Harness("audiosocket")
    h.stream.start()
    h.stream.receive(b"\x10\x00\x02\x01\x00" + b"\x00\x00\x00", now=0.0)
    assert h.closed == [(CLOSE_NORMAL, "the client ended the stream")]
    assert h.stream.playout.frames_in >= 1  # the audio before the hangup was kept


async def test_call_end_says_goodbye_before_closing() -> None:
    h = Harness("audiosocket")
    h.stream.start()
    h.sent.clear()
    h.stream.end(CLOSE_NORMAL, "the call has ended", say_goodbye=True)
    h.stream.end(CLOSE_NORMAL, "again")  # idempotent
    assert h.sent == [b"\x00\x00\x00"]
    assert h.closed == [(CLOSE_NORMAL, "the call has ended")]
    record = h.stream.record()
    assert (record.status, record.close_code, record.close_reason) == (
        "ended",
        1000,
        "the call has ended",
    )


async def test_client_close_detaches_without_closing_again() -> None:
    h = Harness("rtp")
    h.stream.start()
    h.stream.closed_by_peer(1000, "")
    assert h.closed == [] and h.target.taps == []
    assert h.stream.record().close_reason == "closed by the client"


async def test_dtmf_reaches_wires_that_carry_it() -> None:
    h = Harness("audiosocket")
    h.stream.start()
    h.stream.on_dtmf("5")
    assert h.sent[-1] == b"\x03\x00\x015"
    r = Harness("rtp")
    r.stream.start()
    r.stream.on_dtmf("5")
    assert r.sent == []


async def test_failed_dial_is_recorded() -> None:
    h = Harness("audiosocket")
    h.stream.fail("could not connect to ws://127.0.0.1:9 after 3 tries (ConnectionRefusedError)")
    record = h.stream.record()
    assert record.status == "failed" and record.error is not None and "3 tries" in record.error
    assert h.closed == []


@pytest.mark.parametrize("encapsulation", ["rtp", "sln", "audiosocket"])
async def test_record_names_the_stream(encapsulation: str) -> None:
    h = Harness(encapsulation)
    record = h.stream.record()
    assert (record.id, record.call_id, record.encapsulation, record.direction) == (
        str(h.stream.id),
        "c1",
        encapsulation,
        "inbound",
    )


async def test_a_message_never_finished_is_counted_when_the_stream_ends() -> None:
    h = Harness("audiosocket")
    h.stream.start()
    h.stream.receive(b"\x10\x01\x40" + bytes(100), now=0.0)  # 100 of 320 bytes
    assert h.stream.counters.frames_dropped_malformed == 0
    h.stream.closed_by_peer(1000, "")
    assert h.stream.counters.frames_dropped_malformed == 1
    assert h.stream.finished.done()

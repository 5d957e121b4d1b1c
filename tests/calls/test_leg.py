"""The Leg with a recording stand-in for its socket (unit test of one module)."""

from __future__ import annotations

import asyncio

import pytest

from callstream.calls.leg import Leg
from callstream.codecs.g711 import alaw_encode, ulaw_decode, ulaw_encode
from callstream.media.clock import MediaClock
from callstream.media.frame import FRAME_BYTES
from callstream.media.sources import PcmPlayer
from callstream.rtp.packet import RtpPacket
from callstream.sip.sdp import NegotiatedMedia
from tests.audio_analysis import sine

PEER = ("127.0.0.1", 40000)


class RecordingSocket:
    port = 20000

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.receiver = None
        self.closed = False

    def set_receiver(self, callback) -> None:  # type: ignore[no-untyped-def]
        self.receiver = callback

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        self.closed = True


def media(pt: int = 0, direction: str = "sendrecv", port: int = 40000) -> NegotiatedMedia:
    return NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=port,
        payload_type=pt,
        telephone_event_pt=101,
        direction=direction,
        ptime_ms=20,
    )


def make_leg(
    timeouts: list[int] | None = None, dtmf: list[str] | None = None
) -> tuple[Leg, RecordingSocket]:
    socket = RecordingSocket()
    leg = Leg(
        socket,  # type: ignore[arg-type]
        on_dtmf=lambda digit, ms: (dtmf if dtmf is not None else []).append(digit),
        on_rtp_timeout=lambda: (timeouts if timeouts is not None else []).append(1),
        rtp_timeout=1.0,
        now=asyncio.get_running_loop().time(),
    )
    leg.apply_media(media(), asyncio.get_running_loop().time())
    return leg, socket


def rtp(seq: int, payload: bytes, pt: int = 0, ssrc: int = 1234) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence_number=seq, timestamp=seq * 160, ssrc=ssrc, payload=payload
    ).serialize()


async def test_heard_audio_reaches_every_tap_at_once() -> None:
    leg, _ = make_leg()
    heard: list[bytes] = []
    leg.add_tap(heard.append)
    tone = sine(1000, 0.04)
    for n in range(2):
        payload = ulaw_encode(tone[n * FRAME_BYTES : (n + 1) * FRAME_BYTES])
        leg.on_rtp(rtp(n, payload), PEER)
        assert len(heard) == n + 1  # delivered on arrival, not on the next tick
    assert heard[0] == ulaw_decode(ulaw_encode(tone[:FRAME_BYTES]))


async def test_pcma_is_decoded_by_packet_type_and_odd_sizes_are_reframed() -> None:
    leg, _ = make_leg()
    heard: list[bytes] = []
    leg.add_tap(heard.append)
    tone = sine(500, 0.06)
    leg.on_rtp(rtp(0, alaw_encode(tone[:240]), pt=8), PEER)  # 15 ms
    assert heard == []
    leg.on_rtp(rtp(1, alaw_encode(tone[240:720]), pt=8), PEER)  # 30 ms
    assert [len(f) for f in heard] == [FRAME_BYTES, FRAME_BYTES]


async def test_symmetric_rtp_latches_onto_the_source_address() -> None:
    leg, socket = make_leg()
    leg.start_sending()
    leg.on_tick(asyncio.get_running_loop().time())
    assert socket.sent[-1][1] == PEER  # from the SDP at first
    leg.on_rtp(rtp(0, bytes(160)), ("127.0.0.1", 41234))
    leg.on_tick(asyncio.get_running_loop().time())
    assert socket.sent[-1][1] == ("127.0.0.1", 41234)
    # a later re-INVITE does not undo the latch
    leg.apply_media(media(port=40002), asyncio.get_running_loop().time())
    leg.on_tick(asyncio.get_running_loop().time())
    assert socket.sent[-1][1] == ("127.0.0.1", 41234)


async def test_played_audio_is_sent_one_packet_per_tick_then_silence() -> None:
    leg, socket = make_leg()
    leg.start_sending()
    tone = sine(800, 0.06)
    done = leg.play(PcmPlayer(tone))
    now = asyncio.get_running_loop().time()
    for _ in range(4):
        leg.on_tick(now)
    await asyncio.sleep(0)
    assert done.done()
    packets = [RtpPacket.parse(data) for data, _ in socket.sent]
    assert [p.sequence_number - packets[0].sequence_number for p in packets] == [0, 1, 2, 3]
    assert [p.timestamp - packets[0].timestamp for p in packets] == [0, 160, 320, 480]
    assert packets[0].marker and not packets[1].marker
    assert ulaw_decode(packets[1].payload) == ulaw_decode(ulaw_encode(tone[320:640]))
    assert packets[3].payload == ulaw_encode(bytes(FRAME_BYTES))  # comfort silence


async def test_nothing_is_sent_before_answer_or_while_held() -> None:
    leg, socket = make_leg()
    now = asyncio.get_running_loop().time()
    leg.on_tick(now)
    assert socket.sent == []
    leg.start_sending()
    leg.apply_media(media(direction="sendonly"), now)
    leg.on_tick(now)
    assert socket.sent == [] and leg.held
    leg.apply_media(media(direction="sendrecv"), now)
    leg.on_tick(now)
    assert len(socket.sent) == 1


async def test_malformed_packets_are_counted_and_never_heard() -> None:
    leg, _ = make_leg()
    heard: list[bytes] = []
    leg.add_tap(heard.append)
    leg.on_rtp(b"\x00\x01junk", PEER)
    leg.on_rtp(b"", PEER)
    assert heard == [] and leg.malformed_packets == 2


async def test_rtp_timeout_fires_once() -> None:
    timeouts: list[int] = []
    leg, _ = make_leg(timeouts=timeouts)
    now = asyncio.get_running_loop().time()
    leg.on_tick(now + 0.5)
    assert timeouts == []
    leg.on_tick(now + 1.5)
    leg.on_tick(now + 2.5)
    assert timeouts == [1]


async def test_close_releases_the_socket_and_finishes_sources() -> None:
    leg, socket = make_leg()
    done = leg.play(PcmPlayer(bytes(FRAME_BYTES * 10)))
    leg.close()
    assert socket.closed and done.done()


@pytest.mark.parametrize("digit", ["5"])
async def test_rfc4733_digit_reported_once(digit: str) -> None:
    digits: list[str] = []
    leg, _ = make_leg(dtmf=digits)
    event = bytes([5, 0x0A, 0x00, 0xA0])  # event 5, volume 10, duration 160
    end = bytes([5, 0x8A, 0x03, 0x20])  # end bit, duration 800
    leg.on_rtp(RtpPacket(101, 10, 8000, 1, event, marker=True).serialize(), PEER)
    for seq in (11, 12, 13):
        leg.on_rtp(RtpPacket(101, seq, 8000, 1, end).serialize(), PEER)
    assert digits == [digit]


async def test_said_taps_get_each_frame_sent_silence_included() -> None:
    leg, socket = make_leg()
    leg.start_sending()
    said: list[bytes] = []
    leg.add_said_tap(said.append)
    tone = sine(700, 0.02)
    leg.play(PcmPlayer(tone))
    now = asyncio.get_running_loop().time()
    leg.on_tick(now)
    leg.on_tick(now)
    assert said == [tone, bytes(FRAME_BYTES)] and len(socket.sent) == 2
    leg.remove_said_tap(said.append)
    leg.on_tick(now)
    assert len(said) == 2


async def test_skipped_ticks_drop_playout_frames_and_move_the_rtp_clock() -> None:
    from callstream.media.playout import PlayoutBuffer

    leg, socket = make_leg()
    leg.start_sending()
    playout = PlayoutBuffer()
    frames = [bytes([0x10 + n]) * FRAME_BYTES for n in range(6)]
    playout.push(b"".join(frames))
    leg.play(playout)
    leg.play(PcmPlayer(bytes(FRAME_BYTES * 3)))  # no skip(): left as it is
    now = asyncio.get_running_loop().time()
    leg.on_tick(now)
    leg.on_ticks_skipped(4)
    leg.on_tick(now)
    first, second = (RtpPacket.parse(data) for data, _ in socket.sent)
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 5 * 160) & 0xFFFFFFFF
    assert ulaw_decode(second.payload) == ulaw_decode(ulaw_encode(frames[5]))
    assert (playout.skipped_frames, playout.dropped_frames) == (4, 4)


async def test_a_real_time_stream_moves_the_legs_tick_to_its_phase() -> None:
    """A client frame arriving 2 ms after the leg's tick, one frame standing: the stream's
    playout moves the leg's tick on the media clock instead of dropping frames."""
    from callstream.media.playout import PlayoutBuffer
    from tests.media.test_clock import FakeLoop, run_next

    fake_loop = FakeLoop()
    clock = MediaClock(fake_loop, period=0.02)  # type: ignore[arg-type]
    socket = RecordingSocket()
    leg = Leg(
        socket,  # type: ignore[arg-type]
        on_dtmf=lambda digit, ms: None,
        on_rtp_timeout=lambda: None,
        rtp_timeout=3600.0,
        now=fake_loop.now,
        clock=clock,
    )
    leg.apply_media(media(), fake_loop.now)
    leg.start_sending()
    clock.add(leg)
    clock.start()
    playout = PlayoutBuffer(trim_window_ticks=50, clock=fake_loop.time)
    leg.play(playout)
    playout.push(bytes(2 * FRAME_BYTES))  # one frame standing behind the first
    next_push, pushed = fake_loop.now + 0.022, 0  # 2 ms after the first tick
    while len(socket.sent) < 200:
        if next_push < fake_loop.pending[0][0]:
            fake_loop.now = next_push
            playout.push(bytes(FRAME_BYTES))
            pushed += 1
            next_push += 0.02
        else:
            run_next(fake_loop)
    assert clock.slot_of(leg) == 20 - 34 % 20 and playout.phase_advanced_s == pytest.approx(0.034)
    assert playout.dropped_frames == 0 and playout.frames_out == 2 + pushed - playout.queued_frames
    leg.stop(playout)
    assert playout.jitter_allowance_s == pytest.approx(0.015)  # unbound: trims again


async def test_a_conference_leg_follows_its_mixers_slot_and_its_stream_moves_nothing() -> None:
    from tests.media.test_clock import FakeLoop, Mover, run_next

    fake_loop = FakeLoop()
    clock = MediaClock(fake_loop, period=0.02)  # type: ignore[arg-type]
    leg = Leg(
        RecordingSocket(),  # type: ignore[arg-type]
        on_dtmf=lambda digit, ms: None,
        on_rtp_timeout=lambda: None,
        rtp_timeout=3600.0,
        now=fake_loop.now,
        clock=clock,
    )
    mixer = Mover(clock, at=1, seconds=0.005)  # stands for a mixer that moves once
    clock.add(mixer, early=True)
    clock.add(leg)
    leg.follow_tick_of(mixer)
    clock.start()
    run_next(fake_loop)  # slot 0: the mixer moves 5 ms earlier, the leg follows it
    assert clock.slot_of(mixer) == clock.slot_of(leg) == 15
    clock._ticking = leg  # as during the leg's own tick, where its stream asks to move
    assert leg._advance_tick(0.010) == 0.0  # a stream of its own cannot pull it away
    leg.follow_tick_of(None)
    assert leg._advance_tick(0.010) == pytest.approx(0.010)

"""The Bridge with a stand-in leg (taps and sources, as Leg has them), then with real Legs."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import numpy as np
import pytest

from callstream.calls.leg import Leg
from callstream.codecs.g711 import ulaw_decode, ulaw_encode
from callstream.media.bridge import BRIDGE_QUEUE_FRAMES, Bridge
from callstream.media.frame import FRAME_BYTES
from callstream.media.mixer import mix
from callstream.media.sources import AudioSource, PcmPlayer
from callstream.rtp.packet import RtpPacket
from callstream.sip.sdp import NegotiatedMedia
from tests.audio_analysis import sine


class FakeLeg:
    """What a bridge or a conference sees of a Leg: ``hear`` runs the taps as an RTP
    packet would, ``say`` reads the sources once and mixes them as a clock tick would."""

    def __init__(self) -> None:
        self.taps: list[Callable[[bytes], None]] = []
        self.sources: list[AudioSource] = []

    def add_tap(self, tap: Callable[[bytes], None]) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Callable[[bytes], None]) -> None:
        if tap in self.taps:
            self.taps.remove(tap)

    def play(self, source: AudioSource) -> None:
        self.sources.append(source)

    def stop(self, source: AudioSource) -> None:
        if source in self.sources:
            self.sources.remove(source)

    def hear(self, frame: bytes) -> None:
        for tap in list(self.taps):
            tap(frame)

    def say(self) -> bytes | None:
        frames = [f for f in (s.read_frame() for s in self.sources) if f is not None]
        return mix(frames) if frames else None


def const(value: int) -> bytes:
    """A frame whose every sample is ``value``."""
    return struct.pack("<h", value) * (FRAME_BYTES // 2)


def values(frame: bytes | None) -> set[int]:
    assert frame is not None
    return {int(v) for v in np.frombuffer(frame, dtype="<i2")}


def test_each_leg_hears_the_other_and_not_itself() -> None:
    a, b = FakeLeg(), FakeLeg()
    Bridge(a, b)
    voice_a, voice_b = const(1000), const(-250)
    a.hear(voice_a)
    b.hear(voice_b)
    assert b.say() is voice_a  # the frame itself: nothing copied on the way
    assert a.say() is voice_b
    assert a.say() is None and b.say() is None  # each frame is said once


def test_a_leg_keeps_its_other_sources_mixed_with_the_bridge() -> None:
    a, b = FakeLeg(), FakeLeg()
    a.play(PcmPlayer(const(100) * 2))
    Bridge(a, b)
    b.hear(const(20))
    assert values(a.say()) == {120}  # the prompt plus B's voice
    assert values(a.say()) == {100}  # the prompt alone
    assert b.say() is None


def test_queues_are_bounded_and_drop_the_oldest() -> None:
    a, b = FakeLeg(), FakeLeg()
    bridge = Bridge(a, b)
    for value in range(1, 6):
        a.hear(const(value))
    assert bridge.dropped_frames == 5 - BRIDGE_QUEUE_FRAMES == 2
    assert [values(b.say()) for _ in range(3)] == [{3}, {4}, {5}]
    assert b.say() is None


def test_close_detaches_both_directions_and_keeps_the_rest() -> None:
    a, b = FakeLeg(), FakeLeg()
    own_tap: list[bytes] = []
    a.add_tap(own_tap.append)
    prompt = PcmPlayer(const(7) * 3)
    b.play(prompt)
    bridge = Bridge(a, b)
    assert len(a.taps) == 2 and len(b.sources) == 2
    a.hear(const(500))  # queued for B, never said: close drops it
    bridge.close()
    assert not bridge.is_open
    assert a.taps == [own_tap.append] and b.taps == []
    assert a.sources == [] and b.sources == [prompt]
    a.hear(const(1))
    b.hear(const(2))
    assert values(b.say()) == {7}
    assert a.say() is None
    assert len(own_tap) == 2
    bridge.close()  # idempotent
    assert a.taps == [own_tap.append] and b.sources == [prompt]


def test_rejects_a_leg_bridged_to_itself_and_an_empty_queue() -> None:
    a = FakeLeg()
    with pytest.raises(ValueError, match="^a leg cannot be bridged to itself$"):
        Bridge(a, a)
    with pytest.raises(ValueError, match="^max_frames must be at least 1$"):
        Bridge(a, FakeLeg(), max_frames=0)
    assert a.taps == [] and a.sources == []


class RecordingSocket:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[bytes] = []

    def set_receiver(self, callback: object) -> None:
        pass

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


def real_leg(port: int) -> tuple[Leg, RecordingSocket]:
    socket = RecordingSocket(port)
    now = asyncio.get_running_loop().time()
    leg = Leg(
        socket,  # type: ignore[arg-type]
        on_dtmf=lambda digit, ms: None,
        on_rtp_timeout=lambda: None,
        rtp_timeout=10.0,
        now=now,
    )
    media = NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=port + 1000,
        payload_type=0,
        telephone_event_pt=101,
        direction="sendrecv",
        ptime_ms=20,
    )
    leg.apply_media(media, now)
    leg.start_sending()
    return leg, socket


async def test_real_legs_send_what_the_other_heard_over_rtp() -> None:
    leg_a, socket_a = real_leg(20000)
    leg_b, socket_b = real_leg(20002)
    bridge = Bridge(leg_a, leg_b)
    tone = sine(700, 0.02)
    packet = RtpPacket(
        payload_type=0, sequence_number=1, timestamp=160, ssrc=99, payload=ulaw_encode(tone)
    )
    leg_a.on_rtp(packet.serialize(), ("127.0.0.1", 21000))
    now = asyncio.get_running_loop().time()
    leg_a.on_tick(now)
    leg_b.on_tick(now)
    said_by_b = RtpPacket.parse(socket_b.sent[-1]).payload
    assert said_by_b == ulaw_encode(ulaw_decode(ulaw_encode(tone)))
    said_by_a = RtpPacket.parse(socket_a.sent[-1]).payload
    assert said_by_a == ulaw_encode(bytes(FRAME_BYTES))  # A's peer is not echoed
    bridge.close()
    leg_a.on_rtp(
        RtpPacket(
            payload_type=0, sequence_number=2, timestamp=320, ssrc=99, payload=ulaw_encode(tone)
        ).serialize(),
        ("127.0.0.1", 21000),
    )
    leg_b.on_tick(now)
    assert RtpPacket.parse(socket_b.sent[-1]).payload == ulaw_encode(bytes(FRAME_BYTES))

"""Issue 3's acceptance test: conferences and bridges over real loopback SIP and RTP.

A gateway ``Engine`` answers every call and puts its leg into one ``ConferenceMixer``
(or pairs calls with a ``Bridge``) on the engine's own media clock; a softphone
``Engine`` places the calls, each playing its own tone, and records what each hears.
Audio is checked by decoding it: every participant must hear every other tone and not
its own. Tones are multiples of 100 Hz, so each 20 ms frame holds whole cycles (a
dropped frame makes no phase jump) and Goertzel tells them apart by far.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callstream.calls.call import Call
from callstream.calls.engine import CallRunner, Engine, EngineSettings, IncomingCallRouter
from callstream.media.bridge import Bridge
from callstream.media.conference import ConferenceMixer
from callstream.media.frame import FRAME_BYTES
from callstream.media.sources import ToneSource
from callstream.sip.message import SipRequest
from tests.audio_analysis import goertzel_power

pytestmark = pytest.mark.timeout(30)

AMPLITUDE = 0.08
"""Nine of these summed stay below full scale, so nobody's mix clips."""
TONE_POWER = AMPLITUDE**2 / 2
"""What ``goertzel_power`` gives for one clean tone of AMPLITUDE."""
TONE_MS = 1400
ANALYSED_FRAMES = slice(15, 55)
"""0.3 s to 1.1 s after the tones start: every tone has crossed the gateway both ways."""


class ConferenceRouter(IncomingCallRouter):
    """Answers every call and joins it to one conference until the call ends."""

    def __init__(self) -> None:
        self.mixer = ConferenceMixer()
        self.calls: list[Call] = []
        self.empty = asyncio.Event()

    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        return self.join

    async def join(self, call: Call) -> None:
        await call.answer()
        assert call.leg is not None
        self.calls.append(call)
        self.mixer.add(call.id, call.leg)
        try:
            await asyncio.shield(call.ended)
        finally:
            self.mixer.remove(call.id)
            if len(self.mixer) == 0:
                self.empty.set()


class BridgeRouter(IncomingCallRouter):
    """Answers every call; the second call is bridged to the first until either ends."""

    def __init__(self) -> None:
        self.waiting: Call | None = None
        self.bridges: list[Bridge] = []
        self.bridged = asyncio.Event()

    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        return self.connect

    async def connect(self, call: Call) -> None:
        await call.answer()
        first, self.waiting = self.waiting, (call if self.waiting is None else None)
        if first is None:
            await asyncio.shield(call.ended)
            return
        assert first.leg is not None and call.leg is not None
        bridge = Bridge(first.leg, call.leg)
        self.bridges.append(bridge)
        self.bridged.set()
        try:
            await asyncio.wait({first.ended, call.ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            bridge.close()
        # Like the connect action: when one party leaves, the other is hung up.
        await first.hangup()
        await call.hangup()


class NoIncoming(IncomingCallRouter):
    pass


async def started(engine: Engine) -> Engine:
    await engine.start()
    return engine


@pytest.fixture
async def phone() -> AsyncIterator[Engine]:
    settings = EngineSettings(sip_port=0, rtp_first=33500, rtp_last=33539, rtp_timeout=30.0)
    engine = await started(Engine(settings, NoIncoming()))
    yield engine
    await engine.stop()


def gateway_engine(router: IncomingCallRouter) -> Engine:
    settings = EngineSettings(sip_port=0, rtp_first=33400, rtp_last=33439, rtp_timeout=30.0)
    return Engine(settings, router)


async def call_everyone(phone: Engine, gateway: Engine, count: int) -> list[Call]:
    uri = f"sip:room@127.0.0.1:{gateway.transport.local_port}"
    calls = [await phone.place_call(uri, from_uri=f"sip:party{n}@127.0.0.1") for n in range(count)]
    await asyncio.wait_for(asyncio.gather(*(asyncio.shield(c.answered) for c in calls)), 5)
    return calls


async def play_tones_and_record(calls: list[Call], tones_hz: list[int]) -> list[bytes]:
    """Start every call's tone on the same tick; return what each heard meanwhile."""
    heard: list[list[bytes]] = [[] for _ in calls]
    playing = []
    for call, frequency, frames in zip(calls, tones_hz, heard, strict=True):
        assert call.leg is not None
        call.leg.add_tap(frames.append)
        playing.append(call.leg.play(ToneSource(frequency, TONE_MS, AMPLITUDE)))
    await asyncio.wait_for(asyncio.gather(*playing), 10)
    for call, frames in zip(calls, heard, strict=True):
        assert call.leg is not None
        call.leg.remove_tap(frames.append)
        assert len(frames) >= ANALYSED_FRAMES.stop
        assert all(len(frame) == FRAME_BYTES for frame in frames)
    return [b"".join(frames[ANALYSED_FRAMES]) for frames in heard]


def assert_hears_others_not_self(pcm: bytes, own_hz: int, others_hz: list[int]) -> None:
    others = {hz: goertzel_power(pcm, hz) for hz in others_hz}
    own = goertzel_power(pcm, own_hz)
    quietest = min(others.values())
    assert quietest > TONE_POWER / 2, f"{own_hz} Hz party: weak others {others}"
    assert own < quietest / 100, f"{own_hz} Hz party hears itself: {own} vs {quietest}"


async def test_ten_party_conference_each_hears_the_nine_others(phone: Engine) -> None:
    router = ConferenceRouter()
    gateway = await started(gateway_engine(router))
    try:
        assert gateway.clock is not None
        gateway.clock.add(router.mixer)
        tones_hz = [300 + 100 * n for n in range(10)]
        calls = await call_everyone(phone, gateway, len(tones_hz))
        assert len(router.mixer) == 10
        heard = await play_tones_and_record(calls, tones_hz)
        for pcm, own_hz in zip(heard, tones_hz, strict=True):
            assert_hears_others_not_self(pcm, own_hz, [hz for hz in tones_hz if hz != own_hz])
        assert router.mixer.ticks_mixed > ANALYSED_FRAMES.stop
        for call in calls:
            await call.hangup()
        await asyncio.wait_for(router.empty.wait(), 5)
        assert len(router.mixer) == 0 and gateway.calls == {}
        assert gateway.ports.in_use == 0
    finally:
        router.mixer.close()
        if gateway.clock is not None:
            gateway.clock.discard(router.mixer)
        await gateway.stop()


async def test_two_calls_bridged_each_hear_the_other(phone: Engine) -> None:
    router = BridgeRouter()
    gateway = await started(gateway_engine(router))
    try:
        calls = await call_everyone(phone, gateway, 2)
        # The second call's flow makes the bridge just after it answers.
        await asyncio.wait_for(router.bridged.wait(), 5)
        assert len(router.bridges) == 1
        tones_hz = [500, 1100]
        heard = await play_tones_and_record(calls, tones_hz)
        assert_hears_others_not_self(heard[0], 500, [1100])
        assert_hears_others_not_self(heard[1], 1100, [500])
        await calls[0].hangup()
        await asyncio.wait_for(asyncio.shield(calls[1].ended), 5)  # hung up by the gateway
        assert calls[1].hangup_by == "remote"
        assert not router.bridges[0].is_open
    finally:
        await gateway.stop()

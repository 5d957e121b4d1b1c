"""``callstream dial`` and ``callstream answer``: a softphone on the same engine as the
gateway, for trying it without another phone (and for the tests).

It plays a WAV into the call, records what it hears to a WAV in real time (silence where
nothing arrived), sends DTMF as RFC 4733 events, and hangs up after ``--duration`` or
when the played file ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callstream.calls.call import Call, CallEnded
from callstream.calls.engine import CallRunner, Engine, EngineSettings, IncomingCallRouter
from callstream.codecs.wav import WavWriter, read_wav
from callstream.media.clock import MediaClock, freeze_startup_heap
from callstream.media.frame import SILENCE
from callstream.media.sources import PcmPlayer
from callstream.sip.auth import DigestCredentials
from callstream.sip.message import SipRequest

logger = logging.getLogger("callstream.softphone")

DTMF_DELAY_S = 0.5
TAIL_S = 0.5
"""After the played file ends, keep listening this long before hanging up (echo tail)."""
RECORDER_SLACK_FRAMES = 5
"""The recorder pads silence only when it falls this many frames (100 ms) behind real time:
less than that is jitter between two clocks, more is audio that did not arrive."""


@dataclass(frozen=True)
class SessionOptions:
    play: Path | None = None
    record: Path | None = None
    duration_s: float | None = None
    dtmf: str | None = None


class Recorder:
    """Writes what a leg hears to a WAV at real-time pace, padding gaps with silence.

    Real time starts with the first heard frame, so the round trip before it is not
    counted as a gap.
    """

    def __init__(self, path: Path, clock: MediaClock) -> None:
        self._writer = WavWriter(path)
        self._clock = clock
        self._queue: list[bytes] = []
        self._ticks = 0
        self._written = 0
        self.closed = False

    def tap(self, frame: bytes) -> None:
        self._queue.append(frame)

    def on_tick(self, now: float) -> None:
        if self._ticks == 0 and not self._queue:
            return
        self._ticks += 1
        for frame in self._queue:
            self._writer.write(frame)
        self._written += len(self._queue)
        self._queue.clear()
        while self._written < self._ticks - RECORDER_SLACK_FRAMES:
            self._writer.write(SILENCE)
            self._written += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._clock.discard(self)
            for frame in self._queue:
                self._writer.write(frame)
            self._writer.close()


async def run_session(engine: Engine, call: Call, options: SessionOptions) -> None:
    """Play, record and send DTMF on an answered call, then hang up."""
    leg = call.leg
    assert leg is not None and engine.clock is not None
    recorder = None
    if options.record is not None:
        recorder = Recorder(options.record, engine.clock)
        leg.add_tap(recorder.tap)
        engine.clock.add(recorder)
    try:
        played = None
        if options.play is not None:
            pcm = await asyncio.to_thread(read_wav, options.play)
            played = leg.play(PcmPlayer(pcm))
        if options.dtmf:
            await call.until_ended(asyncio.sleep(DTMF_DELAY_S))
            engine.send_dtmf(call, options.dtmf)
        if options.duration_s is not None:
            await call.until_ended(asyncio.sleep(options.duration_s))
        elif played is not None:
            await call.until_ended(played)
            await call.until_ended(asyncio.sleep(TAIL_S))
        else:
            await call.ended
    except CallEnded:
        pass
    finally:
        if recorder is not None:
            recorder.close()
        clock = engine.clock
        logger.info(
            "media clock: max_lag_ms=%.0f stalls=%d ticks_skipped=%d",
            clock.max_lag * 1000,
            clock.stalls,
            clock.ticks_skipped,
        )
        await call.hangup("normal")


class _Answerer(IncomingCallRouter):
    def __init__(self, options: SessionOptions, engine_ref: list[Engine], once: bool) -> None:
        self.options = options
        self.engine_ref = engine_ref
        self.once = once
        self.finished = asyncio.Event()
        self.busy = False

    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        if self.once and self.busy:
            return 486
        self.busy = True

        async def runner(call: Call) -> None:
            engine = self.engine_ref[0]
            await call.answer()
            try:
                await run_session(engine, call, self.options)
            finally:
                if self.once:
                    self.finished.set()

        return runner


class _RejectIncoming(IncomingCallRouter):
    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        return 486


def _engine_settings(host: str, port: int, rtp_ports: tuple[int, int]) -> EngineSettings:
    return EngineSettings(
        host=host,
        sip_port=port,
        rtp_first=rtp_ports[0],
        rtp_last=rtp_ports[1],
        rtp_timeout=30.0,
        max_calls=10,
        user_agent="callstream-softphone",
    )


async def dial(
    target: str,
    options: SessionOptions,
    *,
    from_uri: str | None,
    host: str,
    port: int,
    rtp_ports: tuple[int, int],
    credentials: DigestCredentials | None,
    transport: str,
    answer_timeout_s: float,
) -> int:
    """Place one call; returns the process exit code (0: answered and ended normally)."""
    engine = Engine(_engine_settings(host, port, rtp_ports), _RejectIncoming())
    freeze_startup_heap()  # before the media clock starts: the collection takes a while
    await engine.start()
    interrupted = asyncio.Event()
    _on_signals(interrupted)
    try:
        sender = from_uri or f"sip:callstream@{host}:{engine.transport.local_port}"
        call = await engine.place_call(
            target, from_uri=sender, credentials=credentials, transport=transport
        )
        waits: set[asyncio.Future[Any]] = {call.answered, asyncio.ensure_future(interrupted.wait())}
        await asyncio.wait(
            waits,
            timeout=answer_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not call.answered.done():
            await call.hangup("timeout" if not interrupted.is_set() else "interrupted")
            logger.error("call failed: no answer within %g s", answer_timeout_s)
            return 1
        if call.answered.exception() is not None:
            status, reason = call.failure or (0, call.hangup_reason or "failed")
            logger.error("call failed: %d %s", status, reason)
            return 1
        session = asyncio.ensure_future(run_session(engine, call, options))
        await asyncio.wait(
            {session, asyncio.ensure_future(interrupted.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not session.done():
            await call.hangup("interrupted")
            await session
        return 0
    finally:
        await engine.stop()


async def answer(
    options: SessionOptions,
    *,
    host: str,
    port: int,
    rtp_ports: tuple[int, int],
    once: bool,
) -> int:
    """Answer calls on host:port until interrupted (or after the first, with ``once``)."""
    engine_ref: list[Engine] = []
    router = _Answerer(options, engine_ref, once)
    engine = Engine(_engine_settings(host, port, rtp_ports), router)
    engine_ref.append(engine)
    freeze_startup_heap()  # before the media clock starts: the collection takes a while
    await engine.start()
    logger.info("answering on %s:%d", host, engine.transport.local_port)
    interrupted = asyncio.Event()
    _on_signals(interrupted)
    try:
        waits = {asyncio.ensure_future(interrupted.wait())}
        if once:
            waits.add(asyncio.ensure_future(router.finished.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return 0
    finally:
        await engine.stop()


def _on_signals(event: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)

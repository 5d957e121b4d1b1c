"""Flows end to end over loopback: our softphone engine calls a gateway whose route runs
a flow, presses keys as RFC 4733 events, and decodes what it hears."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from callstream.app import Gateway
from callstream.calls.call import Call
from callstream.calls.engine import Engine, EngineSettings, IncomingCallRouter
from callstream.config import Route, Settings
from tests.audio_analysis import rms_dbfs, samples, sine, tone_segments

pytestmark = pytest.mark.timeout(30)

COLLECT = "0b7a1f52-3c1d-4c8e-9a57-1d2f3e4a5b60"
LOW = "5e0c6a11-8d2b-4f3a-b1c4-7e9d0a2b3c41"
HIGH = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
END = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
BEEP = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"

IVR = [
    {"type": "answer"},
    {"id": COLLECT, "type": "digits_receive", "option": {"duration": 10000, "length": 1}},
    {"type": "branch", "option": {"target_ids": {"1": LOW, "2": HIGH}}},
    {"type": "talk", "option": {"text": "Sorry."}, "next_id": COLLECT},
    {"id": LOW, "type": "tone", "option": {"frequency": 500, "duration": 600}, "next_id": END},
    {"id": HIGH, "type": "tone", "option": {"frequency": 1200, "duration": 600}},
    {"id": END, "type": "stop"},
    {"type": "tone", "option": {"frequency": 2000, "duration": 600}},  # never reached
]

LOOP = [
    {"type": "answer"},
    {"id": BEEP, "type": "tone", "option": {"frequency": 800, "duration": 200}},
    {"type": "sleep", "option": {"duration": 200}},
    {"type": "goto", "option": {"target_id": BEEP, "loop_count": 2}},
    {"type": "sleep", "option": {"duration": 200}},
]

TALK = [
    {"type": "answer"},
    {"type": "talk", "option": {"text": "Hello. Your call is important to us."}},
]


class NoIncoming(IncomingCallRouter):
    pass


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    routes = tuple(
        Route.parse(index, {"match": match, "actions": actions})
        for index, (match, actions) in enumerate([("ivr", IVR), ("loop", LOOP), ("talk", TALK)])
    )
    base = Settings(
        sip_port=0,
        http_port=0,
        rtp_ports="30600-30619",  # below the ephemeral range (32768-)
        rtp_timeout=30.0,
        database_url=f"sqlite:///{tmp_path / 'callstream.db'}",
    )
    gw = Gateway(replace(base, routes=routes))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def phone() -> AsyncIterator[Engine]:
    engine = Engine(
        EngineSettings(sip_port=0, rtp_first=33200, rtp_last=33219, rtp_timeout=30.0), NoIncoming()
    )
    await engine.start()
    yield engine
    await engine.stop()


async def call_flow(gateway: Gateway, phone: Engine, user: str) -> tuple[Call, list[bytes]]:
    uri = f"sip:{user}@127.0.0.1:{gateway.engine.transport.local_port}"
    call = await phone.place_call(uri, from_uri="sip:tester@127.0.0.1")
    assert call.leg is not None
    heard: list[bytes] = []
    call.leg.add_tap(heard.append)
    await asyncio.wait_for(asyncio.shield(call.answered), 5)
    return call, heard


def total_ms(spans: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in spans)


@pytest.mark.parametrize(("digit", "frequency", "other"), [("1", 500, 1200), ("2", 1200, 500)])
async def test_ivr_branches_on_the_digit_pressed(
    gateway: Gateway,
    phone: Engine,
    caplog: pytest.LogCaptureFixture,
    digit: str,
    frequency: int,
    other: int,
) -> None:
    caplog.set_level(logging.INFO, logger="callstream.calls")
    call, heard = await call_flow(gateway, phone, "ivr")
    phone.send_dtmf(call, digit)
    await asyncio.wait_for(asyncio.shield(call.ended), 10)
    assert call.hangup_by == "remote"  # stop ended the flow and the gateway hung up
    audio = b"".join(heard)
    assert total_ms(tone_segments(audio, frequency)) >= 400
    assert tone_segments(audio, other) == []
    assert tone_segments(audio, 2000) == []
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"digits variable=voipbin.call.digits value={digit}" in m for m in messages)


async def test_unknown_digit_talks_then_collects_again(
    gateway: Gateway, phone: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callstream.calls")
    call, heard = await call_flow(gateway, phone, "ivr")
    # "1" arrives while "9" is handled (no match: "Sorry.", then collect again); it
    # waits in the call's digit buffer and the second collection takes it.
    phone.send_dtmf(call, "91")
    await asyncio.wait_for(asyncio.shield(call.ended), 10)
    values = [
        r.getMessage().rsplit("value=", 1)[1]
        for r in caplog.records
        if " digits variable=" in r.getMessage()
    ]
    assert values == ["9", "1"]
    assert total_ms(tone_segments(b"".join(heard), 500)) >= 400


async def test_goto_loop_count_plays_the_tone_three_times(gateway: Gateway, phone: Engine) -> None:
    call, heard = await call_flow(gateway, phone, "loop")
    await asyncio.wait_for(asyncio.shield(call.ended), 10)
    spans = tone_segments(b"".join(heard), 800)
    assert len(spans) == 3  # the first pass and two jumps back, silence between them
    assert all(end - start >= 120 for start, end in spans)


def band_share(pcm: bytes, low_hz: float, high_hz: float, rate: int = 8000) -> float:
    """The share of the signal's power between ``low_hz`` and ``high_hz``."""
    spectrum = np.abs(np.fft.rfft(samples(pcm))) ** 2
    frequencies = np.fft.rfftfreq(len(pcm) // 2, 1 / rate)
    in_band = (frequencies >= low_hz) & (frequencies <= high_hz)
    return float(spectrum[in_band].sum() / spectrum.sum())


def loud_windows(pcm: bytes, window_bytes: int = 320, min_dbfs: float = -45.0) -> list[bytes]:
    windows = [pcm[i : i + window_bytes] for i in range(0, len(pcm), window_bytes)]
    return [window for window in windows if rms_dbfs(window) > min_dbfs]


async def test_talk_is_heard_as_speech(gateway: Gateway, phone: Engine) -> None:
    call, heard = await call_flow(gateway, phone, "talk")
    await asyncio.wait_for(asyncio.shield(call.ended), 15)
    speech = loud_windows(b"".join(heard))
    assert len(speech) * 20 >= 800  # most of two short sentences is voiced
    voiced = b"".join(speech)
    assert rms_dbfs(voiced) > -30
    assert band_share(voiced, 200, 3000) > 0.8


def test_band_share_measures_a_band() -> None:
    tone = sine(1000, 0.5)
    assert band_share(tone, 200, 3000) > 0.99
    assert band_share(tone, 2000, 3000) < 0.01

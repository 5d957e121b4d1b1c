"""The engine end to end over real loopback sockets: our softphone engine calls the gateway.

These complement the interop suite (SIPp, baresip): same code paths, no external binaries,
so they run in a second and pin the engine's behaviour. Audio is checked by decoding it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from callstream.app import Gateway
from callstream.calls.call import Call, CallEnded
from callstream.calls.engine import Engine, EngineSettings, IncomingCallRouter
from callstream.config import Route, Settings
from callstream.media.sources import PcmPlayer
from callstream.sip.sdp import build_offer
from tests.audio_analysis import dominant_frequency, rms_dbfs, sine

pytestmark = pytest.mark.timeout(30)


class NoIncoming(IncomingCallRouter):
    pass


_DATABASE_DIR = tempfile.TemporaryDirectory(prefix="callstream-engine-tests-")


def gateway_settings(**changes: object) -> Settings:
    database = Path(_DATABASE_DIR.name) / f"{uuid.uuid4().hex}.db"
    base = Settings(
        sip_port=0,
        http_port=0,
        rtp_ports="31000-31019",
        rtp_timeout=30.0,
        database_url=f"sqlite:///{database}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_settings())
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def phone() -> AsyncIterator[Engine]:
    engine = Engine(
        EngineSettings(sip_port=0, rtp_first=32000, rtp_last=32019, rtp_timeout=30.0), NoIncoming()
    )
    await engine.start()
    yield engine
    await engine.stop()


def target(gw: Gateway, user: str = "echo", transport: str = "udp") -> str:
    uri = f"sip:{user}@127.0.0.1:{gw.engine.transport.local_port}"
    return uri + (";transport=tcp" if transport == "tcp" else "")


async def call_and_record(
    phone: Engine, uri: str, audio: bytes, *, transport: str = "UDP", listen_s: float = 0.4
) -> tuple[Call, bytes]:
    call = await phone.place_call(uri, from_uri="sip:tester@127.0.0.1", transport=transport)
    await asyncio.wait_for(asyncio.shield(call.answered), 5)
    assert call.leg is not None
    heard: list[bytes] = []
    call.leg.add_tap(heard.append)
    await asyncio.wait_for(call.leg.play(PcmPlayer(audio)), 10)
    await asyncio.sleep(listen_s)
    return call, b"".join(heard)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_echo_returns_the_callers_tone(
    gateway: Gateway, phone: Engine, transport: str
) -> None:
    call, heard = await call_and_record(
        phone, target(gateway, transport=transport.lower()), sine(1000, 0.6), transport=transport
    )
    assert call.codec == "PCMU"
    assert call.sip_call_id and call.sip_call_id in {
        c.sip_call_id for c in gateway.engine.calls.values()
    }
    assert bool(gateway.engine.transport.tcp_connections) == (transport == "TCP")
    loud = heard[: len(heard) // 320 * 320]
    assert abs(dominant_frequency(loud) - 1000) < 20
    assert rms_dbfs(loud) > -20
    await call.hangup()
    assert call.hangup_by == "local"
    await asyncio.sleep(0.1)
    assert gateway.engine.calls == {}  # the gateway saw the BYE and freed the call
    assert gateway.engine.ports.in_use == 0


async def test_unrouted_number_fails_with_404(gateway: Gateway, phone: Engine) -> None:
    call = await phone.place_call(target(gateway, "nobody"), from_uri="sip:tester@127.0.0.1")
    with pytest.raises(CallEnded):
        await asyncio.wait_for(asyncio.shield(call.answered), 5)
    assert call.failure is not None and call.failure[0] == 404
    assert call.hangup_reason == "failed"


async def test_rfc4733_digits_reach_the_gateway(
    gateway: Gateway, phone: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callstream.calls")
    call = await phone.place_call(target(gateway), from_uri="sip:tester@127.0.0.1")
    await asyncio.wait_for(asyncio.shield(call.answered), 5)
    phone.send_dtmf(call, "19#")
    await asyncio.sleep(1.0)
    inbound = [r.getMessage() for r in caplog.records if " dtmf " in r.getMessage()]
    gateway_lines = [line for line in inbound if "via=rtp" in line and call.id not in line]
    assert [line.split("digit=")[1][0] for line in gateway_lines] == ["1", "9", "#"]
    await call.hangup()


async def test_hold_and_resume_by_reinvite(
    gateway: Gateway, phone: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callstream.calls")
    call = await phone.place_call(target(gateway), from_uri="sip:tester@127.0.0.1")
    await asyncio.wait_for(asyncio.shield(call.answered), 5)
    assert call.leg is not None
    heard: list[bytes] = []
    call.leg.add_tap(heard.append)

    def reinvite(direction: str) -> None:
        assert call.leg is not None
        offer = build_offer(
            address="127.0.0.1",
            port=call.leg.socket.port,
            session_id=1,
            session_version=2,
            direction=direction,
        )
        phone.agent.reinvite(call.sip_handle, offer.serialize(), phone.now())
        phone.transport.pump()

    reinvite("sendonly")
    await asyncio.sleep(0.3)
    heard.clear()
    await asyncio.sleep(0.3)
    assert heard == []  # the gateway answered recvonly and stopped sending
    reinvite("sendrecv")
    await asyncio.sleep(0.3)
    assert len(heard) >= 5
    lines = [r.getMessage() for r in caplog.records]
    assert any(" hold " in line for line in lines) and any(
        line.endswith(" resume") for line in lines
    )
    await call.hangup()


async def test_early_media_before_answer(phone: Engine) -> None:
    route = Route.parse(
        0,
        {
            "match": "early",
            "actions": [
                {"type": "tone", "option": {"frequency": 600, "duration": 400}},
                {"type": "answer"},
                {"type": "sleep", "option": {"duration": 200}},
            ],
        },
    )
    gw = Gateway(gateway_settings(routes=(route,)))
    await gw.start()
    try:
        call = await phone.place_call(target(gw, "early"), from_uri="sip:tester@127.0.0.1")
        assert call.leg is not None
        heard: list[bytes] = []
        call.leg.add_tap(heard.append)
        await asyncio.wait_for(asyncio.shield(call.answered), 5)
        early = b"".join(heard)
        assert len(early) >= 320 * 10  # most of the 400 ms tone arrived before the 200 OK
        assert abs(dominant_frequency(early) - 600) < 20
        await asyncio.wait_for(asyncio.shield(call.ended), 5)
        assert call.hangup_by == "remote"  # the flow ran out and the gateway hung up
    finally:
        await gw.stop()


async def test_no_free_port_pair_gives_503(phone: Engine) -> None:
    gw = Gateway(gateway_settings(rtp_ports="31100-31101"))
    await gw.start()
    try:
        first = await phone.place_call(target(gw), from_uri="sip:tester@127.0.0.1")
        await asyncio.wait_for(asyncio.shield(first.answered), 5)
        second = await phone.place_call(target(gw), from_uri="sip:tester@127.0.0.1")
        with pytest.raises(CallEnded):
            await asyncio.wait_for(asyncio.shield(second.answered), 5)
        assert second.failure is not None and second.failure[0] == 503
        await first.hangup()
        await asyncio.sleep(0.1)
        third = await phone.place_call(target(gw), from_uri="sip:tester@127.0.0.1")
        await asyncio.wait_for(asyncio.shield(third.answered), 5)  # the pair was freed
        await third.hangup()
    finally:
        await gw.stop()


async def test_silent_peer_is_hung_up_after_rtp_timeout(phone: Engine) -> None:
    gw = Gateway(gateway_settings(rtp_timeout=0.5))
    await gw.start()
    try:
        call = await phone.place_call(target(gw), from_uri="sip:tester@127.0.0.1")
        await asyncio.wait_for(asyncio.shield(call.answered), 5)
        assert call.leg is not None
        call.leg.sending = False  # the peer goes quiet without a BYE
        await asyncio.wait_for(asyncio.shield(call.ended), 5)
        assert (call.hangup_by, call.hangup_reason) == ("remote", "bye")
        assert gw.engine.ports.in_use == 0
    finally:
        await gw.stop()


async def test_shutdown_sends_bye_to_live_calls(phone: Engine) -> None:
    gw = Gateway(gateway_settings())
    await gw.start()
    call = await phone.place_call(target(gw), from_uri="sip:tester@127.0.0.1")
    await asyncio.wait_for(asyncio.shield(call.answered), 5)
    await gw.stop()
    await asyncio.wait_for(asyncio.shield(call.ended), 5)
    assert (call.hangup_by, call.hangup_reason) == ("remote", "bye")

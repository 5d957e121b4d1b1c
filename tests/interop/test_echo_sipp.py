"""SIPp calls the gateway's built-in echo route and hears itself back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop import pcap
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import Capture, Gateway, PortAllocator
from tests.interop.listening import envelope_correlation, heard_on, pcap_audio
from tests.interop.media import G711A_PCAP, decoded_ulaw, rtp_pcap, tone_ul


def test_echo_returns_speech_and_reports_rfc4733_digit(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
) -> None:
    if not G711A_PCAP.exists():
        pytest.skip(f"{G711A_PCAP} missing (Debian package sip-tester)")
    gateway = gateway_factory()
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        result = sipp(
            "uac_pcap_echo", gateway.uri_host, "-s", "echo", timeout=40, media_port=media_port
        )
    assert result.returncode == 0, result.explain()
    heard, _ = heard_on(cap.path, media_port)
    assert rms_dbfs(heard) > -35, "the echo is silent"
    assert envelope_correlation(pcap_audio(G711A_PCAP), heard) > 0.8
    gateway.wait_for_log(r"call \S+ dtmf .*digit=1\b", 5)
    (answered,) = gateway.events("answered")
    assert answered.fields["codec"] == "PCMA"  # the offer's first codec
    gateway.wait_for_log(r"call \S+ ended .*by=remote.*reason=bye", 5)


def call_echo(
    gateway: Gateway,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    scenario: str,
    media_file: Path,
) -> list[pcap.RtpPacket]:
    """Run a SIPp scenario that streams ``media_file`` to the echo route; the RTP packets
    the gateway sent back, as captured on SIPp's media port."""
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        result = sipp(
            scenario, gateway.uri_host, "-s", "echo", timeout=30,
            media_port=media_port, files=[media_file],
        )  # fmt: skip
    assert result.returncode == 0, result.explain()
    return heard_on(cap.path, media_port)[1]


def assert_echo_of_tone(heard: bytes, frequency_hz: int) -> bytes:
    """The loud part of ``heard`` (the gateway sends silence before the echo starts):
    at least 2.5 s of it, at ``frequency_hz``; returned for further checks."""
    loud = b"".join(
        heard[i : i + 320] for i in range(0, len(heard), 320) if rms_dbfs(heard[i : i + 320]) > -30
    )
    assert len(loud) >= 2 * 8000 * 2.5, f"only {len(loud) / 16000:.2f} s of echo heard"
    assert dominant_frequency(loud) == pytest.approx(frequency_hz, abs=20)
    return loud


def test_echo_returns_tone_at_same_pitch_and_level(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    gateway = gateway_factory()
    tone = tone_ul(tmp_path, 1000)
    packets = call_echo(gateway, sipp, ports, capture, "uac_tone_echo", tone)
    loud = assert_echo_of_tone(pcap.rtp_audio(packets), 1000)
    assert rms_dbfs(loud) == pytest.approx(rms_dbfs(decoded_ulaw(tone)), abs=3)
    (answered,) = gateway.events("answered")
    assert answered.fields["codec"] == "PCMU"
    # the call's closing rtp line counts what crossed the port (SIPp sent >= 2.5 s)
    gateway.wait_for_log(r"call \S+ rtp ", 5)
    (rtp,) = gateway.events("rtp")
    assert int(rtp.fields["packets_in"]) >= 125 and int(rtp.fields["packets_out"]) >= 125
    assert rtp.fields["malformed"] == "0" and rtp.fields["duplicate"] == "0"
    health = gateway.health()
    assert health is not None
    for key in (
        "media_clock_max_lag_ms",
        "media_clock_stalls",
        "media_clock_ticks_skipped",
        "media_clock_phase_moves",
        "gc_full_collections",
        "gc_full_max_pause_ms",
        "gc_full_last_pause_ms",
        "conference_frames_trimmed",
    ):
        assert isinstance(health[key], int | float) and health[key] >= 0, health


def test_echo_of_pcmu_offered_under_a_dynamic_payload_type(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    """``m=audio … RTP/AVP 96`` with ``a=rtpmap:96 PCMU/8000``: the gateway answers with
    96, decodes SIPp's PT 96 packets as μ-law and echoes them back with PT 96."""
    gateway = gateway_factory()
    tone_file = tone_ul(tmp_path, 1000)
    tone = rtp_pcap(tmp_path / "tone96.pcap", tone_file.read_bytes(), 96)
    packets = call_echo(gateway, sipp, ports, capture, "uac_tone_echo_dynamic_pt", tone)
    assert packets and {p.pt for p in packets} == {96}
    first = packets[0].seq
    in_order = sorted(packets, key=lambda p: (p.seq - first) & 0xFFFF)
    heard = b"".join(pcap.decode_g711(p.payload, pcap.PT_PCMU) for p in in_order)
    loud = assert_echo_of_tone(heard, 1000)
    assert rms_dbfs(loud) == pytest.approx(rms_dbfs(decoded_ulaw(tone_file)), abs=3)
    (answered,) = gateway.events("answered")
    assert answered.fields["codec"] == "PCMU"
    gateway.wait_for_log(r"call \S+ rtp ", 5)
    (rtp,) = gateway.events("rtp")
    assert int(rtp.fields["packets_in"]) >= 125


def test_late_offer_call_is_answered_with_an_offer_and_echoes(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    """INVITE without SDP: our 200 carries the offer, SIPp's ACK the answer (RFC 3264 §5)."""
    gateway = gateway_factory()
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        result = sipp(
            "uac_late_offer", gateway.uri_host, "-s", "echo", timeout=30,
            media_port=media_port, files=[tone_ul(tmp_path, 700)],
        )  # fmt: skip
    assert result.returncode == 0, result.explain()
    heard, _ = heard_on(cap.path, media_port)
    loud = b"".join(
        heard[i : i + 320] for i in range(0, len(heard), 320) if rms_dbfs(heard[i : i + 320]) > -30
    )
    assert len(loud) >= 2 * 8000 * 2.5, f"only {len(loud) / 16000:.2f} s of echo heard"
    assert dominant_frequency(loud) == pytest.approx(700, abs=20)
    (media,) = gateway.events("media")
    assert media.fields == {"codec": "PCMU", "answer": "ack"}

"""The softphone's other half: ``callstream answer`` taking a real SIPp call, and
``callstream dial --dtmf`` sending RFC 4733 digits the gateway reports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, Capture, PortAllocator, callstream_cli, read_wav
from tests.interop.listening import heard_on
from tests.interop.media import tone_ul, tone_wav


def test_answer_plays_to_and_records_a_sipp_caller(
    sipp: SippRunner, ports: PortAllocator, capture: Callable[[int], Capture], tmp_path: Path
) -> None:
    listen_port = ports.port()
    rtp_first = ports.rtp_block(10)
    says = tone_wav(tmp_path / "answer_says.wav", 600, 3)
    recorded = tmp_path / "answer_heard.wav"
    answerer = subprocess.Popen(
        [
            sys.executable, "-m", "callstream", "answer", "--listen", f"{HOST}:{listen_port}",
            "--play", str(says), "--record", str(recorded), "--duration", "10", "--once",
            "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        media_port = ports.rtp_block(4)
        with capture(media_port) as cap:
            result = sipp(
                "uac_tone_echo", f"{HOST}:{listen_port}", "-s", "bob", timeout=30,
                media_port=media_port, files=[tone_ul(tmp_path, 1000)],
            )  # fmt: skip
        output, _ = answerer.communicate(timeout=15)
    finally:
        answerer.kill()
    assert result.returncode == 0, result.explain()
    assert answerer.returncode == 0, output
    assert "answered" in output and "ended by=remote reason=bye" in output, output
    # what the SIPp caller heard: our 600 Hz file
    heard, _ = heard_on(cap.path, media_port)
    loud = b"".join(
        heard[i : i + 320] for i in range(0, len(heard), 320) if rms_dbfs(heard[i : i + 320]) > -30
    )
    assert len(loud) >= 2 * 8000 * 2.5
    assert dominant_frequency(loud) == pytest.approx(600, abs=15)
    # what we recorded: SIPp's 1000 Hz tone
    pcm, rate = read_wav(recorded)
    assert rate == 8000
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=15)


def test_dial_sends_rfc4733_digits_the_gateway_reports(
    gateway_factory: GatewayFactory, ports: PortAllocator, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:echo@{gateway.uri_host}", "--dtmf", "1#7", "--duration", "2",
        "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    gateway.wait_for_log(r"call \S+ ended .*by=remote", 5)
    digits = [(e.fields["digit"], e.fields["via"]) for e in gateway.events("dtmf")]
    assert digits == [("1", "rtp"), ("#", "rtp"), ("7", "rtp")]

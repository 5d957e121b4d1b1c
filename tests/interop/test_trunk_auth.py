"""``callstream dial`` through a SIP trunk that demands digest authentication."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop.conftest import SippRunner
from tests.interop.harness import HOST, PortAllocator, callstream_cli, read_wav
from tests.interop.media import tone_ul


def test_dial_answers_digest_challenge_and_records_trunk_tone(
    sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    trunk = sipp.start("uas_digest", None, timeout=30, listen=True, files=[tone_ul(tmp_path)])
    recorded = tmp_path / "out.wav"
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:trunk@{HOST}:{trunk.port}", "--auth-user", "u", "--auth-password", "p",
        "--record", str(recorded), "--duration", "3", "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    trunk_result = trunk.wait(30)
    assert result.returncode == 0, f"{result.stderr}\n{trunk_result.explain()}"
    assert trunk_result.returncode == 0, trunk_result.explain()
    pcm, rate = read_wav(recorded)
    assert rate == 8000
    assert len(pcm) >= 2 * 8000 * 2.5
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=20)
    assert rms_dbfs(pcm) > -15


def test_dial_with_wrong_password_fails_with_status(
    sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    trunk = sipp.start("uas_digest", None, timeout=20, listen=True, files=[tone_ul(tmp_path)])
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:trunk@{HOST}:{trunk.port}", "--auth-user", "u", "--auth-password", "nope",
        "--duration", "1", "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    trunk.wait(30)
    assert result.returncode == 1
    assert "call failed: 403 Forbidden" in result.stderr

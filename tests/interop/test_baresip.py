"""``callstream dial`` to a real softphone (baresip) that records what it hears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop.conftest import Baresip
from tests.interop.harness import PortAllocator, callstream_cli, read_wav, write_wav
from tests.interop.media import tone_wav


def test_dial_baresip_hears_the_tone(
    baresip_factory: Callable[[Path], Baresip], ports: PortAllocator, tmp_path: Path
) -> None:
    phone = baresip_factory(write_wav(tmp_path / "bob_says.wav", bytes(8000 * 2 * 10)))
    tone = tone_wav(tmp_path / "tone.wav", 1000, 3)
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:bob@127.0.0.1:{phone.port}", "--play", str(tone), "--duration", "3",
        "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    phone.wait_for_log("terminated", 10)
    (recording,) = phone.received()
    pcm, rate = read_wav(recording)
    assert rate == 8000
    assert len(pcm) >= 2 * 8000 * 2.5
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=20)
    assert rms_dbfs(pcm) > -12

"""Text to speech through the real espeak-ng (installed here and in CI) and stand-ins."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from callstream.errors import MediaError
from callstream.flows import tts
from tests.audio_analysis import rms_dbfs, samples

pytestmark = pytest.mark.timeout(30)


def speech_like(pcm: bytes) -> bool:
    """Not silent, and most power in the voice band (200-3000 Hz)."""
    values = samples(pcm)
    power = np.abs(np.fft.rfft(values)) ** 2
    frequencies = np.fft.rfftfreq(values.size, 1 / 8000)
    in_band = (frequencies >= 200) & (frequencies <= 3000)
    return rms_dbfs(pcm) > -35 and float(power[in_band].sum() / power.sum()) > 0.8


def fake_espeak(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-espeak"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    ("language", "gender", "voice"),
    [
        ("en-US", "female", "en-us+f3"),
        ("en-US", "male", "en-us"),
        ("en-GB", "neutral", "en-gb"),
        ("de", "female", "de+f3"),
    ],
)
def test_voice_for_language_and_gender(language: str, gender: str, voice: str) -> None:
    assert tts.voice_for(language, gender) == voice


async def test_synthesize_gives_canonical_speech() -> None:
    pcm = await tts.synthesize("Hello, world.", language="en-US", gender="female")
    assert len(pcm) % 2 == 0
    assert 0.4 < len(pcm) / 16000 < 3.0  # seconds of 8 kHz 16-bit audio
    assert speech_like(pcm)


async def test_female_and_male_voices_differ() -> None:
    female = await tts.synthesize("Hello.", language="en-US", gender="female")
    male = await tts.synthesize("Hello.", language="en-US", gender="male")
    assert female != male


async def test_text_is_never_read_as_options(tmp_path: Path) -> None:
    planted = tmp_path / "planted.wav"
    pcm = await tts.synthesize(f"-w {planted} --help", language="en-US", gender="male")
    assert speech_like(pcm)
    assert not planted.exists()


async def test_unknown_region_falls_back_to_the_language() -> None:
    pcm = await tts.synthesize("Hello.", language="en-QQ", gender="female")
    assert speech_like(pcm)


async def test_unknown_language_is_a_media_error() -> None:
    with pytest.raises(MediaError) as info:
        await tts.synthesize("Hello.", language="qq-QQ", gender="female")
    message = str(info.value)
    assert message.startswith("cannot synthesise speech: espeak-ng exited with status 1: ")
    assert "voice does not exist" in message


async def test_missing_espeak_is_a_media_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "ESPEAK", "no-such-espeak")
    with pytest.raises(MediaError) as info:
        await tts.synthesize("Hello.", language="en-US", gender="female")
    assert str(info.value) == "cannot synthesise speech: no-such-espeak is not installed"


async def test_failing_espeak_is_a_media_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = fake_espeak(tmp_path, "echo 'out of memory' >&2\nexit 3")
    monkeypatch.setattr(tts, "ESPEAK", program)
    with pytest.raises(MediaError) as info:
        await tts.synthesize("Hello.", language="en", gender="female")
    assert str(info.value) == (
        f"cannot synthesise speech: {program} exited with status 3: out of memory"
    )


async def test_unreadable_output_is_a_media_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Succeeds but writes something that is not a WAV to the -w path (argument 3).
    program = fake_espeak(tmp_path, 'cat > /dev/null\necho junk > "$3"')
    monkeypatch.setattr(tts, "ESPEAK", program)
    with pytest.raises(MediaError) as info:
        await tts.synthesize("Hello.", language="en", gender="female")
    assert str(info.value) == "cannot read WAV file espeak-ng output: not a RIFF/WAVE file"


async def test_slow_espeak_times_out_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)
    program = fake_espeak(tmp_path, f"echo $$ > {started}\nexec sleep 20")
    monkeypatch.setattr(tts, "ESPEAK", program)
    monkeypatch.setattr(tts, "SYNTHESIS_TIMEOUT_S", 1.0)
    task = asyncio.create_task(tts.synthesize("Hello.", language="en", gender="female"))
    pid = int(await asyncio.wait_for(asyncio.to_thread(started.read_text), 10))
    with pytest.raises(MediaError) as info:
        await task
    assert str(info.value) == f"cannot synthesise speech: {program} took longer than 1 s"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_cancelling_kills_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)  # the stand-in blocks writing its pid until we read it
    program = fake_espeak(tmp_path, f"echo $$ > {started}\nexec sleep 20")
    monkeypatch.setattr(tts, "ESPEAK", program)
    task = asyncio.create_task(tts.synthesize("Hello.", language="en", gender="female"))
    pid = int(await asyncio.wait_for(asyncio.to_thread(started.read_text), 10))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

from __future__ import annotations

import numpy as np
import pytest

from callstream.codecs.resample import Resampler, resample
from callstream.errors import MediaError
from tests.audio_analysis import dominant_frequency, rms_dbfs, sine


def test_downsample_keeps_frequency_and_level() -> None:
    pcm = sine(1000, 1.0, rate=16000, amplitude=0.5)
    converted = resample(pcm, 16000, 8000)
    assert len(converted) == 8000 * 2
    assert dominant_frequency(converted, rate=8000) == pytest.approx(1000, abs=1)
    middle = converted[2000:-2000]  # away from the filter's edges
    assert rms_dbfs(middle) == pytest.approx(rms_dbfs(pcm), abs=0.2)


def test_upsample_keeps_frequency_and_level() -> None:
    pcm = sine(440, 0.5, rate=8000, amplitude=0.3)
    converted = resample(pcm, 8000, 44100)
    assert len(converted) == 22050 * 2
    assert dominant_frequency(converted, rate=44100) == pytest.approx(440, abs=1)
    assert rms_dbfs(converted[8000:-8000]) == pytest.approx(rms_dbfs(pcm), abs=0.2)


def test_downsample_removes_what_cannot_be_represented() -> None:
    pcm = sine(6000, 0.5, rate=16000, amplitude=0.5)  # above 4 kHz Nyquist at 8 kHz
    assert rms_dbfs(resample(pcm, 16000, 8000)[1000:-1000]) < -60


def test_same_rate_and_empty_are_unchanged() -> None:
    pcm = sine(1000, 0.1)
    assert resample(pcm, 8000, 8000) is pcm
    assert resample(b"", 16000, 8000) == b""


def test_bad_rates() -> None:
    with pytest.raises(MediaError, match="^cannot resample from 0 Hz to 8000 Hz$"):
        resample(b"\x00\x00", 0, 8000)
    with pytest.raises(MediaError, match="^cannot resample from 8000 Hz to -1 Hz$"):
        Resampler(8000, -1)


def test_stream_matches_whole_buffer_conversion() -> None:
    pcm = sine(1000, 1.0, rate=16000, amplitude=0.5)
    resampler = Resampler(16000, 8000)
    pieces = [resampler.process(pcm[start : start + 640]) for start in range(0, len(pcm), 640)]
    streamed = b"".join(pieces) + resampler.flush()
    whole = resample(pcm, 16000, 8000)
    assert len(streamed) == len(whole)
    assert dominant_frequency(streamed) == pytest.approx(1000, abs=1)
    assert rms_dbfs(streamed[2000:-2000]) == pytest.approx(rms_dbfs(pcm), abs=0.2)
    # No seams at chunk boundaries: sample for sample what one call produces.
    difference = np.frombuffer(streamed, "<i2").astype(int) - np.frombuffer(whole, "<i2")
    assert int(np.abs(difference).max()) <= 2


def test_stream_at_same_rate_passes_through() -> None:
    resampler = Resampler(8000, 8000)
    assert resampler.process(b"\x01\x02") == b"\x01\x02"
    assert resampler.flush() == b""


def test_frame_upsampler_gives_one_frame_per_frame_without_clicks() -> None:
    from callstream.codecs.resample import FrameUpsampler
    from tests.audio_analysis import dominant_frequency, rms_dbfs, sine

    tone = sine(1000, 0.2)
    upsampler = FrameUpsampler()
    out = [upsampler.process(tone[i : i + 320]) for i in range(0, len(tone), 320)]
    assert [len(chunk) for chunk in out] == [640] * 10  # no bursts, no lag in size
    joined = b"".join(out)[64:]  # past the filter's 1 ms start-up
    assert abs(dominant_frequency(joined, rate=16000) - 1000) < 5
    assert abs(rms_dbfs(joined) - rms_dbfs(tone)) < 0.5
    # no clicks at frame edges: sample-to-sample steps stay within a sine's own slope
    samples = np.frombuffer(joined, dtype="<i2").astype(float)
    assert np.abs(np.diff(samples)).max() < 0.5 * 32767 * 2 * np.pi * 1000 / 16000 * 1.1

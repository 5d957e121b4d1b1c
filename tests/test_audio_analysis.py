from __future__ import annotations

import math

import numpy as np
import pytest

from tests.audio_analysis import (
    dominant_frequency,
    goertzel_power,
    rms_dbfs,
    samples,
    sine,
    tone_segments,
)


def test_sine_has_exact_length_and_peak() -> None:
    pcm = sine(1000, 0.5, amplitude=0.5)
    assert len(pcm) == 8000  # 4000 samples
    values = np.frombuffer(pcm, dtype="<i2")
    assert int(values.max()) == 16384  # round(0.5 * 32767) at the sine's peaks
    assert int(values[0]) == 0
    assert len(sine(440, 1.0, rate=16000)) == 32000


@pytest.mark.parametrize("frequency", [300.0, 440.0, 1000.0, 1633.0, 3000.0])
def test_dominant_frequency_within_one_hertz(frequency: float) -> None:
    assert dominant_frequency(sine(frequency, 0.5)) == pytest.approx(frequency, abs=1.0)


def test_dominant_frequency_picks_the_louder_tone() -> None:
    mix = samples(sine(697, 0.5, amplitude=0.2)) + samples(sine(1209, 0.5, amplitude=0.4))
    pcm = np.round(mix * 32768).astype("<i2").tobytes()
    assert dominant_frequency(pcm) == pytest.approx(1209, abs=1.0)


def test_dominant_frequency_at_another_rate() -> None:
    assert dominant_frequency(sine(5000, 0.2, rate=44100), rate=44100) == pytest.approx(5000, abs=2)


def test_rms_dbfs() -> None:
    assert rms_dbfs(sine(1000, 1.0, amplitude=1.0)) == pytest.approx(-3.01, abs=0.02)
    assert rms_dbfs(sine(1000, 1.0, amplitude=0.1)) == pytest.approx(-23.01, abs=0.02)
    assert rms_dbfs(bytes(320)) == -math.inf
    assert rms_dbfs(b"") == -math.inf


def test_goertzel_power_matches_mean_square_for_a_pure_tone() -> None:
    pcm = sine(1000, 0.1, amplitude=0.5)
    assert goertzel_power(pcm, 1000) == pytest.approx(0.125, rel=0.01)
    assert goertzel_power(pcm, 1500) < 1e-6
    assert goertzel_power(b"", 1000) == 0.0


def test_tone_segments_finds_the_tone_between_silences() -> None:
    pcm = bytes(1600) + sine(1000, 0.2) + bytes(640) + sine(1000, 0.1) + sine(500, 0.1)
    assert tone_segments(pcm, 1000) == [(100, 300), (340, 440)]
    assert tone_segments(pcm, 500) == [(440, 540)]
    assert tone_segments(bytes(8000), 1000) == []

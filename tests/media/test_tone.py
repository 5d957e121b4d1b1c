from __future__ import annotations

import numpy as np
import pytest

from callstream.media.frame import FRAME_BYTES
from callstream.media.tone import DTMF_FREQUENCIES_HZ, DtmfToneGenerator, ToneGenerator
from tests.audio_analysis import dominant_frequency, goertzel_power, rms_dbfs, samples


@pytest.mark.parametrize("frequency", [350.0, 440.0, 1000.0, 2600.0])
def test_tone_frequency_dominates(frequency: float) -> None:
    generator = ToneGenerator(frequency, amplitude=0.3)
    pcm = b"".join(generator.next_frame() for _ in range(25))
    assert len(pcm) == 25 * FRAME_BYTES
    assert dominant_frequency(pcm) == pytest.approx(frequency, abs=1)
    mean_square = 10 ** (rms_dbfs(pcm) / 10)
    assert goertzel_power(pcm, frequency) / mean_square > 0.99
    assert rms_dbfs(pcm) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.05)


def test_tone_is_continuous_across_frames() -> None:
    # 440 Hz is not a whole number of cycles per frame, so a phase reset would jump.
    generator = ToneGenerator(440.0, amplitude=0.5)
    values = samples(b"".join(generator.next_frame() for _ in range(50)))
    steps = np.abs(np.diff(values))
    # The steepest step of a 440 Hz sine of amplitude 0.5 at 8 kHz: 0.5 * 2*pi*440/8000.
    largest_step = 0.5 * 2 * np.pi * 440 / 8000
    assert float(steps.max()) <= largest_step + 1e-4
    # Samples 160 frames apart in a fresh generator match the continued one exactly.
    fresh = ToneGenerator(440.0, amplitude=0.5)
    whole = np.round(0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000))
    assert np.array_equal(
        np.frombuffer(b"".join(fresh.next_frame() for _ in range(50)), dtype="<i2"), whole
    )


def test_tone_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="^amplitude must be between 0 and 1$"):
        ToneGenerator(440, amplitude=1.5)
    with pytest.raises(ValueError, match="^frequency must be between 0 and 4000 Hz$"):
        ToneGenerator(4000)


@pytest.mark.parametrize("digit", ["1", "5", "9", "0", "*", "#", "a", "D"])
def test_dtmf_tone_has_both_frequencies(digit: str) -> None:
    generator = DtmfToneGenerator(digit)
    pcm = b"".join(generator.next_frame() for _ in range(5))
    low, high = DTMF_FREQUENCIES_HZ[digit.upper()]
    mean_square = 10 ** (rms_dbfs(pcm) / 10)
    assert goertzel_power(pcm, low) / mean_square == pytest.approx(0.5, abs=0.05)
    assert goertzel_power(pcm, high) / mean_square == pytest.approx(0.5, abs=0.05)
    assert int(np.abs(np.frombuffer(pcm, dtype="<i2")).max()) <= round(0.3 * 32767)


def test_dtmf_tone_rejects_unknown_digit() -> None:
    with pytest.raises(ValueError, match="^not a DTMF digit: 'x'$"):
        DtmfToneGenerator("x")

"""Measuring audio in tests: frequency, level, tone presence, test signals.

Shared by every test in the project. All PCM is 16-bit signed little-endian mono
(the canonical frame's format); levels are relative to full scale (32768).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FULL_SCALE = 32768.0


def samples(pcm: bytes) -> npt.NDArray[np.float64]:
    """PCM bytes as floats in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / FULL_SCALE


def sine(frequency_hz: float, duration_s: float, rate: int = 8000, amplitude: float = 0.5) -> bytes:
    """A sine of ``amplitude`` (fraction of full scale) starting at phase 0."""
    count = round(duration_s * rate)
    times = np.arange(count) / rate
    wave = amplitude * 32767 * np.sin(2 * math.pi * frequency_hz * times)
    return np.round(wave).astype("<i2").tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """RMS level in dBFS (a full-scale sine is about -3 dBFS); -inf for digital silence."""
    values = samples(pcm)
    if values.size == 0:
        return -math.inf
    mean_square = float(np.mean(values * values))
    return 10 * math.log10(mean_square) if mean_square > 0 else -math.inf


def goertzel_power(pcm: bytes, freq: float, rate: int = 8000) -> float:
    """Power of the component at ``freq``, on the scale of the mean square.

    A sine of amplitude ``a`` (fraction of full scale) at exactly ``freq`` gives
    about ``a**2 / 2``, the same as its mean square, so ``goertzel_power /
    mean square`` is the share of the signal's power at that frequency.
    (The DTFT at one frequency, which is what Goertzel's recurrence computes.)
    """
    values = samples(pcm)
    if values.size == 0:
        return 0.0
    phases = np.exp(-2j * math.pi * freq * np.arange(values.size) / rate)
    component = complex(np.dot(values, phases))
    return 2 * abs(component) ** 2 / values.size**2


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    """The strongest frequency in Hz (Hann-windowed FFT, parabolic peak interpolation)."""
    values = samples(pcm)
    if values.size < 4:
        raise ValueError("too few samples to measure a frequency")
    spectrum = np.abs(np.fft.rfft(values * np.hanning(values.size)))
    spectrum[0] = 0.0  # DC is never the tone we are looking for
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        if denominator != 0:
            offset = 0.5 * (left - right) / denominator
    return float((peak + offset) * rate / values.size)


def tone_segments(
    pcm: bytes,
    freq: float,
    rate: int = 8000,
    window_ms: int = 20,
    min_share: float = 0.5,
    min_dbfs: float = -50.0,
) -> list[tuple[int, int]]:
    """Spans ``(start_ms, end_ms)`` where ``freq`` dominates, at ``window_ms`` resolution.

    A window counts when it is louder than ``min_dbfs`` and at least ``min_share``
    of its power is at ``freq``; adjacent windows merge into one span.
    """
    window_bytes = rate * window_ms // 1000 * 2
    spans: list[tuple[int, int]] = []
    for index in range(len(pcm) // window_bytes):
        window = pcm[index * window_bytes : (index + 1) * window_bytes]
        level = rms_dbfs(window)
        if level < min_dbfs:
            continue
        mean_square = 10 ** (level / 10)
        if goertzel_power(window, freq, rate) / mean_square < min_share:
            continue
        start_ms = index * window_ms
        if spans and spans[-1][1] == start_ms:
            spans[-1] = (spans[-1][0], start_ms + window_ms)
        else:
            spans.append((start_ms, start_ms + window_ms))
    return spans

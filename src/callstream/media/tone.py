"""Tone generation into canonical frames: sines and DTMF pairs (ITU-T Q.23).

Each generator keeps its phase between frames, so consecutive frames join
without a discontinuity (a click) whatever the frequency.
"""

from __future__ import annotations

import math

import numpy as np

from callstream.media.frame import FRAME_SAMPLES, SAMPLE_RATE_HZ

_FULL_SCALE = 32767
_TWO_PI = 2 * math.pi
_SAMPLE_INDEX = np.arange(FRAME_SAMPLES, dtype=np.float64)

DTMF_FREQUENCIES_HZ: dict[str, tuple[float, float]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
"""Low (row) and high (column) frequency of each DTMF key, ITU-T Q.23."""


class ToneGenerator:
    """A continuous sine, one 20 ms frame at a time.

    ``amplitude`` is a fraction of full scale (0.3 is about -13 dBFS RMS).
    """

    def __init__(self, frequency_hz: float, amplitude: float = 0.3) -> None:
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError("amplitude must be between 0 and 1")
        if not 0.0 < frequency_hz < SAMPLE_RATE_HZ / 2:
            raise ValueError(f"frequency must be between 0 and {SAMPLE_RATE_HZ // 2} Hz")
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self._phase = 0.0
        self._step = _TWO_PI * frequency_hz / SAMPLE_RATE_HZ

    def next_frame(self) -> bytes:
        """The next 160 samples, continuing the phase where the last frame ended."""
        wave = np.sin(self._phase + self._step * _SAMPLE_INDEX)
        self._phase = (self._phase + self._step * FRAME_SAMPLES) % _TWO_PI
        return np.rint(wave * (self.amplitude * _FULL_SCALE)).astype("<i2").tobytes()


class DtmfToneGenerator:
    """The in-band tone pair of one DTMF key (for peers without RFC 4733 events).

    Both tones get half of ``amplitude`` so their sum stays within it.
    """

    def __init__(self, digit: str, amplitude: float = 0.3) -> None:
        frequencies = DTMF_FREQUENCIES_HZ.get(digit.upper())
        if frequencies is None:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self.digit = digit.upper()
        self._low = ToneGenerator(frequencies[0], amplitude / 2)
        self._high = ToneGenerator(frequencies[1], amplitude / 2)

    def next_frame(self) -> bytes:
        """The next 20 ms of the tone pair."""
        low = np.frombuffer(self._low.next_frame(), dtype="<i2").astype(np.int32)
        high = np.frombuffer(self._high.next_frame(), dtype="<i2").astype(np.int32)
        return (low + high).astype("<i2").tobytes()

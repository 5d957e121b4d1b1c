"""The mixer: pure functions over canonical frames (16-bit LE PCM), one tick at a time.

Sums are taken in int32 and clipped to int16 once at the end (saturation), so
loud participants clip instead of wrapping around into noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from callstream.media.frame import SILENCE

_PCM = np.dtype("<i2")
_INT16_MIN = -32768
_INT16_MAX = 32767


def _stack(frames: Sequence[bytes]) -> npt.NDArray[np.int16]:
    size = len(frames[0])
    if any(len(frame) != size for frame in frames):
        raise ValueError("frames to mix must all have the same length")
    return np.frombuffer(b"".join(frames), dtype=_PCM).reshape(len(frames), -1)


def _clip_to_bytes(total: npt.NDArray[np.int32]) -> bytes:
    return np.clip(total, _INT16_MIN, _INT16_MAX).astype(_PCM).tobytes()


def mix(frames: Sequence[bytes]) -> bytes:
    """The saturating sum of equal-length frames; no frames gives one silent frame."""
    if not frames:
        return SILENCE
    if len(frames) == 1:
        return frames[0]
    return _clip_to_bytes(_stack(frames).sum(axis=0, dtype=np.int32))


def mix_minus(frames: Sequence[bytes]) -> list[bytes]:
    """For each participant, the saturating sum of everyone else (a conference's "N-1").

    The total is computed once; each output is total minus own, then clipped, so
    nobody hears themselves even when the total clipped.
    """
    if len(frames) <= 1:
        return [bytes(len(frame)) for frame in frames]
    if len(frames) == 2:
        return [frames[1], frames[0]]
    stacked = _stack(frames)
    total = stacked.sum(axis=0, dtype=np.int32)
    others = total - stacked.astype(np.int32)
    clipped = np.clip(others, _INT16_MIN, _INT16_MAX).astype(_PCM)
    return [row.tobytes() for row in clipped]


def gain(frame: bytes, factor: float) -> bytes:
    """``frame`` scaled by ``factor`` (1.0 unchanged), rounded and clipped."""
    if factor == 1.0:
        return frame
    scaled = np.frombuffer(frame, dtype=_PCM).astype(np.float64) * factor
    return np.clip(np.rint(scaled), _INT16_MIN, _INT16_MAX).astype(_PCM).tobytes()

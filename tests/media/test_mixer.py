from __future__ import annotations

import struct

import numpy as np
import pytest

from callstream.media.frame import FRAME_BYTES, SILENCE
from callstream.media.mixer import gain, mix, mix_minus


def _frame(value: int) -> bytes:
    return struct.pack("<h", value) * (FRAME_BYTES // 2)


def _values(frame: bytes) -> set[int]:
    return {int(v) for v in np.frombuffer(frame, dtype="<i2")}


def test_mix_of_nothing_is_silence() -> None:
    assert mix([]) == SILENCE


def test_mix_of_one_frame_is_that_frame() -> None:
    frame = _frame(1234)
    assert mix([frame]) is frame


def test_mix_adds_samples() -> None:
    assert _values(mix([_frame(1000), _frame(-300), _frame(20)])) == {720}
    assert mix([SILENCE, SILENCE]) == SILENCE


def test_mix_saturates_instead_of_wrapping() -> None:
    assert _values(mix([_frame(30000), _frame(30000)])) == {32767}
    assert _values(mix([_frame(-30000), _frame(-30000), _frame(-30000)])) == {-32768}
    # Clipping happens once, on the total: +big -big cancels exactly.
    assert _values(mix([_frame(32767), _frame(32767), _frame(-32768)])) == {32766}


def test_mix_keeps_per_sample_values() -> None:
    ramp = np.arange(160, dtype="<i2").tobytes()
    assert mix([ramp, ramp]) == (np.arange(160, dtype="<i2") * 2).astype("<i2").tobytes()


def test_mix_rejects_frames_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="^frames to mix must all have the same length$"):
        mix([_frame(1), b"\x00\x00"])


def test_mix_minus_excludes_self() -> None:
    outputs = mix_minus([_frame(100), _frame(20), _frame(3)])
    assert [_values(output) for output in outputs] == [{23}, {103}, {120}]


def test_mix_minus_small_cases() -> None:
    assert mix_minus([]) == []
    assert mix_minus([_frame(500)]) == [SILENCE]
    assert mix_minus([_frame(1), _frame(2)]) == [_frame(2), _frame(1)]


def test_mix_minus_clips_each_output_not_the_total() -> None:
    outputs = mix_minus([_frame(30000), _frame(30000), _frame(30000), _frame(-5)])
    assert [_values(output) for output in outputs] == [{32767}, {32767}, {32767}, {32767}]
    outputs = mix_minus([_frame(32000), _frame(32000), _frame(-32000)])
    assert [_values(output) for output in outputs] == [{0}, {0}, {32767}]


def test_gain() -> None:
    frame = _frame(1000)
    assert gain(frame, 1.0) is frame
    assert _values(gain(frame, 0.5)) == {500}
    assert _values(gain(frame, 100.0)) == {32767}
    assert _values(gain(_frame(-1000), 100.0)) == {-32768}
    assert gain(frame, 0.0) == SILENCE

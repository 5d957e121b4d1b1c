"""Audio sources: what a leg says, one 20 ms frame per tick.

A source's ``read_frame()`` is called once per tick and returns a canonical frame
(320 bytes) or ``None`` when it has nothing for this tick. ``done`` tells the flow
runner that a finite source (a file, a tone) has been played to the end.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from callstream.media.frame import FRAME_BYTES, FRAME_MS


class AudioSource(Protocol):
    done: bool

    def read_frame(self) -> bytes | None:
        """This tick's frame, or None when the source is silent for this tick."""


class PcmPlayer:
    """Plays a finite block of canonical PCM once; the last frame is zero-padded."""

    def __init__(self, pcm: bytes) -> None:
        remainder = len(pcm) % FRAME_BYTES
        if remainder:
            pcm += bytes(FRAME_BYTES - remainder)
        self._pcm = memoryview(pcm)
        self._offset = 0
        self.done = len(pcm) == 0

    @property
    def duration_ms(self) -> int:
        return len(self._pcm) // FRAME_BYTES * FRAME_MS

    def read_frame(self) -> bytes | None:
        if self.done:
            return None
        end = self._offset + FRAME_BYTES
        frame = bytes(self._pcm[self._offset : end])
        self._offset = end
        if end >= len(self._pcm):
            self.done = True
        return frame


class FrameQueue:
    """A FIFO of frames fed by someone else (echo, a bridge, a conference).

    ``max_frames`` bounds memory and delay; when full, the oldest frames are dropped
    and counted. It is never ``done``: it lives as long as whoever feeds it.

    ``prime_frames`` is a jitter cushion. Frames arrive at the sender's pace and are
    read at our clock's, so a sender that is late by more than the time left before
    our next tick leaves that tick with nothing to say: a 20 ms hole in the audio, and
    the frame that arrives just after waits one tick more from then on. With
    ``prime_frames = n`` the queue holds back until ``n`` frames are queued, at the
    start and again after it ran dry (``underruns`` counts those), so a sender may run
    up to ``n - 1`` frames late without a hole, for ``n - 1`` frames of added delay.

    ``trim_standing_after`` is the opposite guard, for a reader that wants no cushion.
    Two frames arriving between two reads once (around a late tick) leave a frame
    queued after every read from then on: a frame of delay for good. With
    ``trim_standing_after = n``, after ``n`` reads in a row that left a frame queued,
    the read drops the older frame and returns the newer (``standing_trimmed`` counts
    them): one 20 ms gap instead. A sender of two frames at once every other tick
    empties the queue every other read, so is never trimmed. Not with a cushion
    (``prime_frames`` > 1), which is a standing frame on purpose.
    """

    def __init__(
        self,
        max_frames: int = 50,
        *,
        prime_frames: int = 1,
        trim_standing_after: int | None = None,
    ) -> None:
        if not 1 <= prime_frames <= max_frames:
            raise ValueError("prime_frames must be between 1 and max_frames")
        if trim_standing_after is not None and (trim_standing_after < 1 or prime_frames > 1):
            raise ValueError("trim_standing_after must be at least 1, and without a cushion")
        self._trim_standing_after = trim_standing_after
        self._standing_reads = 0
        self.standing_trimmed = 0
        self._frames: deque[bytes] = deque()
        self._max_frames = max_frames
        self._prime_frames = prime_frames
        self._priming = True
        self.done = False
        self.dropped_frames = 0
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        if len(self._frames) >= self._max_frames:
            self._frames.popleft()
            self.dropped_frames += 1
        self._frames.append(frame)

    def clear(self) -> None:
        self._frames.clear()
        self._priming = True

    def read_frame(self) -> bytes | None:
        frames = self._frames
        if self._priming:
            if len(frames) < self._prime_frames:
                return None
            self._priming = False
        if frames:
            frame = frames.popleft()
            if self._trim_standing_after is not None:
                frame = self._trim_standing(frame)
            return frame
        self._standing_reads = 0
        self._priming = True
        self.underruns += 1
        return None

    def _trim_standing(self, frame: bytes) -> bytes:
        """After a read: count it if it left a frame queued; the newer one on the n-th."""
        frames = self._frames
        if not frames:
            self._standing_reads = 0
            return frame
        self._standing_reads += 1
        assert self._trim_standing_after is not None
        if self._standing_reads < self._trim_standing_after:
            return frame
        self._standing_reads = 0
        self.standing_trimmed += 1
        return frames.popleft()


class ToneSource:
    """A sine tone for ``duration_ms`` (the ``tone`` action)."""

    def __init__(self, frequency_hz: float, duration_ms: int, amplitude: float = 0.3) -> None:
        from callstream.media.tone import ToneGenerator

        self._generator = ToneGenerator(frequency_hz, amplitude)
        self._frames_left = max(0, duration_ms // FRAME_MS)
        self.done = self._frames_left == 0

    def read_frame(self) -> bytes | None:
        if self.done:
            return None
        self._frames_left -= 1
        if self._frames_left == 0:
            self.done = True
        return self._generator.next_frame()

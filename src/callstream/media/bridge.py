"""A two-party bridge: each leg hears the other (the ``connect`` action, issue 3).

What leg A hears goes, frame by frame as it arrives, into a small ``FrameQueue`` that
is one of leg B's sources, and the other way round. The leg keeps its other sources, so
a prompt played on A is mixed with B's voice in what A's peer hears.

The queues are bounded to a few frames: a peer that sends faster than our clock ticks
(or a burst released by the jitter buffer) cannot build up latency; the oldest frames
are dropped instead (and counted, ``FrameQueue.dropped_frames``).

The hot path is the queue's ``push`` used directly as the tap: no allocation beyond
the frame the leg already made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from callstream.media.sources import AudioSource, FrameQueue

FrameTap = Callable[[bytes], None]

BRIDGE_QUEUE_FRAMES = 3
"""At most 60 ms of one party's voice waits for the other's clock tick."""


class LegAudio(Protocol):
    """The part of ``callstream.calls.leg.Leg`` a bridge or a conference uses.

    Taps receive each heard 20 ms frame on arrival; sources are read once per clock tick
    and mixed into what the leg says.
    """

    def add_tap(self, tap: FrameTap) -> None: ...

    def remove_tap(self, tap: FrameTap) -> None: ...

    def play(self, source: AudioSource) -> object:
        """Add a source to what the leg says (``Leg.play`` returns a future; unused here)."""
        ...

    def stop(self, source: AudioSource) -> None: ...


class _Direction:
    """One way of a bridge: ``speaker``'s heard frames become a source of ``listener``."""

    __slots__ = ("speaker", "listener", "queue", "tap")

    def __init__(self, speaker: LegAudio, listener: LegAudio, max_frames: int) -> None:
        self.speaker = speaker
        self.listener = listener
        self.queue = FrameQueue(max_frames)
        # Keep the one bound method, so remove_tap finds exactly what add_tap got.
        self.tap: FrameTap = self.queue.push

    def attach(self) -> None:
        self.listener.play(self.queue)
        self.speaker.add_tap(self.tap)

    def detach(self) -> None:
        self.speaker.remove_tap(self.tap)
        self.listener.stop(self.queue)
        self.queue.clear()


class Bridge:
    """Connects two legs so that each hears the other; ``close()`` disconnects them.

    Both legs must be driven by the same media clock (the engine's), which reads each
    leg's sources once per tick.
    """

    def __init__(
        self, leg_a: LegAudio, leg_b: LegAudio, *, max_frames: int = BRIDGE_QUEUE_FRAMES
    ) -> None:
        if leg_a is leg_b:
            raise ValueError("a leg cannot be bridged to itself")
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self.leg_a = leg_a
        self.leg_b = leg_b
        self.a_to_b = _Direction(leg_a, leg_b, max_frames)
        """What A's peer says, queued for B's peer to hear."""
        self.b_to_a = _Direction(leg_b, leg_a, max_frames)
        """What B's peer says, queued for A's peer to hear."""
        self._open = True
        self.a_to_b.attach()
        self.b_to_a.attach()

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because a queue was full (a peer outpacing our clock)."""
        return self.a_to_b.queue.dropped_frames + self.b_to_a.queue.dropped_frames

    def close(self) -> None:
        """Detach both directions; the legs keep their other taps and sources. Idempotent."""
        if not self._open:
            return
        self._open = False
        self.a_to_b.detach()
        self.b_to_a.detach()

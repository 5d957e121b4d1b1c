import pytest

from callstream.media.frame import FRAME_BYTES
from callstream.media.sources import FrameQueue, PcmPlayer


def test_player_pads_the_last_frame_and_finishes() -> None:
    player = PcmPlayer(b"\x01\x00" * 200)  # 400 bytes = 1.25 frames
    assert player.duration_ms == 40
    first = player.read_frame()
    second = player.read_frame()
    assert first == b"\x01\x00" * 160
    assert second is not None and second[:80] == b"\x01\x00" * 40 and second[80:] == bytes(240)
    assert player.done and player.read_frame() is None


def test_empty_player_is_done_at_once() -> None:
    assert PcmPlayer(b"").done


def test_frame_queue_bounds_memory_and_counts_drops() -> None:
    queue = FrameQueue(max_frames=2)
    for n in range(4):
        queue.push(bytes([n]) * FRAME_BYTES)
    assert queue.dropped_frames == 2
    assert queue.read_frame() == bytes([2]) * FRAME_BYTES
    assert queue.read_frame() == bytes([3]) * FRAME_BYTES
    assert queue.read_frame() is None and not queue.done


def frame(n: int) -> bytes:
    return bytes([n]) * FRAME_BYTES


def test_frame_queue_without_cushion_plays_each_frame_at_once() -> None:
    queue = FrameQueue(max_frames=5)
    assert queue.read_frame() is None
    queue.push(frame(1))
    assert queue.read_frame() == frame(1)
    assert queue.read_frame() is None
    assert queue.underruns == 1  # ran dry once; further silent ticks are not counted
    assert queue.read_frame() is None and queue.underruns == 1


def test_frame_queue_cushion_absorbs_a_late_sender() -> None:
    """A sender one tick late with prime_frames=2: no hole, one frame of delay."""
    queue = FrameQueue(max_frames=5, prime_frames=2)
    queue.push(frame(1))
    assert queue.read_frame() is None  # priming: one frame is not enough
    queue.push(frame(2))
    heard = [queue.read_frame()]  # tick: plays 1, holds 2
    heard.append(queue.read_frame())  # tick: the sender is late; 2 covers it
    queue.push(frame(3))
    queue.push(frame(4))  # the late frame arrives with the next one
    heard += [queue.read_frame(), queue.read_frame()]
    assert heard == [frame(1), frame(2), frame(3), frame(4)]
    assert queue.underruns == 0


def test_frame_queue_primes_again_after_running_dry() -> None:
    queue = FrameQueue(max_frames=5, prime_frames=3)
    for n in range(3):
        queue.push(frame(n))
    assert [queue.read_frame() for _ in range(3)] == [frame(0), frame(1), frame(2)]
    assert queue.read_frame() is None and queue.underruns == 1
    queue.push(frame(3))
    queue.push(frame(4))
    assert queue.read_frame() is None  # waits for a cushion again
    queue.push(frame(5))
    assert queue.read_frame() == frame(3)
    queue.clear()
    queue.push(frame(6))
    assert queue.read_frame() is None  # clear starts over: priming


def test_frame_queue_rejects_a_cushion_it_cannot_hold() -> None:
    with pytest.raises(ValueError):
        FrameQueue(max_frames=2, prime_frames=3)
    with pytest.raises(ValueError):
        FrameQueue(max_frames=2, prime_frames=0)


def test_frame_queue_trims_a_frame_left_standing_for_n_reads() -> None:
    """Two frames came between two reads once: after 3 reads that each left one
    queued, the older is dropped and the reader is back in time."""
    queue = FrameQueue(max_frames=5, trim_standing_after=3)
    queue.push(frame(1))
    heard = []
    for n in range(2, 8):
        queue.push(frame(n))
        heard.append(queue.read_frame())
    assert heard == [frame(1), frame(2), frame(4), frame(5), frame(6), frame(7)]
    assert queue.standing_trimmed == 1 and len(queue) == 0


def test_frame_queue_standing_trim_needs_no_cushion() -> None:
    with pytest.raises(ValueError, match="without a cushion"):
        FrameQueue(max_frames=5, prime_frames=2, trim_standing_after=3)
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue(max_frames=5, trim_standing_after=0)

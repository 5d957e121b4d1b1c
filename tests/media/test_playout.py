from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callstream.media.frame import FRAME_BYTES
from callstream.media.playout import PlayoutBuffer
from callstream.media.sources import AudioSource


def _numbered_pcm(frame_count: int) -> bytes:
    """Frames whose every sample is the frame's number, so order and loss show."""
    return b"".join(n.to_bytes(2, "little") * (FRAME_BYTES // 2) for n in range(frame_count))


def _frame(n: int) -> bytes:
    return n.to_bytes(2, "little") * (FRAME_BYTES // 2)


def test_is_an_audio_source_that_is_never_done() -> None:
    buffer: AudioSource = PlayoutBuffer()
    assert buffer.done is False
    assert buffer.read_frame() is None
    assert buffer.done is False


def test_ten_second_burst_comes_out_as_500_frames_one_per_read() -> None:
    buffer = PlayoutBuffer()
    buffer.push(_numbered_pcm(500))
    assert buffer.frames_in == 500 and len(buffer) == 500 and buffer.queued_frames == 500
    for n in range(500):
        assert buffer.read_frame() == _frame(n)
        assert buffer.frames_out == n + 1
        assert len(buffer) == 499 - n
    assert buffer.read_frame() is None
    assert buffer.frames_out == 500
    assert buffer.dropped_frames == 0 and buffer.dropped_bytes == 0


def test_odd_chunk_sizes_are_reframed_with_the_remainder_carried() -> None:
    pcm = _numbered_pcm(4)
    buffer = PlayoutBuffer()
    buffer.push(pcm[:1])
    assert buffer.frames_in == 0 and buffer.partial_bytes == 1
    assert buffer.read_frame() is None
    buffer.push(pcm[1:321])
    assert buffer.frames_in == 1 and buffer.partial_bytes == 1
    buffer.push(pcm[321:1000])
    assert buffer.frames_in == 3 and buffer.partial_bytes == 40
    buffer.push(pcm[1000:])
    assert buffer.frames_in == 4 and buffer.partial_bytes == 0
    assert [buffer.read_frame() for _ in range(5)] == [_frame(n) for n in range(4)] + [None]


@given(st.lists(st.integers(min_value=0, max_value=700), max_size=30))
def test_any_chunking_plays_the_same_frames(cuts: list[int]) -> None:
    pcm = _numbered_pcm(12)
    buffer = PlayoutBuffer()
    start = 0
    for size in cuts:
        buffer.push(pcm[start : start + size])
        start = min(len(pcm), start + size)
    buffer.push(pcm[start:])
    frames = [buffer.read_frame() for _ in range(13)]
    assert frames == [_frame(n) for n in range(12)] + [None]


def test_overflow_drops_the_newest_excess_and_counts_it_exactly() -> None:
    buffer = PlayoutBuffer(max_seconds=0.1)  # 5 frames
    assert buffer.max_frames == 5
    buffer.push(_numbered_pcm(7) + b"\x01" * 100)
    assert buffer.frames_in == 5
    assert buffer.dropped_bytes == 2 * FRAME_BYTES + 100
    assert buffer.dropped_frames == 3  # two whole frames and a partial one
    assert [buffer.read_frame() for _ in range(6)] == [_frame(n) for n in range(5)] + [None]


def test_overflow_counts_against_a_carried_partial_frame() -> None:
    buffer = PlayoutBuffer(max_seconds=0.04)  # 2 frames = 640 bytes
    buffer.push(b"\x02" * 100)
    buffer.push(b"\x03" * 1000)  # 540 fit, 460 do not
    assert buffer.dropped_bytes == 460 and buffer.dropped_frames == 2
    assert buffer.frames_in == 2
    assert buffer.read_frame() == b"\x02" * 100 + b"\x03" * 220
    buffer.push(b"\x04" * 10)  # one frame of room again
    assert buffer.dropped_bytes == 460
    assert buffer.read_frame() == b"\x03" * 320
    assert buffer.read_frame() is None and buffer.partial_bytes == 10


def test_full_buffer_drops_every_push_until_read() -> None:
    buffer = PlayoutBuffer(max_seconds=0.02)
    buffer.push(_frame(1))
    buffer.push(_frame(2))
    buffer.push(b"\x00")
    assert buffer.dropped_frames == 2 and buffer.dropped_bytes == FRAME_BYTES + 1
    assert buffer.read_frame() == _frame(1)
    buffer.push(_frame(3))
    assert buffer.read_frame() == _frame(3)


def test_capacity_defaults_to_120_seconds() -> None:
    buffer = PlayoutBuffer()
    assert buffer.max_frames == 6000
    buffer.push(bytes(6001 * FRAME_BYTES))
    assert buffer.frames_in == 6000 and buffer.dropped_frames == 1


def test_bad_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="^max_seconds must be positive$"):
        PlayoutBuffer(max_seconds=0)


def test_flush_partial_pads_with_silence() -> None:
    buffer = PlayoutBuffer()
    buffer.push(b"\x07\x00" * 10)
    buffer.flush_partial()
    assert buffer.frames_in == 1 and buffer.partial_bytes == 0
    assert buffer.read_frame() == b"\x07\x00" * 10 + bytes(FRAME_BYTES - 20)
    buffer.flush_partial()  # nothing carried: nothing queued
    assert buffer.frames_in == 1 and buffer.read_frame() is None


def test_clear_discards_everything_and_returns_the_frame_count() -> None:
    buffer = PlayoutBuffer()
    buffer.push(_numbered_pcm(3) + b"\x01" * 5)
    assert buffer.read_frame() == _frame(0)
    assert buffer.clear() == 2
    assert buffer.cleared_frames == 2
    assert buffer.partial_bytes == 0 and len(buffer) == 0
    assert buffer.read_frame() is None
    assert buffer.dropped_frames == 0  # clearing is asked for, not an overflow
    buffer.push(_frame(9))
    assert buffer.read_frame() == _frame(9)
    assert buffer.frames_in == 4 and buffer.frames_out == 2


def test_mark_is_played_when_the_audio_before_it_has_been_read() -> None:
    buffer = PlayoutBuffer()
    buffer.push(_numbered_pcm(2))
    buffer.mark("first")
    buffer.push(_numbered_pcm(1))
    buffer.mark("second")
    buffer.read_frame()
    assert buffer.take_played_marks() == []
    buffer.read_frame()
    assert buffer.played_marks == ["first"]
    assert buffer.take_played_marks() == ["first"]
    assert buffer.take_played_marks() == []
    buffer.read_frame()
    assert buffer.take_played_marks() == ["second"]
    assert buffer.read_frame() is None and buffer.take_played_marks() == []


def test_mark_on_an_empty_buffer_is_played_at_once() -> None:
    buffer = PlayoutBuffer()
    buffer.mark("now")
    assert buffer.take_played_marks() == ["now"]


def test_marks_at_one_position_are_played_together_in_order() -> None:
    buffer = PlayoutBuffer()
    buffer.push(_frame(1))
    buffer.mark("a")
    buffer.mark("b")
    assert buffer.read_frame() == _frame(1)
    assert buffer.take_played_marks() == ["a", "b"]


def test_mark_pads_a_partial_frame_so_it_does_not_wait_for_more_audio() -> None:
    buffer = PlayoutBuffer()
    buffer.push(b"\x05" * 100)
    buffer.mark("end of prompt")
    assert buffer.frames_in == 1
    assert buffer.read_frame() == b"\x05" * 100 + bytes(220)
    assert buffer.take_played_marks() == ["end of prompt"]


def test_clear_releases_pending_marks() -> None:
    buffer = PlayoutBuffer()
    buffer.push(_numbered_pcm(3))
    buffer.mark("x")
    buffer.push(_numbered_pcm(1))
    buffer.mark("y")
    assert buffer.clear() == 4
    assert buffer.take_played_marks() == ["x", "y"]
    buffer.push(_frame(1))
    buffer.mark("z")
    assert buffer.take_played_marks() == []
    buffer.read_frame()
    assert buffer.take_played_marks() == ["z"]


def test_skip_drops_the_oldest_frames_counts_them_and_releases_passed_marks() -> None:
    buffer = PlayoutBuffer()
    frames = [bytes([n]) * FRAME_BYTES for n in range(5)]
    buffer.push(frames[0] + frames[1])
    buffer.mark("two")
    buffer.push(b"".join(frames[2:]) + b"\x09" * 10)
    assert buffer.skip(3) == 3
    assert buffer.take_played_marks() == ["two"]
    assert buffer.read_frame() == frames[3]
    assert (buffer.skipped_frames, buffer.dropped_frames, buffer.frames_out) == (3, 3, 1)
    # never more than is queued; the partial frame stays
    assert buffer.skip(10) == 1
    assert buffer.skipped_frames == 4
    assert (buffer.queued_frames, buffer.partial_bytes) == (0, 10)
    assert buffer.skip(2) == 0
    assert buffer.dropped_frames == 4


# -- standing backlog of a real-time sender --------------------------------------------
def _run(buffer: PlayoutBuffer, ticks: int, pushes_per_tick: int = 1) -> list[bytes | None]:
    """``ticks`` clock ticks of a real-time sender: push, then the tick reads one frame."""
    heard = []
    for _ in range(ticks):
        for _ in range(pushes_per_tick):
            buffer.push(_frame(len(heard) % 250))
        heard.append(buffer.read_frame())
    return heard


def test_a_real_time_senders_standing_backlog_is_trimmed_to_one_frame() -> None:
    buffer = PlayoutBuffer(trim_window_ticks=50)
    for n in range(4):  # four frames were late once: they stay queued for good
        buffer.push(_frame(n))
    _run(buffer, 49)
    assert buffer.queued_frames == 4 and buffer.trimmed_frames == 0
    _run(buffer, 1)  # the window ends: 4 frames never drained, trimmed to 1
    assert buffer.queued_frames == 1
    assert buffer.trimmed_frames == 3 and buffer.dropped_frames == 3
    _run(buffer, 200)
    assert buffer.queued_frames == 1 and buffer.trimmed_frames == 3  # at target: left alone


def test_a_burst_or_a_prebuffer_is_never_trimmed() -> None:
    buffer = PlayoutBuffer(trim_window_ticks=50)
    buffer.push(b"".join(_frame(n % 250) for n in range(300)))  # a file in one burst
    heard = [buffer.read_frame() for _ in range(300)]
    assert None not in heard and buffer.trimmed_frames == 0
    prebuffered = PlayoutBuffer(trim_window_ticks=50)
    for n in range(10):  # 200 ms queued on purpose, then real time
        prebuffered.push(_frame(n))
    _run(prebuffered, 200)
    assert prebuffered.queued_frames == 10 and prebuffered.trimmed_frames == 0


def test_a_sender_faster_than_real_time_is_not_trimmed() -> None:
    buffer = PlayoutBuffer(trim_window_ticks=50)
    for n in range(3):
        buffer.push(_frame(n))
    _run(buffer, 50, pushes_per_tick=2)  # 2x real time: a TTS burst, not jitter
    assert buffer.trimmed_frames == 0 and buffer.queued_frames == 53


def test_trimming_is_off_by_default_and_releases_passed_marks() -> None:
    plain = PlayoutBuffer()
    for n in range(4):
        plain.push(_frame(n))
    _run(plain, 100)
    assert plain.trimmed_frames == 0 and plain.queued_frames == 4
    buffer = PlayoutBuffer(trim_window_ticks=50)
    buffer.push(_frame(0) + _frame(1) + _frame(2))
    buffer.mark("after-three")
    buffer.push(_frame(3))
    _run(buffer, 50)
    assert buffer.trimmed_frames == 3
    assert buffer.take_played_marks() == ["after-three"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _real_time(
    buffer: PlayoutBuffer, time: FakeTime, arrives_after_tick_s: float, ticks: int
) -> list[float]:
    """A sender pushing one frame per 20 ms, ``arrives_after_tick_s`` after each tick;
    the waits of the frames played (time from push to the tick that read it)."""
    pushed_at: dict[bytes, float] = {}
    waits = []
    for tick in range(ticks):
        time.now = tick * 0.02
        frame = buffer.read_frame()
        if frame in pushed_at:  # not the frame queued before the sender began
            waits.append(round(time.now - pushed_at[frame], 4))
        time.now = tick * 0.02 + arrives_after_tick_s
        frame = _frame(tick % 250)
        pushed_at[frame] = time.now
        buffer.push(frame)
    return waits


def test_a_frame_waiting_more_than_a_period_plus_allowance_is_trimmed() -> None:
    """Arriving 2 ms after a tick with one frame queued: 38 ms of wait, 18 are enough."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.push(_frame(254) + _frame(255))  # one frame standing after tick 0
    waits = _real_time(buffer, time, arrives_after_tick_s=0.002, ticks=200)
    assert buffer.trimmed_frames == 1
    assert waits[0] == 0.038 and set(waits[-100:]) == {0.018}


def test_a_frame_just_ahead_of_its_tick_keeps_its_cushion() -> None:
    """Arriving 12 ms after a tick (8 ms before the next) with one frame queued: 28 ms
    of wait; without the frame it would be 8 ms, less than the allowance: kept."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.push(_frame(254) + _frame(255))
    waits = _real_time(buffer, time, arrives_after_tick_s=0.012, ticks=200)
    assert buffer.trimmed_frames == 0
    assert set(waits[1:]) == {0.028}


def test_nothing_queued_means_nothing_to_trim_whatever_the_wait() -> None:
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    waits = _real_time(buffer, time, arrives_after_tick_s=0.001, ticks=200)
    assert buffer.trimmed_frames == 0 and set(waits) == {0.019}


def test_the_margin_widens_after_a_late_frame_instead_of_trimming_again() -> None:
    """A sender 2 ms after each tick whose frame at tick 150 comes 25 ms late: one gap,
    then the margin is widened and the frame of delay it left is kept, not dropped."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.push(_frame(254) + _frame(255))
    late: bytes | None = None
    gaps = 0
    for tick in range(300):  # the margin takes longer than that to come back down
        time.now = tick * 0.02
        if buffer.read_frame() is None:
            gaps += 1
        time.now = tick * 0.02 + 0.002
        if late is not None:  # 20 ms late: after the tick that should have played it
            buffer.push(late)
            late = None
        if tick == 150:
            late = _frame(tick % 250)
            continue
        buffer.push(_frame(tick % 250))
    assert buffer.trimmed_frames == 1  # the frame standing at the start, nothing after
    assert gaps == 1
    assert buffer.queued_frames == 2  # the newest push and the cushion the gap left
    assert 0.015 < buffer.jitter_allowance_s < 0.035


def test_the_margin_comes_back_down_when_the_jitter_is_gone() -> None:
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.jitter_allowance_s = 0.035
    buffer.push(_frame(254) + _frame(255))
    _real_time(buffer, time, arrives_after_tick_s=0.002, ticks=50 * 30)
    assert buffer.jitter_allowance_s == pytest.approx(0.015)
    assert buffer.trimmed_frames == 1  # once the margin was back under 18 ms


# -- phase moves instead of trims (a reader on the media clock's phase slots) --------------
def _real_time_with_movable_tick(
    buffer: PlayoutBuffer,
    time: FakeTime,
    arrives_after_tick_s: float,
    ticks: int,
    late_s: Callable[[int], float] = lambda n: 0.0,
) -> tuple[list[float], list[bytes | None], list[bytes]]:
    """Like ``_real_time``, but the reader's tick moves earlier when the buffer asks, as
    ``MediaClock.advance`` does (whole 1 ms slots, less than a period). Frame n arrives
    ``late_s(n)`` later than its turn, holding back the frames behind it (as TCP does).
    Returns the waits of the frames played, what each tick played, and what was pushed."""
    requested: list[float] = []

    def advance(seconds: float) -> float:
        applied = min(int(seconds / 0.001 + 1e-6), 19) * 0.001
        requested.append(applied)
        return applied

    buffer.bind_tick_phase(advance)
    pushed_at: dict[bytes, float] = {}
    played: list[bytes | None] = []
    pushed: list[bytes] = []
    waits = []
    next_tick, last_push = 0.0, 0.0
    while len(played) < ticks:
        sent = len(pushed)
        due = max(arrives_after_tick_s + sent * 0.02 + late_s(sent), last_push)
        if due < next_tick:
            time.now = last_push = due
            frame = _frame(sent % 250)
            pushed_at[frame] = due
            pushed.append(frame)
            buffer.push(frame)
            continue
        time.now = next_tick
        frame = buffer.read_frame()
        played.append(frame)
        if frame in pushed_at:
            waits.append(round(next_tick - pushed_at[frame], 4))
        next_tick += 0.02 - sum(requested)
        requested.clear()
    return waits, played, pushed


def test_a_bound_buffer_moves_the_tick_to_the_senders_phase_and_drops_nothing() -> None:
    """Arriving 2 ms after a tick with one frame standing (38 ms of wait, as in the trim
    test above): the tick moves 19 ms, then 15 ms earlier; every frame is played, in
    order, and from then on each waits the 4 ms allowance."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.push(_frame(254) + _frame(255))
    waits, played, pushed = _real_time_with_movable_tick(buffer, time, 0.002, ticks=200)
    assert buffer.trimmed_frames == 0 and buffer.dropped_frames == 0
    assert buffer.phase_advanced_s == pytest.approx(0.034)
    assert waits[0] == 0.038 and set(waits[-100:]) == {0.004}
    heard = [frame for frame in played if frame is not None]
    assert heard == [_frame(254), _frame(255), *pushed[: len(heard) - 2]]  # nothing lost
    assert None not in played


def test_a_bound_buffer_keeps_the_allowance_when_the_phase_is_already_right() -> None:
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    waits, played, _ = _real_time_with_movable_tick(buffer, time, 0.017, ticks=200)
    assert buffer.phase_advanced_s == 0.0 and set(waits) == {0.003}
    assert None not in played[1:]


def test_unbinding_restores_the_trim_and_its_allowance() -> None:
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    buffer.bind_tick_phase(lambda seconds: seconds)
    assert buffer.jitter_allowance_s == pytest.approx(0.004)
    buffer.bind_tick_phase(None)
    assert buffer.jitter_allowance_s == pytest.approx(0.015)
    buffer.push(_frame(254) + _frame(255))
    _real_time(buffer, time, arrives_after_tick_s=0.002, ticks=200)
    assert buffer.trimmed_frames == 1 and buffer.phase_advanced_s == 0.0


def test_a_prebuffer_moves_nothing() -> None:
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    for n in range(10):  # the client keeps 200 ms queued on purpose
        buffer.push(_frame(200 + n))
    _real_time_with_movable_tick(buffer, time, 0.002, ticks=200)
    assert buffer.phase_advanced_s == 0.0 and buffer.queued_frames >= 9


def test_a_late_frame_in_every_window_adds_no_delay_for_good_when_the_tick_moves() -> None:
    """One frame in 40 comes 25 ms late: each leaves a frame standing, and the margin
    widens; the delay never piles up and nothing is dropped."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    waits, _, _ = _real_time_with_movable_tick(
        buffer, time, 0.017, ticks=1500, late_s=lambda n: 0.025 if n % 40 == 39 else 0.0
    )
    assert buffer.dropped_frames == 0
    assert max(waits[-500:]) <= 0.05  # one late frame's hole, never a growing backlog
    assert buffer.queued_frames <= 2


def test_a_window_with_a_late_frame_still_moves_the_tick_on_the_reads_after_it() -> None:
    """A frame 25 ms late at tick 5 leaves one standing; the rest of the window shows
    38 ms waits against a widened 14 ms allowance: the tick moves at once (19 ms, the
    most one window moves), instead of waiting for a window without a late frame."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    moved: list[float] = []
    buffer.bind_tick_phase(lambda seconds: moved.append(seconds) or 0.0)
    for tick in range(50):
        time.now = tick * 0.02
        buffer.read_frame()
        if tick == 5:
            continue  # this tick's frame comes 25 ms late: pushed with the next one
        time.now = tick * 0.02 + 0.002
        buffer.push(_frame(tick) if tick != 6 else _frame(5) + _frame(6))
    assert buffer.jitter_allowance_s == pytest.approx(0.014)
    assert moved == [pytest.approx(0.038 - 0.014)]


def test_a_backlog_grown_past_the_senders_start_is_cut_back_at_once() -> None:
    """A real-time sender with nothing standing, then a hiccup leaves 12 frames queued
    (240 ms): more than a prebuffer it never kept. Cut back to one frame at once, the
    rest of the call is not 240 ms late; a sender that kept 10 from its start keeps them."""
    time = FakeTime()
    buffer = PlayoutBuffer(trim_window_ticks=50, clock=time)
    _real_time_with_movable_tick(buffer, time, 0.017, ticks=100)  # two clean windows
    for n in range(12):
        buffer.push(_frame(100 + n))  # the frames a stall held back, all at once
    assert buffer.queued_frames >= 12
    waits, _, _ = _real_time_with_movable_tick(buffer, time, 0.017, ticks=100)
    assert buffer.trimmed_frames >= 10 and buffer.queued_frames <= 2
    assert max(waits[-40:]) < 0.025
    prebuffered = PlayoutBuffer(trim_window_ticks=50, clock=time)
    for n in range(10):
        prebuffered.push(_frame(200 + n))
    _real_time_with_movable_tick(prebuffered, time, 0.002, ticks=200)
    assert prebuffered.trimmed_frames == 0 and prebuffered.queued_frames >= 9

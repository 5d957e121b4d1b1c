"""The ConferenceMixer with stand-in legs: one ``on_tick`` at a time, exact sample values."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from callstream.errors import ConflictError
from callstream.media.clock import MediaClock
from callstream.media.conference import (
    INBOX_FRAMES,
    PHASE_WINDOW_TICKS,
    STANDING_FRAME_TICKS,
    ConferenceMixer,
)
from callstream.media.frame import FRAME_BYTES, FRAME_SAMPLES
from callstream.media.sources import PcmPlayer
from tests.media.test_bridge import FakeLeg, const, values
from tests.media.test_clock import FakeLoop, run_next


def room(count: int) -> tuple[ConferenceMixer, list[FakeLeg]]:
    mixer = ConferenceMixer()
    legs = [FakeLeg() for _ in range(count)]
    for index, leg in enumerate(legs):
        mixer.add(f"p{index}", leg)
    return mixer, legs


def test_each_participant_hears_everyone_else_and_not_itself() -> None:
    mixer, (a, b, c) = room(3)
    a.hear(const(1000))
    b.hear(const(200))
    c.hear(const(30))
    mixer.on_tick(0.0)
    assert [values(leg.say()) for leg in (a, b, c)] == [{230}, {1030}, {1200}]
    assert [leg.say() for leg in (a, b, c)] == [None, None, None]
    assert mixer.ticks_mixed == 1


def test_mix_minus_is_exact_for_a_large_room_of_real_audio() -> None:
    generator = np.random.default_rng(3)
    mixer, legs = room(50)
    rows = generator.integers(-600, 600, size=(50, FRAME_SAMPLES), dtype=np.int16)
    for leg, row in zip(legs, rows, strict=True):
        leg.hear(row.astype("<i2").tobytes())
    mixer.on_tick(0.0)
    total = rows.astype(np.int64).sum(axis=0)
    for leg, row in zip(legs, rows, strict=True):
        heard = leg.say()
        assert heard is not None
        np.testing.assert_array_equal(np.frombuffer(heard, dtype="<i2"), total - row)


def test_sums_clip_per_listener_after_removing_their_own_voice() -> None:
    mixer, (a, b, c) = room(3)
    a.hear(const(30000))
    b.hear(const(30000))
    c.hear(const(-30000))
    mixer.on_tick(0.0)
    # A hears B + C = 0 exactly, though the room's total (30000) was near the limit;
    # C hears A + B = 60000, clipped rather than wrapped.
    assert [values(leg.say()) for leg in (a, b, c)] == [{0}, {0}, {32767}]


def test_silent_participants_hear_everyone_and_cost_nothing_in_the_mix() -> None:
    mixer, (a, b, c) = room(3)
    a.hear(const(1000))
    b.hear(const(200))
    mixer.on_tick(0.0)
    assert [values(leg.say()) for leg in (a, b, c)] == [{200}, {1000}, {1200}]


def test_a_lone_speaker_hears_nothing_and_the_others_get_its_frame_as_is() -> None:
    mixer, (a, b, c) = room(3)
    voice = const(-4321)
    a.hear(voice)
    mixer.on_tick(0.0)
    assert a.say() is None
    assert b.say() is voice and c.say() is voice


def test_a_tick_where_nobody_speaks_sends_nothing() -> None:
    mixer, legs = room(3)
    heard: list[bytes] = []
    mixer.add_listener(heard.append)
    mixer.on_tick(0.0)
    assert [leg.say() for leg in legs] == [None, None, None]
    assert heard == [] and mixer.ticks_mixed == 0


def test_inbox_keeps_the_newest_frames_only() -> None:
    mixer, (a, b) = room(2)
    for value in range(1, 6):
        a.hear(const(value))
    assert mixer.dropped_frames == 5 - INBOX_FRAMES == 2
    heard = []
    for _ in range(4):
        mixer.on_tick(0.0)
        heard.append(b.say())
    assert [values(frame) for frame in heard[:3]] == [{3}, {4}, {5}]
    assert heard[3] is None


def test_a_frame_left_standing_in_an_inbox_is_trimmed_after_a_window() -> None:
    """Two frames came between two ticks once: from then on ``a`` is heard a period
    late, until a window of ticks shows it standing; then the older frame is dropped."""
    mixer, (a, b) = room(2)
    a.hear(const(1))  # the frame of tick 0 and, early, that of tick 1
    heard = []
    for tick in range(3 * STANDING_FRAME_TICKS):
        a.hear(const(tick + 2))  # one frame a tick from now on
        mixer.on_tick(0.0)
        heard.append(values(b.say()).pop())
    late = STANDING_FRAME_TICKS - 1
    assert heard[:late] == list(range(1, late + 1))  # the previous tick's frame
    # the last late tick mixed the newer frame; the older one (late + 1) is gone
    assert heard[late:] == list(range(late + 2, 3 * STANDING_FRAME_TICKS + 2))
    assert mixer.standing_frames_trimmed == 1
    assert mixer.ticks_mixed == 3 * STANDING_FRAME_TICKS


def test_a_sender_of_two_frames_every_other_tick_loses_nothing() -> None:
    """40 ms packets: the inbox holds a frame after every other tick, never standing."""
    mixer, (a, b) = room(2)
    heard = []
    for tick in range(4 * STANDING_FRAME_TICKS):
        if tick % 2 == 0:
            a.hear(const(tick + 1))
            a.hear(const(tick + 2))
        mixer.on_tick(0.0)
        heard.append(values(b.say()).pop())
    assert heard == list(range(1, 4 * STANDING_FRAME_TICKS + 1))
    assert mixer.standing_frames_trimmed == 0


def test_listeners_get_the_full_mix_on_ticks_where_anyone_spoke() -> None:
    mixer, (a, b, c) = room(3)
    full: list[bytes] = []
    mixer.add_listener(full.append)
    a.hear(const(1))
    b.hear(const(20))
    c.hear(const(300))
    mixer.on_tick(0.0)
    mixer.on_tick(0.02)  # nobody spoke
    b.hear(const(5))
    mixer.on_tick(0.04)  # a lone speaker: the listener gets that frame
    assert [values(frame) for frame in full] == [{321}, {5}]
    mixer.remove_listener(full.append)  # an equal bound method, not the same object
    a.hear(const(1))
    mixer.on_tick(0.06)
    assert len(full) == 2


def test_a_failing_listener_is_removed_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mixer, (a, b) = room(2)

    def broken(frame: bytes) -> None:
        raise RuntimeError("slow websocket")

    full: list[bytes] = []
    mixer.add_listener(broken)
    mixer.add_listener(full.append)
    with caplog.at_level(logging.ERROR, logger="callstream.media"):
        for _ in range(2):
            a.hear(const(10))
            b.hear(const(1))
            mixer.on_tick(0.0)
    assert [values(frame) for frame in full] == [{11}, {11}]
    assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
        f"conference listener {broken!r}"
    ]
    assert values(a.say()) == {1} and values(b.say()) == {10}


def test_sources_are_heard_by_everyone_and_leave_when_done() -> None:
    mixer, (a, b, c) = room(3)
    full: list[bytes] = []
    mixer.add_listener(full.append)
    mixer.add_source(PcmPlayer(const(7) * 2))
    a.hear(const(100))
    b.hear(const(10))
    mixer.on_tick(0.0)
    assert [values(leg.say()) for leg in (a, b, c)] == [{17}, {107}, {117}]
    mixer.on_tick(0.02)  # the source alone: everyone hears it, speakers or not
    assert [values(leg.say()) for leg in (a, b, c)] == [{7}, {7}, {7}]
    mixer.on_tick(0.04)  # played out and removed
    assert [leg.say() for leg in (a, b, c)] == [None, None, None]
    assert [values(frame) for frame in full] == [{117}, {7}]


def test_remove_source_stops_it() -> None:
    mixer, (a,) = room(1)
    source = PcmPlayer(const(9) * 5)
    mixer.add_source(source)
    mixer.on_tick(0.0)
    mixer.remove_source(source)
    mixer.on_tick(0.02)
    assert values(a.say()) == {9}
    assert a.say() is None


def test_remove_mid_call_detaches_only_that_participant() -> None:
    mixer, (a, b, c) = room(3)
    b.add_tap(lambda frame: None)  # b's own tap (a recorder) stays
    b_prompt = PcmPlayer(const(3) * 4)
    b.play(b_prompt)
    a.hear(const(1000))
    b.hear(const(200))  # pending in b's inbox: dropped with b
    assert mixer.remove("p1") is True
    assert mixer.remove("p1") is False
    assert len(mixer) == 2 and "p1" not in mixer and mixer.participant_ids == ("p0", "p2")
    assert len(b.taps) == 1 and b.sources == [b_prompt]
    c.hear(const(30))
    mixer.on_tick(0.0)
    assert values(a.say()) == {30} and values(c.say()) == {1000}
    assert values(b.say()) == {3}  # b's own prompt, nothing from the room


def test_results_do_not_depend_on_join_order() -> None:
    voices = [const(v) for v in (5, -70, 900, 0)]
    heard = []
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        mixer = ConferenceMixer()
        legs = [FakeLeg() for _ in voices]
        for index in order:
            mixer.add(f"p{index}", legs[index])
        for index in order:
            if index != 2:  # p2 stays silent
                legs[index].hear(voices[index])
        mixer.on_tick(0.0)
        heard.append([leg.say() for leg in legs])
    assert heard[0] == heard[1]
    assert [values(frame) for frame in heard[0]] == [{-70}, {5}, {-65}, {-65}]


def test_add_rejects_duplicates_and_a_closed_conference() -> None:
    mixer, (a, _) = room(2)
    with pytest.raises(ConflictError, match="^participant 'p0' is already in the conference$"):
        mixer.add("p0", FakeLeg())
    with pytest.raises(ConflictError, match="^this leg is already in the conference$"):
        mixer.add("other", a)
    with pytest.raises(ValueError, match="^inbox_frames and outbox_frames must be at least 1$"):
        ConferenceMixer(inbox_frames=0)
    mixer.close()
    with pytest.raises(ConflictError, match="^the conference is closed$"):
        mixer.add("p9", FakeLeg())


def test_close_detaches_everyone_and_ticks_do_nothing() -> None:
    mixer, legs = room(3)
    full: list[bytes] = []
    mixer.add_listener(full.append)
    mixer.add_source(PcmPlayer(const(1) * 10))
    mixer.close()
    mixer.close()
    assert mixer.closed and len(mixer) == 0
    assert all(leg.taps == [] and leg.sources == [] for leg in legs)
    mixer.on_tick(0.0)
    assert full == []


def test_frames_of_the_wrong_size_are_left_out() -> None:
    mixer, (a, b, c) = room(3)
    a.hear(const(10))
    b.hear(bytes(FRAME_BYTES - 2))
    c.hear(const(1))
    mixer.on_tick(0.0)
    assert mixer.malformed_frames == 1
    assert [values(leg.say()) for leg in (a, b, c)] == [{1}, {11}, {10}]


# -- the mixer's phase: tick just after the participants' frames -------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_mixer_moves_its_tick_to_just_after_its_participants_frames() -> None:
    """Frames arriving 2 and 7 ms after the mixer's tick wait 18 and 13 ms: the window's
    shortest wait less the 3 ms margin (10 ms) is asked for once per 25 ticks."""
    time = FakeTime()
    moves: list[float] = []
    mixer = ConferenceMixer(clock=time, advance_tick=lambda s: moves.append(s) or s)
    a, b = FakeLeg(), FakeLeg()
    mixer.add("a", a)
    mixer.add("b", b)
    for tick in range(25):
        time.now = tick * 0.02 + 0.002
        a.hear(const(1))
        time.now = tick * 0.02 + 0.007
        b.hear(const(2))
        time.now = (tick + 1) * 0.02
        mixer.on_tick(time.now)
    assert moves == [pytest.approx(0.013 - 0.003)]
    assert mixer.phase_advanced_s == pytest.approx(0.010)


def test_a_mixer_without_a_clock_never_moves_and_both_go_together() -> None:
    mixer, (a, b) = room(2)
    for _ in range(60):
        a.hear(const(1))
        b.hear(const(2))
        mixer.on_tick(0.0)
    assert mixer.phase_advanced_s == 0.0
    with pytest.raises(ValueError, match="go together"):
        ConferenceMixer(clock=FakeTime())


def clocked_room(count: int) -> tuple[FakeLoop, MediaClock, ConferenceMixer, list[FakeLeg]]:
    """A room on a media clock, wired as the call service wires it."""
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    mixer = ConferenceMixer(
        clock=loop.time,
        advance_tick=lambda seconds: clock.advance(mixer, seconds),
        run_early=lambda within_s: clock.run_early(mixer, within_s),
    )
    clock.add(mixer, early=True)
    legs = [FakeLeg() for _ in range(count)]
    for index, leg in enumerate(legs):
        mixer.add(f"p{index}", leg)
    clock.start()
    return loop, clock, mixer, legs


def test_the_room_is_mixed_as_soon_as_every_frame_is_in_not_at_the_tick() -> None:
    loop, clock, mixer, (a, b, c) = clocked_room(3)
    run_next(loop)  # 100.02: nothing yet
    for leg, value, at in ((a, 1, 100.0365), (b, 20, 100.037), (c, 300, 100.0375)):
        loop.now = at
        leg.hear(const(value))
        if leg is not c:
            assert mixer.ticks_mixed == 0  # someone's frame is still to come
    assert mixer.ticks_mixed == 1 and clock.early_runs == 1  # at 100.0375, not 100.04
    assert values(a.say()) == {320} and values(b.say()) == {301} and values(c.say()) == {21}
    assert [when for when, _ in loop.pending] == pytest.approx([100.06])


def test_a_missing_frame_leaves_the_room_to_its_tick_and_a_far_tick_is_not_pulled_in() -> None:
    loop, clock, mixer, (a, b) = clocked_room(2)
    run_next(loop)  # 100.02
    loop.now = 100.038
    a.hear(const(1))  # b is silent this period: the tick mixes a alone
    assert mixer.ticks_mixed == 0
    run_next(loop)  # 100.04
    assert mixer.ticks_mixed == 1 and values(b.say()) == {1}
    loop.now = 100.045  # both in, but the tick is 15 ms away: it is not run a period early
    a.hear(const(1))
    b.hear(const(2))
    assert mixer.ticks_mixed == 1 and clock.early_runs == 0
    run_next(loop)  # 100.06
    assert mixer.ticks_mixed == 2


def test_a_participant_still_holding_a_frame_counts_as_in_and_leaving_recounts() -> None:
    loop, clock, mixer, (a, b, c) = clocked_room(3)
    run_next(loop)  # 100.02
    loop.now = 100.025
    a.hear(const(1))
    a.hear(const(1))  # two frames: one is left after the next tick
    run_next(loop)  # 100.04: a's first frame alone
    loop.now = 100.0575
    b.hear(const(2))
    assert mixer.ticks_mixed == 1  # c is still to come
    mixer.remove("p2")  # c leaves: a (held) and b are everyone
    loop.now = 100.058
    b.hear(const(2))  # not a new arrival in an empty inbox: no early run from this
    assert mixer.ticks_mixed == 1
    run_next(loop)
    assert mixer.ticks_mixed == 2
    loop.now = 100.077
    b.hear(const(2))
    assert mixer.ticks_mixed == 2  # b still held one, a has none: not everyone is in
    a.hear(const(1))
    assert mixer.ticks_mixed == 3 and clock.early_runs == 1


def test_only_ticks_at_their_deadline_judge_the_phase() -> None:
    """Every other period the room is in 4 ms before the tick (an early tick, whose frames
    waited for each other, not for the tick); in the others the last frame comes 5 ms
    before and waits. The window's shortest wait is 5 ms: the tick moves 2 ms earlier."""
    loop, clock, mixer, (a, b) = clocked_room(2)
    run_next(loop)  # 100.02
    for period in range(2, 2 + 2 * PHASE_WINDOW_TICKS):
        deadline = 100.0 + 0.02 * period
        loop.now = deadline - 0.012
        a.hear(const(1))
        loop.now = deadline - (0.004 if period % 2 else 0.005)
        b.hear(const(2))
        if period % 2 == 0:
            run_next(loop)
        if mixer.phase_advanced_s:
            break
    # the window: the first tick and 24 at their deadline, 23 early ones between them
    assert clock.early_runs == PHASE_WINDOW_TICKS - 2
    assert mixer.phase_advanced_s == pytest.approx(0.002)


def test_a_conference_sharing_the_slot_of_one_that_runs_early_moves_out_of_it() -> None:
    """Two rooms tick in slot 0. Room A is in 2 ms before the tick and runs it early;
    that also ticks room B, whose last frame (1 ms before) then misses it and its first
    (10 ms before) waits 8 ms. B's phase judge moves B to 3 ms after its first frame,
    into a slot of its own: from then on each room runs early in its own slot (B with
    the frame that missed, as its first of the period), and no inbox holds more than
    one frame."""
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]

    def room(*names: str) -> tuple[ConferenceMixer, list[FakeLeg]]:
        mixer = ConferenceMixer(
            clock=loop.time,
            advance_tick=lambda seconds: clock.advance(mixer, seconds),
            run_early=lambda within_s: clock.run_early(mixer, within_s),
        )
        clock.add(mixer, early=True)
        legs = [FakeLeg() for _ in names]
        for name, leg in zip(names, legs, strict=True):
            mixer.add(name, leg)
        return mixer, legs

    (room_a, (a1, a2)), (room_b, (b1, b2)) = room("a1", "a2"), room("b1", "b2")
    clock.start()
    arrivals = ((b1, -0.010), (a1, -0.002), (a2, -0.002), (b2, -0.001))
    for period in range(1, 4 * PHASE_WINDOW_TICKS):
        for leg, offset in arrivals:
            when = 100.0 + 0.02 * period + offset
            while loop.pending and loop.pending[0][0] <= when:
                run_next(loop)
            loop.now = when
            leg.hear(const(1))
    assert clock.slot_of(room_a) == 0 and room_a.phase_advanced_s == 0.0
    assert clock.slot_of(room_b) == 13 and room_b.phase_advanced_s == pytest.approx(0.007)
    early_before, fired_before = clock.early_runs, room_b.ticks_mixed
    for leg, offset in arrivals:  # one more period: both rooms run early
        loop.now = 100.0 + 0.02 * 4 * PHASE_WINDOW_TICKS + offset
        assert not loop.pending or loop.pending[0][0] > loop.now
        leg.hear(const(1))
    assert clock.early_runs == early_before + 2 and room_b.ticks_mixed == fired_before + 1
    assert max(len(p.inbox) for mixer in (room_a, room_b) for p in mixer._roster) <= 1

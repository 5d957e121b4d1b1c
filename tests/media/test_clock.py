"""The media clock on a real event loop, checked by tick count and deadlines, not by timing."""

import asyncio
import gc

import pytest

from callstream.media.clock import FullCollectionPauses, MediaClock


class Counter:
    def __init__(self, until: int = 0) -> None:
        self.times: list[float] = []
        self.until = until
        self.reached = asyncio.Event()

    def on_tick(self, now: float) -> None:
        self.times.append(now)
        if len(self.times) == self.until:
            self.reached.set()


class Broken:
    def on_tick(self, now: float) -> None:
        raise RuntimeError("boom")


async def test_ticks_reach_every_listener_and_never_early() -> None:
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop, period=0.005)
    first, second = Counter(until=10), Counter()
    clock.add(first)
    clock.add(second)
    clock.start()
    start = loop.time()
    await asyncio.wait_for(first.reached.wait(), 10)
    clock.stop()
    assert len(second.times) == len(first.times)
    # tick n never runs before start + n * period (deadline-driven, no drift backwards)
    for n, now in enumerate(first.times, start=1):
        assert now >= start + n * 0.005 - 1e-3
    assert not clock.running


async def test_a_failing_listener_is_removed_and_others_go_on() -> None:
    clock = MediaClock(asyncio.get_running_loop(), period=0.002)
    good = Counter(until=3)
    clock.add(Broken())
    clock.add(good)
    clock.start()
    await asyncio.wait_for(good.reached.wait(), 10)
    clock.stop()
    assert len(clock) == 1


class FakeLoop:
    """Unit-test loop: call_at records the callback, time is set by the test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[FakeHandle] = []
        self.soon: list[FakeHandle] = []

    @property
    def pending(self) -> list[tuple[float, object]]:
        """The timers not cancelled, earliest first."""
        live = sorted((h for h in self.timers if not h.cancelled), key=lambda h: h.when)
        return [(handle.when, handle.callback) for handle in live]

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object) -> "FakeHandle":
        handle = FakeHandle(callback, when)
        self.timers.append(handle)
        return handle

    def call_soon(self, callback: object) -> "FakeHandle":
        handle = FakeHandle(callback)
        self.soon.append(handle)
        return handle

    def run_soon(self) -> None:
        """What the loop does after polling its sockets: the queued callbacks."""
        queued, self.soon = self.soon, []
        for handle in queued:
            if not handle.cancelled:
                handle.callback()  # type: ignore[operator]


class FakeHandle:
    def __init__(self, callback: object, when: float = 0.0) -> None:
        self.callback = callback
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def run_next(loop: FakeLoop, lateness: float = 0.0) -> float:
    """Fire the earliest live timer ``lateness`` seconds after its deadline."""
    live = [handle for handle in loop.timers if not handle.cancelled]
    handle = min(live, key=lambda h: h.when)
    loop.timers.remove(handle)
    loop.now = handle.when + lateness
    handle.callback()  # type: ignore[operator]
    return handle.when


def test_deadlines_are_start_plus_n_periods_despite_lateness() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    clock.add(Counter())
    clock.start()
    deadlines = [run_next(loop, lateness=0.007) for _ in range(5)]
    assert deadlines == pytest.approx([100.0 + 0.02 * n for n in range(1, 6)], abs=1e-9)
    assert abs(clock.max_lag - 0.007) < 1e-9


def test_a_long_stall_skips_ticks_instead_of_bursting() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02, max_catch_up=5)  # type: ignore[arg-type]
    counter = Counter()
    clock.add(counter)
    clock.start()
    run_next(loop, lateness=0.5)  # 25 periods late
    assert clock.ticks_skipped == 25
    next_deadline, _ = loop.pending[0]
    assert next_deadline > loop.now
    assert len(counter.times) == 1


class SkipCounter(Counter):
    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[int] = []

    def on_ticks_skipped(self, skipped_ticks: int) -> None:
        self.skipped.append(skipped_ticks)


class BrokenSkip(Counter):
    def on_ticks_skipped(self, skipped_ticks: int) -> None:
        raise RuntimeError("boom")


def test_listeners_are_told_how_many_ticks_were_skipped_before_the_next_tick() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02, max_catch_up=5)  # type: ignore[arg-type]
    told, plain, broken = SkipCounter(), Counter(), BrokenSkip()
    clock.add(broken)
    clock.add(told)
    clock.add(plain)  # no on_ticks_skipped: still ticked
    clock.start()
    run_next(loop, lateness=0.001)
    assert told.skipped == []  # a short lag is caught up, not skipped
    run_next(loop, lateness=0.51)  # 25.5 periods late
    assert told.skipped == [25]
    assert len(told.times) == len(plain.times) == len(broken.times) == 2
    assert clock.ticks_skipped == 25


class FakeTimer:
    """The slice budget's clock: every listener's tick costs ``cost`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Costly(Counter):
    def __init__(self, timer: FakeTimer, cost: float, name: int, order: list[int]) -> None:
        super().__init__()
        self.timer, self.cost, self.name, self.order = timer, cost, name, order

    def on_tick(self, now: float) -> None:
        super().on_tick(now)
        self.timer.now += self.cost
        self.order.append(self.name)


def sliced_clock(count: int, cost: float) -> tuple[FakeLoop, MediaClock, list[Costly], list[int]]:
    loop, timer, order = FakeLoop(), FakeTimer(), []
    clock = MediaClock(loop, period=0.02, slice_budget_s=0.001, timer=timer)  # type: ignore[arg-type]
    listeners = [Costly(timer, cost, n, order) for n in range(count)]
    for listener in listeners:
        clock.add(listener)
    clock.start()
    return loop, clock, listeners, order


def test_a_long_tick_is_cut_into_slices_so_the_loop_can_poll_between_them() -> None:
    loop, clock, listeners, order = sliced_clock(40, cost=0.0001)  # 4 ms of work per tick
    run_next(loop)
    assert order == list(range(16))  # 1.6 ms by the first check: the rest waits
    assert len(loop.soon) == 1
    loop.run_soon()
    assert order == list(range(32))
    loop.run_soon()
    assert order == list(range(40)) and not loop.soon
    assert clock.slices == 2
    first_times = {listener.times[0] for listener in listeners}
    assert len(first_times) == 1  # every slice ticks with the slot's own now
    assert first_times.pop() == pytest.approx(loop.pending[0][0] - 0.02, abs=1e-9)


def test_cheap_ticks_run_in_one_go() -> None:
    loop, clock, _, order = sliced_clock(40, cost=0.00001)  # 0.4 ms
    run_next(loop)
    assert order == list(range(40)) and not loop.soon and clock.slices == 0


def test_a_listener_removed_between_slices_is_not_ticked() -> None:
    loop, clock, listeners, order = sliced_clock(40, cost=0.0001)
    run_next(loop)
    clock.discard(listeners[20])  # its call ended while the loop polled
    loop.run_soon()
    loop.run_soon()
    assert 20 not in order and len(order) == 39


def test_the_next_slot_is_armed_only_once_a_sliced_slot_has_finished() -> None:
    loop, clock, listeners, order = sliced_clock(40, cost=0.0001)
    run_next(loop)
    assert loop.pending == []  # no timer can fire in the middle of a slot's slices
    loop.run_soon()
    loop.run_soon()
    assert order == list(range(40))
    assert loop.pending[0][0] == pytest.approx(100.04)  # the next period's slot 0
    run_next(loop)
    loop.run_soon()
    loop.run_soon()
    assert order == list(range(40)) * 2
    assert all(len(listener.times) == 2 for listener in listeners)


def test_a_late_clock_runs_every_slot_already_due_in_one_callback() -> None:
    """One timer callback per slot would let a busy loop catch up only one slot per
    turn; a late clock runs what is due at once (within the slice budget)."""
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    at_5, at_10, at_0 = Mover(clock, 1, 0.015), Mover(clock, 1, 0.010), Counter()
    for listener in (at_5, at_10, at_0):
        clock.add(listener)
    clock.start()
    run_next(loop)  # period 1, slot 0: the movers move to slots 5 and 10
    assert (clock.slot_of(at_5), clock.slot_of(at_10)) == (5, 10)
    fired = run_next(loop, lateness=0.012)  # slot 5 runs 12 ms late: slot 10 is due too
    assert fired == pytest.approx(100.025)
    assert len(at_5.times) == len(at_10.times) == 2 and len(at_0.times) == 1
    assert at_10.times[1] == pytest.approx(100.037)  # the loop's time when it ran
    assert loop.pending[0][0] == pytest.approx(100.04)  # then slot 0, not yet due


def test_stop_cancels_a_queued_slice() -> None:
    loop, clock, _, order = sliced_clock(40, cost=0.0001)
    run_next(loop)
    clock.stop()
    loop.run_soon()
    assert order == list(range(16))


def test_early_listeners_tick_first_whenever_they_were_added() -> None:
    loop, timer, order = FakeLoop(), FakeTimer(), []
    clock = MediaClock(loop, period=0.02, timer=timer)  # type: ignore[arg-type]
    legs = [Costly(timer, 0.0, n, order) for n in range(3)]
    for leg in legs:
        clock.add(leg)
    mixer = Costly(timer, 0.0, 99, order)
    clock.add(mixer, early=True)  # a conference created after its calls
    clock.start()
    run_next(loop)
    assert order == [99, 0, 1, 2]
    clock.discard(mixer)
    clock.add(Costly(timer, 0.0, 7, order))
    order.clear()
    run_next(loop)
    assert order == [0, 1, 2, 7]


# -- phase slots --------------------------------------------------------------------------
class Mover(Counter):
    """Asks the clock, from its own tick number ``at``, to tick ``seconds`` earlier."""

    def __init__(self, clock: MediaClock, at: int, seconds: float) -> None:
        super().__init__()
        self.clock, self.at, self.seconds = clock, at, seconds
        self.applied: list[float] = []

    def on_tick(self, now: float) -> None:
        super().on_tick(now)
        if len(self.times) == self.at:
            self.applied.append(self.clock.advance(self, self.seconds))


def test_advance_brings_a_listeners_ticks_earlier_by_whole_slots() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    mover = Mover(clock, at=2, seconds=0.0035)
    still = Counter()
    clock.add(mover)
    clock.add(still)
    clock.start()
    while len(still.times) < 5:
        run_next(loop)
    assert mover.applied == [pytest.approx(0.003)]
    assert clock.slot_of(mover) == 17 and clock.slot_of(still) == 0 and clock.moves == 1
    # one tick per period each, the mover's 3 ms earlier from its third tick on
    assert still.times == pytest.approx([100.02, 100.04, 100.06, 100.08, 100.10])
    assert mover.times == pytest.approx([100.02, 100.04, 100.057, 100.077, 100.097])


def test_the_timer_fires_only_at_slots_that_hold_a_listener() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    clock.add(Mover(clock, at=1, seconds=0.005))
    clock.add(Counter())
    clock.start()
    fired = [run_next(loop) for _ in range(5)]
    assert fired == pytest.approx([100.02, 100.035, 100.04, 100.055, 100.06])


def test_advance_is_less_than_a_period_and_nothing_outside_the_listeners_tick() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    greedy, tiny = Mover(clock, at=1, seconds=0.5), Mover(clock, at=1, seconds=0.0004)
    clock.add(greedy)
    clock.add(tiny)
    clock.start()
    run_next(loop)
    assert greedy.applied == [pytest.approx(0.019)] and clock.slot_of(greedy) == 1
    assert tiny.applied == [0.0] and clock.slot_of(tiny) == 0
    assert clock.advance(tiny, 0.005) == 0.0  # between ticks: a move could skip a period
    assert clock.advance(Counter(), 0.005) == 0.0  # not registered
    assert clock.slot_of(tiny) == 0


def test_a_stall_skips_the_same_ticks_for_listeners_in_every_slot() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02, max_catch_up=5)  # type: ignore[arg-type]
    moved, told = Mover(clock, at=1, seconds=0.010), SkipCounter()
    clock.add(moved)
    clock.add(told)
    clock.start()
    run_next(loop)  # both tick at slot 0; moved goes to slot 10
    run_next(loop)  # slot 10: moved
    run_next(loop, lateness=0.505)  # slot 0 of the next period, 25.25 periods late
    assert told.skipped == [25] and clock.ticks_skipped == 25
    assert len(told.times) == 2 and len(moved.times) == 2
    next_deadline, _ = loop.pending[0]
    assert next_deadline > loop.now  # moved's slot, after the stall: no burst
    run_next(loop)
    assert len(moved.times) == 3 and len(told.times) == 2


def test_a_moved_listener_can_be_discarded() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    mover = Mover(clock, at=1, seconds=0.005)
    clock.add(mover)
    clock.start()
    run_next(loop)
    clock.discard(mover)
    assert len(clock) == 0 and clock.slot_of(mover) is None
    run_next(loop)
    assert len(mover.times) == 1


def test_a_follower_ticks_in_its_leaders_slot_after_it() -> None:
    """A conference's legs follow its mixer (``align`` from their own tick): when the
    mixer moves, they move with it in the same period and still tick after it."""
    loop, timer, order = FakeLoop(), FakeTimer(), []
    clock = MediaClock(loop, period=0.02, timer=timer)  # type: ignore[arg-type]

    class Mixer(Costly):
        def on_tick(self, now: float) -> None:
            super().on_tick(now)
            if len(self.times) == 2:
                clock.advance(self, 0.006)

    class FollowingLeg(Costly):
        def on_tick(self, now: float) -> None:
            super().on_tick(now)
            clock.align(self, mixer)

    mixer = Mixer(timer, 0.0, 99, order)
    legs = [FollowingLeg(timer, 0.0, n, order) for n in range(2)]
    for leg in legs:
        clock.add(leg)
    clock.add(mixer, early=True)
    clock.start()
    for _ in range(4):
        run_next(loop)
    assert order == [99, 0, 1] * 4
    assert {clock.slot_of(listener) for listener in (mixer, *legs)} == {14}
    assert mixer.times == pytest.approx([100.02, 100.04, 100.054, 100.074])
    assert legs[0].times == mixer.times


def test_run_early_ticks_the_next_due_slot_now_and_keeps_the_deadlines() -> None:
    """A listener whose input is complete runs its slot (everyone in it) before the
    deadline; the next period's tick is still at start + n * period, not 20 ms later."""
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    hurried, neighbour = Counter(), Counter()
    clock.add(hurried)
    clock.add(neighbour)
    clock.start()
    run_next(loop)  # 100.02
    loop.now = 100.035
    assert not clock.run_early(hurried, 0.004)  # due in 5 ms: too far ahead
    loop.now = 100.037
    assert clock.run_early(hurried, 0.004)
    assert hurried.times[-1] == neighbour.times[-1] == pytest.approx(100.037)
    assert clock.early_runs == 1 and len(hurried.times) == 2
    assert [when for when, _ in loop.pending] == pytest.approx([100.06])
    assert not clock.run_early(hurried, 0.004)  # its next tick is a period away
    run_next(loop)
    assert hurried.times == pytest.approx([100.02, 100.037, 100.06])
    assert neighbour.times == hurried.times


def test_run_early_refuses_another_slot_an_unknown_listener_a_tick_and_a_stopped_clock() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, period=0.02)  # type: ignore[arg-type]
    mover, first = Mover(clock, at=1, seconds=0.005), Counter()
    calls: list[bool] = []

    class Impatient(Counter):
        def on_tick(self, now: float) -> None:
            super().on_tick(now)
            calls.append(clock.run_early(self, 0.02))  # from within a tick

    impatient = Impatient()
    for listener in (mover, first, impatient):
        clock.add(listener)
    clock.start()
    run_next(loop)  # slot 0 at 100.02; mover moves to slot 15
    assert calls == [False]
    loop.now = 100.0349
    assert not clock.run_early(first, 0.02)  # slot 15 is due first, not slot 0
    assert not clock.run_early(Counter(), 0.02)
    assert clock.run_early(mover, 0.001)
    assert len(first.times) == 1 and len(mover.times) == 2
    clock.stop()
    loop.now = 100.0399
    assert not clock.run_early(first, 0.02)
    assert len(first.times) == 1


def test_full_collections_are_counted_and_timed_and_younger_ones_are_not() -> None:
    pauses = FullCollectionPauses()
    pauses.install()
    pauses.install()  # once only
    gc.disable()  # only the collections below: none started by the allocations
    try:
        gc.collect(0)
        gc.collect(1)
        assert pauses.count == 0
        cycles = [[] for _ in range(20_000)]
        for pair in cycles:
            pair.append(pair)  # each list holds itself: only a collection frees it
        del cycles
        gc.collect()
        assert pauses.count == 1
        assert pauses.max_pause_s == pauses.last_pause_s > 0
        gc.collect()
        assert pauses.count == 2
        assert pauses.max_pause_s >= pauses.last_pause_s > 0
    finally:
        gc.enable()
        pauses.uninstall()
    gc.collect()
    assert pauses.count == 2

"""The one media clock: every leg, mixer and stream is driven by its 20 ms tick.

ARCHITECTURE invariant: one clock drives every send; nothing per packet creates a task
or a timer. The clock arms a single ``loop.call_at`` for the next deadline, and the
deadlines are ``start + n * slot`` on the loop's monotonic time, so the tick never
drifts however long the listeners take. If the loop stalls for longer than
``max_catch_up`` periods, the missed ticks are counted and skipped rather than sent
in a burst (a burst of stale audio is worse than a short gap). Listeners that define
``on_ticks_skipped(n)`` are told, before the tick that follows the stall, so that a
paced source (a stream's playout buffer) drops the n frames those ticks would have
played instead of holding them for good as added delay.

**Phase slots.** The period is cut into ``slots`` phases (20 of 1 ms). Every listener
ticks once per period, in its own slot: slot 0 unless it moved. A listener moves itself
earlier with ``advance(listener, seconds)`` from within its own ``on_tick``: a leg whose
WebSocket client sends one frame per 20 ms moves to the slot just after that client's
frames arrive, so a frame waits ~1–5 ms for its tick instead of 0–20 ms (issue 6:
WS→RTP latency, and the standing backlog that phase mismatch leaves, which the playout
used to drop frames to trim). A move only ever brings the listener's next tick earlier
(its peer gets one packet early, which a jitter buffer absorbs); nothing is dropped and
nothing is ticked twice in one period. The timer fires only at slots that hold a listener,
so a clock whose listeners all sit in slot 0 fires once per period as it always did.

**Early runs.** A listener that can tell its tick's input is complete (a conference's
mixer, once every participant's frame of the period is in) asks ``run_early``: if its
slot is the next one due and within a few ms, the slot runs at once instead of at its
deadline. Deadlines do not move, so the next period ticks on time and nothing ticks
twice.

A slot's work is done in slices of about ``slice_budget_s`` (1 ms): when a slice has
used its budget, the rest of the slot's listeners run in a callback queued with
``call_soon``, after the loop has polled its sockets. At 400 calls a tick is several
milliseconds of work, and an RTP packet or WebSocket message arriving at its start would
otherwise wait for all of it (bench/RESULTS.md: RTP→WebSocket p99). The slices of one
slot run in listener order with the slot's ``now``; a listener removed meanwhile (its
call ended between two slices) is not ticked again. The timer for the next slot is armed
only once a slot (with its slices) has finished, so no listener is ever ticked twice at
once; a clock that is behind then runs every slot already due in one go, within the
budget (one slot per turn of a busy loop could leave it behind for good).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Protocol

from callstream.media.frame import FRAME_SECONDS

logger = logging.getLogger("callstream.media")

STALL_WARNING_INTERVAL_S = 10.0
SLICE_BUDGET_S = 0.001
"""Work done in one go before the loop may poll its sockets (see the module docstring)."""
SLOTS_PER_PERIOD = 20
"""Phases a listener can tick at: 1 ms apart in a 20 ms period."""
_LISTENERS_PER_CHECK = 16
"""The budget is checked every this many listeners (a check costs a clock read)."""


def freeze_startup_heap() -> None:
    """Keep the objects made at startup out of every later garbage collection.

    Imports, the migrations and the route table leave some 100 000 long-lived objects;
    each full collection walks them all (25 ms measured on an idle machine, several
    times that on a loaded one), and while it runs no tick is sent. ``gc.freeze``
    moves them to the permanent generation, so collections only walk what calls
    create. Call once, after startup and before the first call.
    """
    gc.collect()
    gc.freeze()


FULL_COLLECTION_AFTER = 1000
"""Generation-1 collections between two full ones at most (CPython's default is 10)."""


def space_out_full_collections() -> None:
    """Run full garbage collections about a hundred times less often.

    CPython starts one after 10 generation-1 collections whenever the objects that
    survived into the oldest generation since the last one exceed a quarter of it,
    which with calls being set up means every few hundred new calls; each pauses the
    loop, so every call's audio, for 35–65 ms at 400 calls (``FullCollectionPauses``),
    long enough for the media clock to skip ticks. After ``FULL_COLLECTION_AFTER``
    generation-1 collections instead (~8 minutes at 400 streams), the quarter rule
    still applies. Reference cycles among young objects, most of them, are still
    collected as often as before; those that reached the oldest generation wait
    longer (a few MB at most between two full collections at 2 new calls a second).
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


class FullCollectionPauses:
    """Times every full (generation 2) garbage collection of the process.

    A full collection walks every tracked object that is not frozen, so its pause grows
    with the calls in progress (~230 objects per streamed call; 35–65 ms measured at
    400 calls on the bench machine), and while it runs the loop sends no tick. CPython
    starts one whenever the objects that survived into the oldest generation since the
    last one exceed a quarter of it: with calls coming and going, every few hundred new
    calls. These figures (on ``/healthz``) tell a stall it caused from any other.
    """

    def __init__(self) -> None:
        self.count = 0
        self.max_pause_s = 0.0
        self.last_pause_s = 0.0
        self._started_at: float | None = None

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started_at = time.perf_counter()
        elif self._started_at is not None:
            pause = time.perf_counter() - self._started_at
            self._started_at = None
            self.count += 1
            self.last_pause_s = pause
            self.max_pause_s = max(self.max_pause_s, pause)


class TickListener(Protocol):
    def on_tick(self, now: float) -> None:
        """Produce and send this tick's audio. Must not block or raise."""


class SkipListener(Protocol):
    def on_ticks_skipped(self, skipped_ticks: int) -> None:
        """``skipped_ticks`` ticks were skipped after a stall. Optional on a listener."""


class _Slot:
    """The listeners of one phase of the period, in the order they tick."""

    __slots__ = ("listeners", "early", "snapshot")

    def __init__(self) -> None:
        self.listeners: dict[int, TickListener] = {}
        self.early: set[int] = set()
        self.snapshot: tuple[TickListener, ...] = ()

    def add(self, listener: TickListener, early: bool) -> None:
        self.listeners[id(listener)] = listener
        if early:
            self.early.add(id(listener))
        self._order()

    def remove(self, key: int) -> None:
        del self.listeners[key]
        self.early.discard(key)
        self._order()

    def _order(self) -> None:
        listeners = self.listeners
        if not self.early:
            self.snapshot = tuple(listeners.values())
            return
        early = [listener for key, listener in listeners.items() if key in self.early]
        rest = [listener for key, listener in listeners.items() if key not in self.early]
        self.snapshot = (*early, *rest)


class MediaClock:
    """Calls ``on_tick(now)`` on every registered listener every ``period`` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        period: float = FRAME_SECONDS,
        slots: int = SLOTS_PER_PERIOD,
        max_catch_up: int = 5,
        slice_budget_s: float = SLICE_BUDGET_S,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._loop = loop
        self._slice_budget_s = slice_budget_s
        self._timer = timer
        # The slot in progress, when its listeners did not fit in one slice.
        self._slice_handle: asyncio.Handle | None = None
        self._slice_listeners: tuple[TickListener, ...] = ()
        self._slice_next = 0
        self._slice_now = 0.0
        self.slices = 0
        """Continuation slices run so far (slots that needed more than one)."""
        self.period = period
        self.slot_count = slots
        self.slot_seconds = period / slots
        self._max_catch_up = max_catch_up
        self._slots = [_Slot() for _ in range(slots)]
        self._slot_of: dict[int, int] = {}
        """Each listener's slot, by ``id``."""
        self._handle: asyncio.TimerHandle | None = None
        self._started = False
        self._armed_slot = 0
        """The absolute slot number (``start + n * slot``) the timer is armed for."""
        self._current_slot = 0
        """The absolute slot number whose listeners run (or last ran)."""
        self._start = 0.0
        self.ticks_skipped = 0
        self.max_lag = 0.0
        """Largest lateness of a tick seen so far, in seconds (event-loop lag)."""
        self.stalls = 0
        """How many times ticks were skipped (each stall counts once)."""
        self.moves = 0
        """Listeners moved to an earlier slot so far (``advance``)."""
        self.early_runs = 0
        """Slots run before their deadline because their input was complete (``run_early``)."""
        self._ticking: TickListener | None = None
        """The listener whose ``on_tick`` runs now (the only one ``advance`` moves)."""
        self._next_stall_warning = 0.0

    @property
    def running(self) -> bool:
        return self._started

    def add(self, listener: TickListener, *, early: bool = False) -> None:
        """Tick ``listener`` from the next period on, in slot 0.

        ``early`` listeners are ticked before all others of their slot, whenever they
        were added: a conference's mixer must fill its participants' outboxes before
        their legs read them, or every mixed frame waits one tick more (20 ms) when the
        conference was created after the calls joining it.
        """
        self.discard(listener)
        self._slot_of[id(listener)] = 0
        self._slots[0].add(listener, early)
        self._arm()

    def discard(self, listener: TickListener) -> None:
        slot = self._slot_of.pop(id(listener), None)
        if slot is not None:
            self._slots[slot].remove(id(listener))

    def slot_of(self, listener: TickListener) -> int | None:
        """The phase slot ``listener`` ticks in (0 … slots-1), None when not registered."""
        return self._slot_of.get(id(listener))

    def advance(self, listener: TickListener, seconds: float) -> float:
        """Bring ``listener``'s ticks ``seconds`` earlier from now on; the seconds applied.

        Only from the listener's own ``on_tick``: its next tick then comes after
        ``period - applied`` instead of ``period``. The move is rounded down to whole
        slots and is less than one period; 0.0 when that rounds to nothing, when the
        listener is not registered, or when called outside its tick (a move then could
        make it miss a period).
        """
        key = id(listener)
        slot = self._slot_of.get(key)
        if slot is None or listener is not self._ticking:
            return 0.0
        # a hair of tolerance: 0.003 / 0.001 must give 3 slots, not 2.9999…
        moved = min(int(seconds / self.slot_seconds + 1e-6), self.slot_count - 1)
        if moved <= 0:
            return 0.0
        new_slot = (slot - moved) % self.slot_count
        entry = self._slots[slot].listeners[key]
        early = key in self._slots[slot].early
        self._slots[slot].remove(key)
        self._slots[new_slot].add(entry, early)
        self._slot_of[key] = new_slot
        self.moves += 1
        self._arm()
        return moved * self.slot_seconds

    def align(self, listener: TickListener, leader: object) -> float:
        """Move ``listener`` (from its own tick) into ``leader``'s slot; the seconds moved.

        A listener that must tick after another in the same period (a conference's
        legs after its mixer, which moves) follows it with this on each of its ticks.
        """
        mine = self._slot_of.get(id(listener))
        theirs = self._slot_of.get(id(leader))
        if mine is None or theirs is None or mine == theirs:
            return 0.0
        return self.advance(listener, ((mine - theirs) % self.slot_count) * self.slot_seconds)

    def run_early(self, listener: TickListener, within_s: float) -> bool:
        """Run ``listener``'s slot now, before its deadline; True if it ran.

        For a listener that can tell its tick's input is complete (a conference mixer
        with every participant's frame in): its slot runs at once if it is the next
        slot due and its deadline is at most ``within_s`` away, so the tick is neither
        doubled nor moved: the next period's deadline stays where it was. Everything in
        that slot ticks with it (a mixer's legs follow its slot). Refused while any slot
        runs (a listener's own tick can deliver frames), and for an unregistered
        listener or a stopped clock.
        """
        handle = self._handle
        if handle is None or self._slice_handle is not None or self._ticking is not None:
            return False
        slot = self._slot_of.get(id(listener))
        if slot is None or self._armed_slot % self.slot_count != slot:
            return False
        if self._deadline(self._armed_slot) - self._loop.time() > within_s:
            return False
        handle.cancel()
        self._handle = None
        self.early_runs += 1
        self._run_due(self._armed_slot, self._timer() + self._slice_budget_s)
        return True

    def __len__(self) -> int:
        return len(self._slot_of)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._start = self._loop.time()
        self._current_slot = 0
        self._arm_at(self._next_occupied())

    def stop(self) -> None:
        self._started = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._slice_handle is not None:
            self._slice_handle.cancel()
            self._slice_handle = None

    def _next_occupied(self) -> int:
        """The first absolute slot after the current one that has listeners (or the
        next period's slot 0 when none has)."""
        current = self._current_slot
        count = self.slot_count
        slots = self._slots
        for ahead in range(1, count + 1):
            if slots[(current + ahead) % count].listeners:
                return current + ahead
        return current + count - current % count

    def _arm(self) -> None:
        """Re-arm the timer if a listener now sits in a slot due before the armed one.

        Not while slots run (no timer is armed then): the run arms when it ends.
        """
        if self._handle is None:
            return
        wanted = self._next_occupied()
        if wanted < self._armed_slot:
            self._handle.cancel()
            self._arm_at(wanted)

    def _arm_at(self, slot: int) -> None:
        self._armed_slot = slot
        self._handle = self._loop.call_at(self._deadline(slot), self._fire)

    def _deadline(self, absolute_slot: int) -> float:
        period, slot = divmod(absolute_slot, self.slot_count)
        return self._start + period * self.period + slot * self.slot_seconds

    def _fire(self) -> None:
        self._handle = None
        if self._slice_handle is not None:  # defensive: a slot's slices always run first
            self._slice_handle.cancel()
            self._slice_handle = None
            self._run_listeners(self._slice_listeners, self._slice_next, self._slice_now, None)
        self._run_due(self._armed_slot, self._timer() + self._slice_budget_s)

    def _run_due(self, slot: int, until: float) -> None:
        """Run ``slot``, then every later slot already due while the budget lasts.

        A loop that is behind runs several slots in one go: with one timer callback
        per slot, the clock could only catch up one slot per turn of the loop, and under
        load (a turn of several milliseconds) it fell behind for good (bench: 50–100 ms
        of steady lag at 400 streams, until a stall skipped ticks).
        """
        loop = self._loop
        while True:
            now = loop.time()
            slot = self._check_lag(slot, now)
            self._current_slot = slot
            listeners = self._slots[slot % self.slot_count].snapshot
            if not self._run_listeners(listeners, 0, now, until):
                return  # the rest runs in a queued slice, which goes on from there
            slot = self._next_occupied()
            if self._deadline(slot) > loop.time() or self._timer() > until:
                if self._started:
                    self._arm_at(slot)
                return

    def _check_lag(self, slot: int, now: float) -> int:
        """Record how late ``slot`` runs; after a stall, the same phase whole periods on."""
        lag = now - self._deadline(slot)
        if lag > self.max_lag:
            self.max_lag = lag
        if lag <= self._max_catch_up * self.period:
            return slot
        skipped = int(lag / self.period)
        self.ticks_skipped += skipped
        self.stalls += 1
        self._warn_stall(now, lag, skipped)
        self._notify_skipped(skipped)
        return slot + skipped * self.slot_count

    def _run_listeners(
        self, listeners: tuple[TickListener, ...], first: int, now: float, until: float | None
    ) -> bool:
        """Tick ``listeners[first:]``; past ``until`` (timer), queue the rest as a slice
        and return False."""
        count = len(listeners)
        registered = self._slot_of
        continuing = first > 0
        index = first
        while index < count:
            listener = listeners[index]
            index += 1
            if continuing and id(listener) not in registered:
                continue
            self._ticking = listener
            try:
                listener.on_tick(now)
            except Exception:  # one broken leg must not silence the others
                logger.exception("tick listener %r failed; removing it", listener)
                self.discard(listener)
            self._ticking = None
            if (
                until is not None
                and index % _LISTENERS_PER_CHECK == 0
                and index < count
                and self._timer() > until
            ):
                self._slice_listeners = listeners
                self._slice_next = index
                self._slice_now = now
                self._slice_handle = self._loop.call_soon(self._next_slice)
                return False
        return True

    def _next_slice(self) -> None:
        self._slice_handle = None
        self.slices += 1
        listeners, first = self._slice_listeners, self._slice_next
        until = self._timer() + self._slice_budget_s
        if not self._run_listeners(listeners, first, self._slice_now, until):
            return
        self._slice_listeners = ()  # do not keep ended calls' legs alive
        if not self._started:
            return
        slot = self._next_occupied()
        if self._deadline(slot) <= self._loop.time() and self._timer() <= until:
            self._run_due(slot, until)
        else:
            self._arm_at(slot)

    def _warn_stall(self, now: float, lag: float, skipped: int) -> None:
        """Log a stall: the audio of every call had a gap. At most one line per 10 s."""
        if now < self._next_stall_warning:
            return
        self._next_stall_warning = now + STALL_WARNING_INTERVAL_S
        logger.warning(
            "media clock stalled %.0f ms: skipped %d ticks (%d stalls, %d ticks so far); "
            "the event loop was blocked or the machine overloaded",
            lag * 1000,
            skipped,
            self.stalls,
            self.ticks_skipped,
        )

    def _notify_skipped(self, skipped_ticks: int) -> None:
        for slot in self._slots:
            for listener in slot.snapshot:
                on_ticks_skipped = getattr(listener, "on_ticks_skipped", None)
                if on_ticks_skipped is None:
                    continue
                try:
                    on_ticks_skipped(skipped_ticks)
                except Exception:  # like on_tick: one broken leg must not silence the others
                    logger.exception("tick listener %r failed on skipped ticks", listener)

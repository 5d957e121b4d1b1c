"""The one media clock: every leg, mixer and stream is driven by its 20 ms tick.

ARCHITECTURE invariant: one clock drives every send; nothing per packet creates a task
or a timer. The clock arms a single ``loop.call_at`` for the next deadline, and the
deadlines are ``start + n * period`` on the loop's monotonic time, so the tick never
drifts however long the listeners take. If the loop stalls for longer than
``max_catch_up`` periods, the missed ticks are counted and skipped rather than sent
in a burst (a burst of stale audio is worse than a short gap). Listeners that define
``on_ticks_skipped(n)`` are told, before the tick that follows the stall, so that a
paced source (a stream's playout buffer) drops the n frames those ticks would have
played instead of holding them for good as added delay.

A tick's work is done in slices of about ``slice_budget_s`` (1 ms): when a slice has
used its budget, the rest of the listeners run in a callback queued with ``call_soon``,
after the loop has polled its sockets. At 400 calls a tick is several milliseconds of
work, and an RTP packet or WebSocket message arriving at its start would otherwise wait
for all of it (bench/RESULTS.md: RTP→WebSocket p99). The slices of one tick run in
listener order with the tick's ``now``; a listener removed meanwhile (its call ended
between two slices) is not ticked again. A tick whose slices are still queued when the
next one is due is finished first, so no listener is ever ticked twice at once.
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


class TickListener(Protocol):
    def on_tick(self, now: float) -> None:
        """Produce and send this tick's audio. Must not block or raise."""


class SkipListener(Protocol):
    def on_ticks_skipped(self, skipped_ticks: int) -> None:
        """``skipped_ticks`` ticks were skipped after a stall. Optional on a listener."""


class MediaClock:
    """Calls ``on_tick(now)`` on every registered listener every ``period`` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        period: float = FRAME_SECONDS,
        max_catch_up: int = 5,
        slice_budget_s: float = SLICE_BUDGET_S,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._loop = loop
        self._slice_budget_s = slice_budget_s
        self._timer = timer
        # The tick in progress, when its listeners did not fit in one slice.
        self._slice_handle: asyncio.Handle | None = None
        self._slice_listeners: tuple[TickListener, ...] = ()
        self._slice_next = 0
        self._slice_now = 0.0
        self.slices = 0
        """Continuation slices run so far (ticks that needed more than one)."""
        self.period = period
        self._max_catch_up = max_catch_up
        self._listeners: dict[int, TickListener] = {}
        self._early: set[int] = set()
        self._snapshot: tuple[TickListener, ...] = ()
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self.ticks = 0
        self.ticks_skipped = 0
        self.max_lag = 0.0
        """Largest lateness of a tick seen so far, in seconds (event-loop lag)."""
        self.stalls = 0
        """How many times ticks were skipped (each stall counts once)."""
        self._next_stall_warning = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def add(self, listener: TickListener, *, early: bool = False) -> None:
        """Tick ``listener`` from the next tick on.

        ``early`` listeners are ticked before all others, whenever they were added: a
        conference's mixer must fill its participants' outboxes before their legs read
        them, or every mixed frame waits one tick more (20 ms) when the conference was
        created after the calls joining it.
        """
        self._listeners[id(listener)] = listener
        if early:
            self._early.add(id(listener))
        self._snapshot = self._ordered()

    def discard(self, listener: TickListener) -> None:
        if self._listeners.pop(id(listener), None) is not None:
            self._early.discard(id(listener))
            self._snapshot = self._ordered()

    def _ordered(self) -> tuple[TickListener, ...]:
        listeners = self._listeners
        if not self._early:
            return tuple(listeners.values())
        early = [listener for key, listener in listeners.items() if key in self._early]
        rest = [listener for key, listener in listeners.items() if key not in self._early]
        return (*early, *rest)

    def __len__(self) -> int:
        return len(self._listeners)

    def start(self) -> None:
        if self._handle is not None:
            return
        self._start = self._loop.time()
        self.ticks = 0
        self._handle = self._loop.call_at(self._start + self.period, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._slice_handle is not None:
            self._slice_handle.cancel()
            self._slice_handle = None

    def _tick(self) -> None:
        if self._slice_handle is not None:  # the last tick is not done: finish it first
            self._slice_handle.cancel()
            self._slice_handle = None
            self._run_listeners(self._slice_listeners, self._slice_next, self._slice_now, None)
        now = self._loop.time()
        self.ticks += 1
        deadline = self._start + self.ticks * self.period
        lag = now - deadline
        if lag > self.max_lag:
            self.max_lag = lag
        if lag > self._max_catch_up * self.period:
            skipped = int(lag / self.period)
            self.ticks += skipped
            self.ticks_skipped += skipped
            self.stalls += 1
            deadline += skipped * self.period
            self._warn_stall(now, lag, skipped)
            self._notify_skipped(skipped)
        self._handle = self._loop.call_at(deadline + self.period, self._tick)
        self._run_listeners(self._snapshot, 0, now, self._timer() + self._slice_budget_s)

    def _run_listeners(
        self, listeners: tuple[TickListener, ...], first: int, now: float, until: float | None
    ) -> None:
        """Tick ``listeners[first:]``; past ``until`` (timer), queue the rest as a slice."""
        count = len(listeners)
        registered = self._listeners
        continuing = first > 0
        index = first
        while index < count:
            listener = listeners[index]
            index += 1
            if continuing and id(listener) not in registered:
                continue
            try:
                listener.on_tick(now)
            except Exception:  # one broken leg must not silence the others
                logger.exception("tick listener %r failed; removing it", listener)
                self.discard(listener)
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
                return

    def _next_slice(self) -> None:
        self._slice_handle = None
        self.slices += 1
        listeners, first = self._slice_listeners, self._slice_next
        self._run_listeners(listeners, first, self._slice_now, self._timer() + self._slice_budget_s)
        if self._slice_handle is None:
            self._slice_listeners = ()  # do not keep ended calls' legs alive

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
        for listener in self._snapshot:
            on_ticks_skipped = getattr(listener, "on_ticks_skipped", None)
            if on_ticks_skipped is None:
                continue
            try:
                on_ticks_skipped(skipped_ticks)
            except Exception:  # like on_tick: one broken leg must not silence the others
                logger.exception("tick listener %r failed on skipped ticks", listener)

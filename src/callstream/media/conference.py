"""The conference mixer: N participants, each hearing everyone but themselves.

A ``ConferenceMixer`` is a tick listener on the one media clock. Each participant's leg
gets a tap that drops what the leg hears into a tiny *inbox*, and a source (its
*outbox*) that the leg mixes into what it says. On every tick the mixer:

1. takes at most one frame from each inbox. The participants that had one are this
   tick's *speakers*; the others cost nothing in the mix. Inboxes keep at most a few
   frames and drop the oldest, so a sender whose clock runs fast cannot build latency;
   a frame left *standing* in an inbox after every tick for ``STANDING_FRAME_TICKS``
   (two frames arrived between two ticks once, e.g. around a late tick, and since then
   this participant is heard a period late) is dropped, the older of the two, and the
   newer is mixed at once (``FrameQueue``'s ``trim_standing_after``;
   ``standing_frames_trimmed``): one 20 ms gap instead of 20 ms more delay for the
   rest of the call. A standing frame also keeps itself:
   its inbox counts as in for the early mix (below), so the room can be mixed before
   that participant's frame of the period arrives;
2. reads one frame from each injected source (``add_source``: audio every participant
   hears, e.g. a stream playing into the conference);
3. computes, with one numpy pass over the whole room (``mixer.mix_minus``), the total
   of speakers and sources and, for each speaker, the total minus their own frame
   ("mix-minus", a.k.a. N-1), clipped to 16 bits once;
4. pushes each speaker's mix-minus into their outbox, the full mix into the outbox of
   each participant who did not speak, and hands the full mix to every listener
   (``add_listener``: the conference's own stream, recordings).

A participant who is the only one speaking is sent nothing (their leg says comfort
silence or its own sources). A tick where nobody speaks and no source plays sends
nothing at all. Listeners and sources cost nothing when there are none.

The work per tick follows the order participants were added in, but nothing depends on
that order: each output is computed from this tick's frames only.

**Phase.** Given the loop's ``clock`` and an ``advance_tick`` (``MediaClock.advance`` on
the mixer), the mixer notes when each participant's frame arrived and, every
``PHASE_WINDOW_TICKS``, moves its tick earlier by what the window's shortest wait exceeds
``PHASE_MARGIN_S``: every participant's frame still arrives at least that far ahead, and
the frames of a room whose senders cluster in phase wait a few ms instead of up to a
period. Its participants' legs follow it into its slot (``Leg.follow_tick_of``), after
it, so they still send each tick's mix in the tick it is made. bench conference,
alternated in one sitting: p99 22.9–24.2 ms before, 19.4–20.5 after.

**Early mix.** The margin is for the frame that comes late; when none does, it is
only delay. Given ``run_early`` (``MediaClock.run_early`` on the mixer), the mixer
counts the participants whose inbox holds a frame, and when the last of them arrives
it asks for its tick at once, if the tick is due within ``MIX_EARLY_WITHIN_S``: the
room is mixed and sent (its legs tick in the mixer's slot) as soon as every frame of
the period is in, and at the latest at the tick, which stays where the phase put it.
A frame then waits for the room's last frame of the period, not for that plus the
margin. A participant who sends nothing (on hold, or a phone with silence
suppression) leaves the room to its tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from callstream.errors import ConflictError
from callstream.media.bridge import LegAudio
from callstream.media.frame import FRAME_BYTES, FRAME_SECONDS, SILENCE
from callstream.media.mixer import mix_minus
from callstream.media.sources import AudioSource, FrameQueue

logger = logging.getLogger("callstream.media")

FrameListener = Callable[[bytes], None]

INBOX_FRAMES = 3
"""At most 60 ms of a participant's voice waits to be mixed."""
OUTBOX_FRAMES = 3
"""At most 60 ms of mixed audio waits for the participant's leg to send it."""


PHASE_WINDOW_TICKS = 25
"""The mixer judges its phase every 0.5 s..."""
STANDING_FRAME_TICKS = 25
"""A frame left in an inbox after every tick for this long (0.5 s) is trimmed. A
sender whose packets carry 40 ms (two frames at once) empties its inbox every other
tick, so is never trimmed."""
PHASE_MARGIN_S = 0.003
"""...and keeps every participant's frame at least this far ahead of its tick."""
MIX_EARLY_WITHIN_S = PHASE_MARGIN_S + 0.0015
"""Once every participant's frame is in, the tick runs early if it is due within this:
the margin and the 1 ms slot it is rounded to, never a whole period early."""


class _Participant:
    __slots__ = (
        "participant_id",
        "leg",
        "inbox",
        "outbox",
        "tap",
        "clock",
        "pushed_at",
        "filled",
    )

    def __init__(
        self,
        participant_id: str,
        leg: LegAudio,
        inbox_frames: int,
        outbox_frames: int,
        clock: Callable[[], float] | None,
        filled: Callable[[], None],
    ) -> None:
        self.participant_id = participant_id
        self.leg = leg
        self.inbox = FrameQueue(inbox_frames, trim_standing_after=STANDING_FRAME_TICKS)
        self.outbox = FrameQueue(outbox_frames)
        self.clock = clock
        self.pushed_at = 0.0
        self.filled = filled
        """Called when a frame lands in the empty inbox: the mixer counts who is in."""
        # The one bound method, so remove_tap finds exactly what add_tap got.
        self.tap: FrameListener = self.inbox.push if clock is None else self._timed_push

    def _timed_push(self, frame: bytes) -> None:
        assert self.clock is not None
        self.pushed_at = self.clock()
        was_empty = not self.inbox
        self.inbox.push(frame)
        if was_empty:
            self.filled()


class ConferenceMixer:
    """Mixes N participants' legs on each media-clock tick (a ``TickListener``).

    The owner adds the mixer to the clock with ``clock.add(mixer, early=True)`` (so it
    mixes before the legs read their outboxes) and discards it after ``close()``; the
    owner also removes a participant whose call has ended.
    """

    def __init__(
        self,
        *,
        inbox_frames: int = INBOX_FRAMES,
        outbox_frames: int = OUTBOX_FRAMES,
        clock: Callable[[], float] | None = None,
        advance_tick: Callable[[float], float] | None = None,
        run_early: Callable[[float], bool] | None = None,
    ) -> None:
        if inbox_frames < 1 or outbox_frames < 1:
            raise ValueError("inbox_frames and outbox_frames must be at least 1")
        if (clock is None) != (advance_tick is None):
            raise ValueError("clock and advance_tick go together")
        if run_early is not None and clock is None:
            raise ValueError("run_early needs clock and advance_tick")
        self._clock = clock
        self._advance_tick = advance_tick
        """Given: the mixer moves its tick to just after its participants' frames."""
        self._run_early = run_early
        """Given: the mixer's tick runs as soon as every participant's frame is in."""
        self._filled = 0
        """Participants whose inbox holds a frame (counted at the tick, then per arrival)."""
        self._running_early = False
        """True while the tick that the last arrival asked for runs."""
        self._window_ticks = 0
        self._window_min_wait = float("inf")
        self.phase_advanced_s = 0.0
        self._inbox_frames = inbox_frames
        self._outbox_frames = outbox_frames
        self._participants: dict[str, _Participant] = {}
        self._roster: tuple[_Participant, ...] = ()
        """The participants in the order they joined; rebuilt on add/remove only."""
        self._listeners: tuple[FrameListener, ...] = ()
        self._sources: tuple[AudioSource, ...] = ()
        self._closed = False
        # Reused every tick, so a tick allocates only the frames it sends.
        self._speakers: list[_Participant] = []
        self._silent: list[_Participant] = []
        self._frames: list[bytes] = []
        self.ticks_mixed = 0
        """Ticks on which anyone spoke or a source played."""
        self.malformed_frames = 0
        """Frames that were not one canonical 20 ms frame, left out of the mix."""
        self._trimmed_by_departed = 0
        """``standing_frames_trimmed`` of the participants who left."""

    # -- membership -------------------------------------------------------------------------
    def add(self, participant_id: str, leg: LegAudio) -> None:
        """Join a leg: from the next tick it hears the others and they hear it.

        Raises ``ConflictError`` if the conference is closed, the id is taken, or the
        leg is already a participant (it would hear itself).
        """
        if self._closed:
            raise ConflictError("the conference is closed")
        if participant_id in self._participants:
            raise ConflictError(f"participant {participant_id!r} is already in the conference")
        if any(member.leg is leg for member in self._roster):
            raise ConflictError("this leg is already in the conference")
        participant = _Participant(
            participant_id,
            leg,
            self._inbox_frames,
            self._outbox_frames,
            self._clock,
            self._participant_filled,
        )
        self._participants[participant_id] = participant
        self._roster = (*self._roster, participant)
        leg.play(participant.outbox)
        leg.add_tap(participant.tap)
        follow = getattr(leg, "follow_tick_of", None)
        if follow is not None and self._advance_tick is not None:
            follow(self)  # its leg ticks in the mixer's slot, wherever the mixer moves

    def remove(self, participant_id: str) -> bool:
        """Detach a participant's leg (its other taps and sources stay).

        Returns False if there was no such participant.
        """
        participant = self._participants.pop(participant_id, None)
        if participant is None:
            return False
        self._roster = tuple(p for p in self._roster if p is not participant)
        self._count_filled()
        self._trimmed_by_departed += participant.inbox.standing_trimmed
        participant.leg.remove_tap(participant.tap)
        participant.leg.stop(participant.outbox)
        follow = getattr(participant.leg, "follow_tick_of", None)
        if follow is not None:
            follow(None)
        participant.inbox.clear()
        participant.outbox.clear()
        return True

    def __len__(self) -> int:
        return len(self._roster)

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._participants

    @property
    def participant_ids(self) -> tuple[str, ...]:
        """The participants' ids in the order they joined."""
        return tuple(p.participant_id for p in self._roster)

    @property
    def dropped_frames(self) -> int:
        """Frames the current participants' inboxes dropped (their senders ran ahead)."""
        return sum(p.inbox.dropped_frames for p in self._roster)

    @property
    def standing_frames_trimmed(self) -> int:
        """Frames dropped from inboxes that held one frame too many for
        ``STANDING_FRAME_TICKS`` (each took away a period of delay), those of
        participants who left included."""
        return self._trimmed_by_departed + sum(p.inbox.standing_trimmed for p in self._roster)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach every participant, listener and source; later ticks do nothing."""
        self._closed = True
        for participant in self._roster:
            self.remove(participant.participant_id)
        self._listeners = ()
        self._sources = ()

    # -- listeners and sources -----------------------------------------------------------------
    def add_listener(self, callback: FrameListener) -> None:
        """``callback(frame)`` gets the full mix (participants and sources) of each tick
        where anyone spoke. It runs on the clock's tick: it must be quick and not block.
        """
        if not self._closed:
            self._listeners = (*self._listeners, callback)

    def remove_listener(self, callback: FrameListener) -> None:
        # ==, not is: each ``obj.method`` access makes a new but equal bound method.
        self._listeners = tuple(item for item in self._listeners if item != callback)

    def add_source(self, source: AudioSource) -> None:
        """Audio every participant hears; removed by itself once ``source.done``."""
        if not self._closed:
            self._sources = (*self._sources, source)

    def remove_source(self, source: AudioSource) -> None:
        self._sources = tuple(item for item in self._sources if item is not source)

    # -- the tick ----------------------------------------------------------------------------------
    def on_tick(self, now: float) -> None:
        """Mix this tick's frames and deliver them (see the module docstring)."""
        frames = self._frames
        frames.clear()
        self._collect_speakers(frames)
        if self._run_early is not None:
            self._count_filled()
        # An early tick's frames waited for each other, not for the tick: only a tick
        # at its deadline tells where the deadline should be.
        if self._clock is not None and not self._running_early:
            self._judge_phase(now)
        if self._sources:
            self._read_sources(frames)
        if not frames:
            return
        self.ticks_mixed += 1
        if len(frames) == 1:
            self._deliver_one(frames[0])
        else:
            self._deliver_mix(frames)

    def _collect_speakers(self, frames: list[bytes]) -> None:
        speakers = self._speakers
        silent = self._silent
        speakers.clear()
        silent.clear()
        for participant in self._roster:
            frame = participant.inbox.read_frame()
            if frame is None:
                silent.append(participant)
            elif len(frame) != FRAME_BYTES:
                self.malformed_frames += 1
                silent.append(participant)
            else:
                speakers.append(participant)
                frames.append(frame)

    def _participant_filled(self) -> None:
        """A frame landed in an empty inbox: once every participant has one, mix now."""
        self._filled += 1
        if self._filled >= len(self._roster) and self._run_early is not None:
            self._running_early = True
            try:
                self._run_early(MIX_EARLY_WITHIN_S)
            finally:
                self._running_early = False

    def _count_filled(self) -> None:
        """Count the participants whose inbox holds a frame (after a tick or a leave);
        arrivals in empty inboxes add to it until the next tick."""
        self._filled = sum(1 for participant in self._roster if participant.inbox)

    def _judge_phase(self, now: float) -> None:
        """Track how long this tick's frames waited; every window, tick earlier by what
        the shortest wait exceeds the margin (every participant keeps at least it)."""
        min_wait = self._window_min_wait
        for participant in self._speakers:
            wait = now - participant.pushed_at + len(participant.inbox) * FRAME_SECONDS
            if wait < min_wait:
                min_wait = wait
        self._window_ticks += 1
        if self._window_ticks < PHASE_WINDOW_TICKS:
            self._window_min_wait = min_wait
            return
        self._window_ticks = 0
        self._window_min_wait = float("inf")
        spare_s = min_wait - PHASE_MARGIN_S
        if spare_s > 0 and min_wait != float("inf"):
            assert self._advance_tick is not None
            self.phase_advanced_s += self._advance_tick(spare_s)

    def _read_sources(self, frames: list[bytes]) -> None:
        finished = False
        for source in self._sources:
            frame = source.read_frame()
            if frame is not None:
                if len(frame) == FRAME_BYTES:
                    frames.append(frame)
                else:
                    self.malformed_frames += 1
            finished = finished or source.done
        if finished:
            self._sources = tuple(source for source in self._sources if not source.done)

    def _deliver_one(self, frame: bytes) -> None:
        """One contributor: no arithmetic; the lone speaker (if it is one) hears nothing."""
        for participant in self._silent:
            participant.outbox.push(frame)
        if self._listeners:
            self._notify(frame)

    def _deliver_mix(self, frames: list[bytes]) -> None:
        speakers = self._speakers
        silent = self._silent
        want_full = bool(silent or self._listeners)
        if want_full:
            # A silent row's "everyone else" is everyone: the full mix, in the same pass.
            frames.append(SILENCE)
        mixed = mix_minus(frames)
        for index, participant in enumerate(speakers):
            participant.outbox.push(mixed[index])
        if want_full:
            full = mixed[-1]
            for participant in silent:
                participant.outbox.push(full)
            if self._listeners:
                self._notify(full)

    def _notify(self, frame: bytes) -> None:
        for listener in self._listeners:
            try:
                listener(frame)
            except Exception:  # a broken listener must not silence the conference
                logger.exception("conference listener %r failed; removing it", listener)
                self.remove_listener(listener)

"""Streams with tracks (Voxology, Plivo): the gateway dials the application and sends
JSON messages per track; bidirectional ones (Plivo) play what the application sends.

A track names one direction of one leg (``TRACK_SOURCES`` of the wire module):
the call's own leg or the leg connected to it (``peer``), and what that leg *hears*
from its party or *says* to it. A track starts when its leg first has audio and stops
when that leg goes away, so a stream can outlive a track (a ``transfer`` leg hanging
up). Audio from the application goes through the same paced playout buffer as every
stream; checkpoints become marks in it, reported back once played.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from callstream.calls.streams import CLOSE_NORMAL, StreamBase
from callstream.media.sources import AudioSource
from callstream.store.records import utcnow
from callstream.wire.base import Message
from callstream.wire.tracks import Checkpoint, ClearAudio, SendDtmf, TrackWire

logger = logging.getLogger("callstream.streams")

FrameTap = Callable[[bytes], None]


class TrackLeg(Protocol):
    def add_tap(self, tap: FrameTap) -> None: ...
    def remove_tap(self, tap: FrameTap) -> None: ...
    def add_said_tap(self, tap: FrameTap) -> None: ...
    def remove_said_tap(self, tap: FrameTap) -> None: ...
    def play(self, source: AudioSource) -> object: ...
    def stop(self, source: AudioSource) -> None: ...
    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None: ...


class _MarkedPlayout:
    """The playout buffer as the leg's source, reporting played checkpoints and the end
    of queued audio (Plivo's playedStream and ``Played`` callback) as frames go out."""

    def __init__(self, stream: TrackedStream) -> None:
        self._stream = stream
        self._buffer = stream.playout
        self._was_playing = False
        self.done = False

    def bind_tick_phase(self, advance: Callable[[float], float] | None) -> None:
        self._buffer.bind_tick_phase(advance)

    def read_frame(self) -> bytes | None:
        frame = self._buffer.read_frame()
        if self._buffer.played_marks:
            self._stream.marks_played(self._buffer.take_played_marks())
        if frame is not None:
            self._was_playing = True
        elif self._was_playing:
            self._was_playing = False
            self._stream.playback_drained()
        return frame


class TrackedStream(StreamBase):
    """One JSON stream with tracks on one call (see module docs)."""

    def __init__(
        self,
        *,
        wire: TrackWire,
        call_leg: TrackLeg,
        sources: Mapping[str, tuple[str, str]],
        on_played: Callable[[], None] | None = None,
        on_first_audio: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wire = wire
        self._sources = dict(sources)
        self._legs: dict[str, TrackLeg] = {"call": call_leg}
        self._taps: dict[str, tuple[str, FrameTap]] = {}
        """track -> (the leg role it is attached to, its tap)"""
        self._started: set[str] = set()
        self._playout_source = _MarkedPlayout(self)
        self._on_played = on_played
        self._on_first_audio = on_first_audio
        self.first_audio_sent = False
        self.plivo_option: Mapping[str, Any] | None = None
        """A Plivo stream's <Stream> settings (status callbacks), else None."""

    # -- attaching tracks ----------------------------------------------------------------
    def _opening(self) -> list[Message]:
        return list(self.wire.opening(utcnow()))

    def _attach(self) -> None:
        for track in self.wire.tracks:
            self._attach_track(track)
        self._start_present_tracks()
        if self.wire.bidirectional:
            self._legs["call"].play(self._playout_source)

    def _start_present_tracks(self) -> None:
        """Tracks whose leg is live start now, in the stream's track order (the seed's
        caller before transfer), not in whichever order their first packets race in."""
        now = utcnow()
        for track in self.wire.tracks:
            if track in self._taps and track not in self._started:
                self._started.add(track)
                for message in self.wire.track_started(track, now):
                    self._emit(message)

    def _attach_track(self, track: str) -> None:
        role, direction = self._sources[track]
        leg = self._legs.get(role)
        if leg is None or track in self._taps:
            return

        def tap(frame: bytes) -> None:
            self._frame(track, frame)

        if direction == "heard":
            leg.add_tap(tap)
        else:
            leg.add_said_tap(tap)
        self._taps[track] = (role, tap)

    def _detach_track(self, track: str) -> None:
        role, tap = self._taps.pop(track)
        leg = self._legs.get(role)
        if leg is not None:
            leg.remove_tap(tap)
            leg.remove_said_tap(tap)

    def _detach_audio(self) -> None:
        for track in list(self._taps):
            self._detach_track(track)
        if self.wire.bidirectional:
            self._legs["call"].stop(self._playout_source)

    def peer_joined(self, leg: TrackLeg) -> None:
        """A leg was connected to the call (connect / TRANSFER): its tracks begin."""
        self._legs["peer"] = leg
        if self._attached:
            for track, (role, _) in self._sources.items():
                if role == "peer" and track in self.wire.tracks:
                    self._attach_track(track)
            self._start_present_tracks()

    def peer_left(self) -> None:
        """The connected leg went away: its tracks stop; the stream goes on."""
        for track in [t for t, (role, _) in self._taps.items() if role == "peer"]:
            self._detach_track(track)
            self._stop_track(track)
        self._legs.pop("peer", None)

    def _stop_track(self, track: str) -> None:
        if track in self._started:
            self._started.discard(track)
            for message in self.wire.track_stopped(track, utcnow()):
                self._emit(message)

    def _goodbye(self) -> list[Message]:
        return list(self.wire.closing(utcnow(), error_code=None, error=self.error))

    # -- to the application (per frame per track: hot path) -----------------------------
    def _frame(self, track: str, frame: bytes) -> None:
        if track not in self._started:
            self._started.add(track)
        messages = self.wire.encode_audio(track, frame, utcnow())
        counters = self.counters
        for message in messages:
            self._send(message)
            counters.bytes_sent += len(message)
        counters.frames_sent += 1
        if not self.first_audio_sent:
            self.first_audio_sent = True
            self._changed()
            if self._on_first_audio is not None:
                self._on_first_audio()

    def on_dtmf(self, digit: str) -> None:
        for message in self.wire.encode_dtmf(digit, utcnow()):
            self._emit(message)

    # -- from the application ------------------------------------------------------------
    def receive(self, message: Message, now: float) -> None:
        pcm = self.wire.decode_audio(message)
        if pcm is not None:  # audio to play: the common case, without a TrackDecoded
            self._take_audio(message, pcm)
            return
        decoded = self.wire.decode(message, utcnow())
        counters = self.counters
        counters.bytes_received += len(message)
        for pcm in decoded.audio:
            self.playout.push(pcm)
            counters.frames_received += 1
        for command in decoded.commands:
            self._command(command)
        had_input = bool(decoded.audio or decoded.commands)
        self._count_faults(decoded.faults, had_input, now)

    def _command(self, command: Checkpoint | ClearAudio | SendDtmf) -> None:
        if isinstance(command, Checkpoint):
            self.playout.mark(command.name)
            if self.playout.played_marks:  # nothing queued: played at once
                self.marks_played(self.playout.take_played_marks())
        elif isinstance(command, ClearAudio):
            self.playout.clear()
            if self.playout.played_marks:
                self.marks_played(self.playout.take_played_marks())
            for message in self.wire.cleared():
                self._emit(message)
        else:
            self._legs["call"].send_dtmf(command.digits)

    def marks_played(self, names: list[str]) -> None:
        for message in self.wire.played(names):
            self._emit(message)

    def playback_drained(self) -> None:
        if self._on_played is not None:
            self._on_played()

    def stop(self, reason: str = "stopped") -> None:
        """End the stream from our side (STREAM stop, streamTimeout, API)."""
        self.end(CLOSE_NORMAL, reason, say_goodbye=True)

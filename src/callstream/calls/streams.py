"""Media streams: a WebSocket's audio attached to a call's leg or to a conference.

A ``MediaStream`` joins three things: a ``Wire`` (the encapsulation, sans-I/O), a
``StreamTarget`` (where audio comes from and goes to: a leg or a conference mixer), and a
``send`` callable that hands messages to the I/O adapter without waiting (io/websocket.py).

- To the client: every frame the target produces (what the call's remote party says, or
  the conference's full mix) is encoded and sent *in the tick it is produced*: the tap
  runs on arrival of the RTP packet, nothing buffers it on the way.
- From the client: decoded audio goes into a ``PlayoutBuffer`` that the target reads one
  frame per 20 ms tick (the gateway keeps time, not the client), mixed with whatever else
  the leg is playing. Malformed input is dropped and counted; a stream that sends only
  garbage for ``GARBAGE_TIMEOUT_S`` is closed with 1007 naming the fault.

The stream never ends the call; the call ending ends the stream (close code 1000, after
the wire's closing messages such as AudioSocket's hangup).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from callstream.media.playout import TRIM_WINDOW_TICKS, PlayoutBuffer
from callstream.media.sources import AudioSource
from callstream.store.records import MediaStreamRecord, StreamDirection, StreamStatus, utcnow
from callstream.wire.base import Message, Wire

logger = logging.getLogger("callstream.streams")

GARBAGE_TIMEOUT_S = 2.0
FAULTS_LOGGED_IN_FULL = 10
FAULTS_LOG_EVERY = 100
"""Malformed input is logged: the first few, then one line per hundred (no log floods)."""
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007

FrameTap = Callable[[bytes], None]


class StreamTarget(Protocol):
    """Where a stream's audio comes from and goes to."""

    def attach(self, tap: FrameTap, source: AudioSource) -> None: ...
    def detach(self, tap: FrameTap, source: AudioSource) -> None: ...


class LegTarget:
    """A call's leg: the client hears what the leg hears; the leg says what the client sends."""

    def __init__(self, leg: LegLike) -> None:
        self.leg = leg

    def attach(self, tap: FrameTap, source: AudioSource) -> None:
        self.leg.add_tap(tap)
        self.leg.play(source)

    def detach(self, tap: FrameTap, source: AudioSource) -> None:
        self.leg.remove_tap(tap)
        self.leg.stop(source)


class ConferenceTarget:
    """A conference: the client hears the full mix; every participant hears the client."""

    def __init__(self, mixer: MixerLike) -> None:
        self.mixer = mixer

    def attach(self, tap: FrameTap, source: AudioSource) -> None:
        self.mixer.add_listener(tap)
        self.mixer.add_source(source)

    def detach(self, tap: FrameTap, source: AudioSource) -> None:
        self.mixer.remove_listener(tap)
        self.mixer.remove_source(source)


class LegLike(Protocol):
    def add_tap(self, tap: FrameTap) -> None: ...
    def remove_tap(self, tap: FrameTap) -> None: ...
    def play(self, source: AudioSource) -> object: ...
    def stop(self, source: AudioSource) -> None: ...


class MixerLike(Protocol):
    def add_listener(self, callback: FrameTap) -> None: ...
    def remove_listener(self, callback: FrameTap) -> None: ...
    def add_source(self, source: AudioSource) -> None: ...
    def remove_source(self, source: AudioSource) -> None: ...


@dataclass
class StreamCounters:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    frames_dropped_malformed: int = 0


class StreamBase:
    """What every media stream has: lifecycle, counters, a record (see module docs).

    Subclasses say how audio is attached (``_attach``/``_detach_audio``), what is sent
    on opening and on goodbye, and how client messages are read (``receive``).
    """

    def __init__(
        self,
        *,
        stream_id: uuid.UUID,
        account_id: str,
        send: Callable[[Message], None],
        close: Callable[[int, str], None],
        call_id: str | None = None,
        conference_id: str | None = None,
        direction: str = "inbound",
        url: str | None = None,
        encapsulation: str,
        format: str | None = None,
        max_buffer_s: float = 120.0,
        on_change: Callable[[StreamBase], None] | None = None,
    ) -> None:
        self.id = stream_id
        self.account_id = account_id
        self._send = send
        self._close = close
        self.call_id = call_id
        self.conference_id = conference_id
        self.direction = direction
        self.url = url
        self.encapsulation = encapsulation
        self.format = format
        self.playout = PlayoutBuffer(
            max_seconds=max_buffer_s,
            trim_window_ticks=TRIM_WINDOW_TICKS,
            clock=asyncio.get_running_loop().time,
        )
        self.counters = StreamCounters()
        self.on_change = on_change
        self.status = "connecting"
        self.tm_create = utcnow()
        self.tm_start: datetime | None = None
        self.tm_end: datetime | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.error: str | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the stream has ended or failed."""
        self.ended_by_peer = False
        """The application closed (or the connection dropped), not us."""
        self._garbage_since: float | None = None
        self._last_fault = ""
        self._attached = False

    # -- what subclasses provide ----------------------------------------------------------
    def _opening(self) -> list[Message]:
        return []

    def _goodbye(self) -> list[Message]:
        return []

    def _attach(self) -> None:
        raise NotImplementedError

    def _detach_audio(self) -> None:
        raise NotImplementedError

    def _leftover_bytes(self) -> int:
        return 0

    def receive(self, message: Message, now: float) -> None:
        raise NotImplementedError

    def on_dtmf(self, digit: str) -> None:
        pass

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """The WebSocket is open: send the opening, then audio flows."""
        for message in self._opening():
            self._emit(message)
        self._attach()
        self._attached = True
        self.status = "streaming"
        self.tm_start = utcnow()
        self._changed()

    def end(self, code: int, reason: str, *, say_goodbye: bool = False) -> None:
        """Detach and close the socket (idempotent).

        ``say_goodbye``: the call ended, so first send the wire's closing messages.
        """
        if self.status in ("ended", "failed"):
            return
        self._detach()
        if say_goodbye:
            for message in self._goodbye():
                self._emit(message)
        self.status = "ended"
        self.tm_end = utcnow()
        self.close_code = code
        self.close_reason = reason
        self._close(code, reason)
        self._changed()

    def fail(self, error: str) -> None:
        """The connection could not be made or broke: recorded, the call goes on."""
        if self.status in ("ended", "failed"):
            return
        self._detach()
        self.status = "failed"
        self.tm_end = utcnow()
        self.error = error
        self._changed()

    def closed_by_peer(self, code: int | None, reason: str) -> None:
        """The client closed (or the TCP connection dropped): the call is untouched."""
        if self.status in ("ended", "failed"):
            return
        self._detach()
        self.ended_by_peer = True
        self.status = "ended"
        self.tm_end = utcnow()
        self.close_code = code
        self.close_reason = reason or "closed by the client"
        self._changed()

    def _detach(self) -> None:
        if self._leftover_bytes():
            # a message the client never finished (AudioSocket): dropped, and counted
            self.counters.frames_dropped_malformed += 1
        if self._attached:
            self._attached = False
            self._detach_audio()

    def _emit(self, message: Message) -> None:
        self._send(message)
        self.counters.bytes_sent += len(message)

    def _take_audio(self, message: Message, pcm: bytes) -> None:
        """A client message that was audio and nothing else (the wire's ``decode_audio``
        fast path): count it and queue its PCM to play; good input, so no garbage run."""
        counters = self.counters
        counters.bytes_received += len(message)
        counters.frames_received += 1
        self.playout.push(pcm)
        self._garbage_since = None

    def _count_faults(self, faults: list[str], had_audio: bool, now: float) -> bool:
        """Count dropped input; True when only garbage came for GARBAGE_TIMEOUT_S (closed)."""
        if faults:
            dropped = self.counters.frames_dropped_malformed + len(faults)
            self.counters.frames_dropped_malformed = dropped
            self._last_fault = faults[-1]
            if dropped <= FAULTS_LOGGED_IN_FULL or dropped % FAULTS_LOG_EVERY == 0:
                logger.warning(
                    "stream %s (call %s): dropped malformed input (%d so far): %s",
                    self.id,
                    self.call_id or self.conference_id,
                    dropped,
                    "; ".join(faults),
                )
        if had_audio:
            self._garbage_since = None
        elif faults:
            if self._garbage_since is None:
                self._garbage_since = now
            elif now - self._garbage_since >= GARBAGE_TIMEOUT_S:
                self.end(CLOSE_INVALID_DATA, f"only malformed input for 2 s: {self._last_fault}")
                return True
        return False

    # -- record --------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.status in ("ended", "failed") and not self.finished.done():
            self.finished.set_result(None)
        if self.on_change is not None:
            self.on_change(self)

    def record(self) -> MediaStreamRecord:
        counters = self.counters
        return MediaStreamRecord(
            id=str(self.id),
            account_id=self.account_id,
            call_id=self.call_id,
            conference_id=self.conference_id,
            encapsulation=self.encapsulation,
            format=self.format,
            direction=StreamDirection(self.direction),
            url=self.url,
            status=StreamStatus(self.status),
            tm_create=self.tm_create,
            tm_update=utcnow(),
            tm_start=self.tm_start,
            tm_end=self.tm_end,
            frames_sent=counters.frames_sent,
            bytes_sent=counters.bytes_sent,
            frames_received=counters.frames_received,
            bytes_received=counters.bytes_received,
            frames_dropped_malformed=counters.frames_dropped_malformed,
            frames_dropped_overflow=self.playout.dropped_frames,
            close_code=self.close_code,
            close_reason=self.close_reason,
            error=self.error,
        )


class MediaStream(StreamBase):
    """A VoipBin stream: one binary ``Wire`` on one target (a leg or a conference)."""

    def __init__(self, *, wire: Wire, target: StreamTarget, **kwargs: Any) -> None:
        kwargs.setdefault("stream_id", wire.stream_id)
        super().__init__(**kwargs)
        self.wire = wire
        self.target = target

    def _opening(self) -> list[Message]:
        return self.wire.opening()

    def _goodbye(self) -> list[Message]:
        return self.wire.closing()

    def _attach(self) -> None:
        self.target.attach(self.on_frame, self.playout)

    def _detach_audio(self) -> None:
        self.target.detach(self.on_frame, self.playout)

    def _leftover_bytes(self) -> int:
        return int(getattr(self.wire, "pending_bytes", 0))

    # -- to the client (per 20 ms frame: hot path) --------------------------------------
    def on_frame(self, frame: bytes) -> None:
        message = self.wire.encode_audio(frame)
        self._send(message)
        counters = self.counters
        counters.frames_sent += 1
        counters.bytes_sent += len(message)

    def on_dtmf(self, digit: str) -> None:
        message = self.wire.encode_dtmf(digit)
        if message is not None:
            self._emit(message)

    # -- from the client ------------------------------------------------------------------
    def receive(self, message: Message, now: float) -> None:
        """One WebSocket message from the client."""
        pcm = self.wire.decode_audio(message)
        if pcm is not None:  # plain audio: the common case, without a Decoded
            self._take_audio(message, pcm)
            return
        decoded = self.wire.decode(message)
        counters = self.counters
        counters.bytes_received += len(message)
        for pcm in decoded.audio:
            self.playout.push(pcm)
            counters.frames_received += 1
        if self._count_faults(decoded.faults, bool(decoded.audio), now):
            return
        if decoded.hangup:
            self.playout.flush_partial()
            self.end(CLOSE_NORMAL, "the client ended the stream")

"""DTMF as RTP events (RFC 4733): the payload format, a detector and a sender.

The telephone-event payload (RFC 4733 §2.3)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

One event is a run of packets sharing the event's start timestamp, the duration
growing in each; the final one has E set and is sent three times (§2.5.1.4).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from callstream.errors import ConfigError, RtpError
from callstream.rtp.packet import RtpPacket

_EVENT = struct.Struct("!BBH")
_END_BIT = 0x80
_VOLUME_MASK = 0x3F
_MAX_DURATION_UNITS = 0xFFFF
_PACKET_UNITS = 160  # 20 ms at 8 kHz, the usual event update interval

EVENT_TO_DIGIT: dict[int, str] = {
    **{number: str(number) for number in range(10)},
    10: "*",
    11: "#",
    12: "A",
    13: "B",
    14: "C",
    15: "D",
}
"""DTMF events 0-15 of RFC 4733 §3.2 and the digits they stand for."""
DIGIT_TO_EVENT: dict[str, int] = {digit: event for event, digit in EVENT_TO_DIGIT.items()}


@dataclass(slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3); ``duration`` in timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event of a payload; raise RtpError if shorter than 4 bytes."""
        if len(payload) < _EVENT.size:
            raise RtpError("telephone-event payload too short")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event, bool(flags & _END_BIT), flags & _VOLUME_MASK, duration)

    def serialize(self) -> bytes:
        """The 4-byte payload (the reserved R bit is sent as zero)."""
        flags = (_END_BIT if self.end else 0) | (self.volume & _VOLUME_MASK)
        return _EVENT.pack(self.event, flags, self.duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit received as RFC 4733 events, reported once per event."""

    digit: str
    duration_ms: int


def _is_older(timestamp: int, than: int) -> bool:
    """Serial-number comparison of 32-bit RTP timestamps (wrap-around safe)."""
    return timestamp != than and (than - timestamp) & 0xFFFFFFFF < 0x80000000


class DtmfDetector:
    """Turns received telephone-event packets into digits (RFC 4733 §2.5.2).

    Each event is reported once, when its first end packet arrives; retransmitted
    end packets carry the same timestamp and are ignored. If every end packet of an
    event is lost, the event is reported when the next one starts (or on flush()).
    An SSRC change starts a new event too.
    """

    _RECENT_EVENTS = 8

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._key: tuple[int, int] | None = None  # (ssrc, timestamp) of the current event
        self._event = 0
        self._duration = 0
        self._reported = True
        # Finished events, so a late retransmit cannot look like a new event.
        self._finished: deque[tuple[int, int]] = deque(maxlen=self._RECENT_EVENTS)

    def receive(self, packet: RtpPacket) -> DtmfDigit | None:
        """Account for one telephone-event packet; the digit it completes, if any."""
        event = TelephoneEvent.parse(packet.payload)
        key = (packet.ssrc, packet.timestamp)
        if key == self._key:
            if self._reported:
                return None
            self._duration = max(self._duration, event.duration)
            if event.end:
                self._reported = True
                return self._digit()
            return None
        if key in self._finished or self._is_stale(key):
            return None
        previous = self.flush()
        if self._key is not None:
            self._finished.append(self._key)
        self._key = key
        self._event = event.event
        self._duration = event.duration
        self._reported = False
        if event.end and previous is None:
            self._reported = True
            return self._digit()
        # A new event that both starts and ends here while the previous one is
        # still owed stays unreported until its retransmit or the next event.
        return previous

    @property
    def idle(self) -> bool:
        """Whether no event is owed: audio can then never complete one."""
        return self._reported

    def audio_received(self, packet: RtpPacket) -> DtmfDigit | None:
        """Report an unfinished event once audio resumes after it (its ends were lost).

        Senders stop audio during an event (RFC 4733 §2.5.1.1), so audio stamped
        more than two packets past the event's last known duration means it is over.
        """
        if self._reported or self._key is None or packet.ssrc != self._key[0]:
            return None
        since_start = (packet.timestamp - self._key[1]) & 0xFFFFFFFF
        if since_start >= 0x80000000 or since_start <= self._duration + 2 * _PACKET_UNITS:
            return None
        return self.flush()

    def flush(self) -> DtmfDigit | None:
        """Report the current event if its end was never seen (e.g. the stream stopped)."""
        if self._reported:
            return None
        self._reported = True
        return self._digit()

    def _is_stale(self, key: tuple[int, int]) -> bool:
        return self._key is not None and key[0] == self._key[0] and _is_older(key[1], self._key[1])

    def _digit(self) -> DtmfDigit | None:
        digit = EVENT_TO_DIGIT.get(self._event)
        if digit is None:
            return None  # flash and other non-DTMF events are not digits
        return DtmfDigit(digit, self._duration * 1000 // self.clock_rate)


@dataclass(frozen=True, slots=True)
class DtmfTick:
    """What to send in one packet interval instead of audio: one event packet."""

    payload: bytes
    timestamp: int
    marker: bool


@dataclass(slots=True)
class _QueuedEvent:
    event: int
    duration_units: int
    volume: int


class DtmfSender:
    """Schedules queued digits as RFC 4733 event packets, one per packet interval.

    Call next_tick(timestamp) once per interval with the timestamp audio would
    have: it answers None (send audio) or a DtmfTick to send instead. Per digit:
    packets with growing duration, the marker on the first (§2.5.1.1), all with
    the event's start timestamp (§2.5.1.2), the end packet ``end_repeats`` times
    on consecutive intervals (§2.5.1.4), then ``gap_ms`` of audio before the next.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        packet_samples: int = 160,
        gap_ms: int = 60,
        end_repeats: int = 3,
    ) -> None:
        self.clock_rate = clock_rate
        self.packet_samples = packet_samples
        self.end_repeats = end_repeats
        self._gap_ticks_after_digit = -(-gap_ms * clock_rate // (1000 * packet_samples))
        self._queue: deque[_QueuedEvent] = deque()
        self._current: _QueuedEvent | None = None
        self._start_timestamp = 0
        self._elapsed_units = 0
        self._ends_sent = 0
        self._gap_ticks = 0

    @property
    def busy(self) -> bool:
        """Whether next_tick() may return anything (a digit queued, sending or its gap)."""
        return self._current is not None or bool(self._queue) or self._gap_ticks > 0

    def send(self, digits: str, duration_ms: int = 100, volume: int = 10) -> None:
        """Queue ``digits`` (0-9 * # A-D); ConfigError for anything else.

        ``volume`` is the power level in -dBm0 (0-63, RFC 4733 §2.3.4).
        """
        duration_units = duration_ms * self.clock_rate // 1000
        if not 0 < duration_units <= _MAX_DURATION_UNITS:
            raise ConfigError(f"DTMF duration out of range: {duration_ms} ms")
        if not 0 <= volume <= _VOLUME_MASK:
            raise ConfigError(f"DTMF volume out of range: {volume}")
        events = []
        for digit in digits:
            event = DIGIT_TO_EVENT.get(digit.upper())
            if event is None:
                raise ConfigError(f"not a DTMF digit: {digit!r}")
            events.append(_QueuedEvent(event, duration_units, volume))
        self._queue.extend(events)

    def clear(self) -> None:
        """Drop queued digits; a digit being sent still ends properly."""
        self._queue.clear()

    def next_tick(self, timestamp: int) -> DtmfTick | None:
        """The event packet to send at ``timestamp`` instead of audio, or None."""
        current = self._current
        marker = False
        if current is None:
            if self._gap_ticks:
                self._gap_ticks -= 1
                return None
            if not self._queue:
                return None
            current = self._current = self._queue.popleft()
            self._start_timestamp = timestamp
            self._elapsed_units = 0
            self._ends_sent = 0
            marker = True
        self._elapsed_units = min(self._elapsed_units + self.packet_samples, current.duration_units)
        end = self._elapsed_units >= current.duration_units
        if end:
            self._ends_sent += 1
            if self._ends_sent >= self.end_repeats:
                self._current = None
                self._gap_ticks = self._gap_ticks_after_digit
        payload = TelephoneEvent(current.event, end, current.volume, self._elapsed_units)
        return DtmfTick(payload.serialize(), self._start_timestamp, marker)

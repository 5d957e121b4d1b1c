"""The Voxology media stream (seed 003, "WebSocket Message Sequence"): one-way JSON.

The gateway sends, in this order::

    init_stream                     once, from ``opening``
    start_track                     per track, when its leg first has audio
    live_track                      per track and 20 ms frame: base64 of 160 μ-law bytes
    stop_track                      per started track, once, when its leg ends
    end_stream                      once, from ``closing``: a summary of every track

``stream_sequence_number`` counts every message of the stream from 1;
``track_sequence_number`` counts one track's messages from 1 (its start_track is 1).
Fields and key order are the seed's; messages are compact JSON.

Where the seed's types cannot be ours:

- ``stream_id`` is the stream's UUID string (the seed shows an integer);
- ``subaccount_id`` is the account id string (the seed shows an integer).

Where the seed contradicts itself, the rules above win: its numbers cannot all come
from one stream (a caller ``live_track`` numbered 26 as the stream's 27th message,
after two start_tracks, needs 24 caller messages in 23 places), and its end_stream
summary swaps the two tracks' end times and durations relative to their stop_tracks.
Here the summary repeats each track's stop_track.

Decisions the seed leaves open:

- A track is streamed once: audio or a start after its stop_track is dropped.
- A track that never started (its leg never had audio) has no stop_track and is left
  out of end_stream's summary, so every entry keeps the seed's types (strings, int).
- Times are whole milliseconds (``now`` truncated); ``duration`` is end minus start of
  those, so it always agrees with the two printed times.
- ``stream_data`` in end_stream is the init's (option ``stream_data``) unless the core
  set the attribute ``stream_data`` (a STREAM stop's value) before ``closing``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from callstream.codecs.g711 import ulaw_encode
from callstream.errors import ConfigError, MediaError
from callstream.media.frame import FRAME_BYTES, SAMPLE_RATE_HZ
from callstream.wire.tracks import StreamMeta, TrackDecoded, TrackWire

TRACK_SOURCES: Final[Mapping[str, tuple[str, str]]] = {
    "caller": ("call", "heard"),
    "transfer": ("peer", "heard"),
    "far": ("call", "heard"),
    "near": ("call", "said"),
}
"""Where each track's audio comes from: (the call's leg | its peer, heard | said)."""

OPTIONS_USED: Final = frozenset({"stream_data"})
OPTIONS_IGNORED: Final = frozenset({"protocol", "url", "tracks", "name"})
"""A STREAM action's other options: the core has already used them (url, tracks, name)."""

NO_MESSAGES_FAULT: Final = "Voxology streams carry no messages from the application"
MEDIA_FORMAT: Final[Mapping[str, Any]] = {
    "encoding": "ulaw",
    "type": "text",
    "sample_rate": SAMPLE_RATE_HZ,
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


def epoch_ms(now: datetime) -> int:
    """Whole milliseconds since 1970 UTC (a naive ``now`` is taken to be UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // _ONE_MS


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and "Z", as the seed: "2020-12-02T17:39:32.588Z"."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


# A track's life as a table: (state, event) -> (next state, messages to send).
NEW, RUNNING, STOPPED = "new", "running", "stopped"
START, AUDIO, STOP = "start", "audio", "stop"
TRACK_MOVES: Final[Mapping[tuple[str, str], tuple[str, tuple[str, ...]]]] = {
    (NEW, START): (RUNNING, ("start_track",)),
    (NEW, AUDIO): (RUNNING, ("start_track", "live_track")),
    (NEW, STOP): (STOPPED, ()),  # its leg ended silent: nothing was announced
    (RUNNING, START): (RUNNING, ()),
    (RUNNING, AUDIO): (RUNNING, ("live_track",)),
    (RUNNING, STOP): (STOPPED, ("stop_track",)),
    (STOPPED, START): (STOPPED, ()),
    (STOPPED, AUDIO): (STOPPED, ()),
    (STOPPED, STOP): (STOPPED, ()),
}


class _Track:
    """One track's numbering and times, and its live_track text around the audio."""

    __slots__ = ("name", "state", "sequence_number", "start_ms", "end_ms", "live_tail")

    def __init__(self, name: str, call_id_json: str) -> None:
        self.name = name
        self.state = NEW
        self.sequence_number = 0
        self.start_ms = 0
        self.end_ms = 0
        self.live_tail = f'","call_id":{call_id_json},"name":{_json(name)}}}'

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start_time": iso_ms(self.start_ms),
            "end_time": iso_ms(self.end_ms),
            "duration": self.end_ms - self.start_ms,
        }


class VoxologyWire(TrackWire):
    """Voxology's message sequence for one stream (seed 003); see the module docs.

    ``options``: ``stream_data`` (any JSON; init_stream's, and end_stream's unless
    replaced through the ``stream_data`` attribute). A STREAM action's ``protocol``,
    ``url``, ``tracks`` and ``name`` may be passed too and are ignored; anything else
    is a ConfigError, as is a track that is not Voxology's or is given twice.
    """

    name: ClassVar[str] = "voxology"
    track_names: ClassVar[tuple[str, ...]] = ("caller", "transfer", "near", "far")

    def __init__(
        self, *, meta: StreamMeta, tracks: Sequence[str], options: Mapping[str, Any]
    ) -> None:
        super().__init__(meta=meta, tracks=tracks, options=options)
        self._check(options)
        self.stream_data = options.get("stream_data")
        self._stream_sequence_number = 0
        self._closed = False
        self._stream_id_json = _json(meta.stream_id)
        call_id_json = _json(meta.call_id)
        self._track_state = {track: _Track(track, call_id_json) for track in self.tracks}
        self._live_head = f'{{"stream_id":{self._stream_id_json},"type":"live_track",'

    def _check(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - OPTIONS_USED - OPTIONS_IGNORED)
        if unknown:
            raise ConfigError(f"voxology stream: unknown option {unknown[0]!r}")
        try:
            _json(options.get("stream_data"))
        except (TypeError, ValueError) as exc:
            raise ConfigError("voxology stream: stream_data must be JSON") from exc
        if not self.tracks:
            raise ConfigError("voxology stream: tracks must name at least one track")
        for track in self.tracks:
            if track not in self.track_names:
                raise ConfigError(
                    f"voxology stream: track {track!r} is not one of {', '.join(self.track_names)}"
                )
        if len(set(self.tracks)) != len(self.tracks):
            raise ConfigError("voxology stream: tracks must not repeat a track")

    def _next(self) -> int:
        self._stream_sequence_number += 1
        return self._stream_sequence_number

    def _track(self, track: str) -> _Track:
        state = self._track_state.get(track)
        if state is None:
            raise ValueError(f"track {track!r} is not one of this stream's tracks {self.tracks}")
        return state

    def opening(self, now: datetime) -> list[str]:
        """init_stream: the stream, its call and the tracks subscribed to."""
        meta = self.meta
        message = {
            "stream_id": meta.stream_id,
            "type": "init_stream",
            "stream_sequence_number": self._next(),
            "call_id": meta.call_id,
            "app_id": meta.app_id,
            "subaccount_id": meta.account_id,
            "direction": meta.direction,
            "stream_name": meta.stream_name,
            "stream_data": self.stream_data,
            "tracks": [{"name": track} for track in self.tracks],
            "service": meta.service,
        }
        return [_json(message)]

    def track_started(self, track: str, now: datetime) -> list[str]:
        """start_track, the first time ``track``'s leg has audio; [] after that."""
        return self._move(self._track(track), START, now, b"")

    def encode_audio(self, track: str, frame: bytes, now: datetime) -> list[str]:
        """live_track for one canonical frame (preceded by start_track if not started)."""
        if len(frame) != FRAME_BYTES:
            raise MediaError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        state = self._track(track)
        if state.state == RUNNING and not self._closed:
            return [self._live(state, frame)]
        return self._move(state, AUDIO, now, frame)

    def track_stopped(self, track: str, now: datetime) -> list[str]:
        """stop_track, once, for a track that started; [] otherwise."""
        return self._move(self._track(track), STOP, now, b"")

    def closing(
        self, now: datetime, *, error_code: int | None = None, error: str | None = None
    ) -> list[str]:
        """stop_track for each track still running, then end_stream; [] once closed."""
        if self._closed:
            return []
        messages: list[str] = []
        for state in self._track_state.values():
            messages += self._move(state, STOP, now, b"")
        self._closed = True
        meta = self.meta
        message = {
            "stream_id": meta.stream_id,
            "type": "end_stream",
            "stream_sequence_number": self._next(),
            "call_id": meta.call_id,
            "app_id": meta.app_id,
            "subaccount_id": meta.account_id,
            "service": meta.service,
            "stream_name": meta.stream_name,
            # Every started track is stopped by now; one never started has no times.
            "tracks": [
                state.summary() for state in self._track_state.values() if state.sequence_number
            ],
            "error_code": error_code,
            "error": error,
            "stream_data": self.stream_data,
        }
        messages.append(_json(message))
        return messages

    def decode(self, message: str | bytes, now: datetime) -> TrackDecoded:
        """Nothing is accepted: the stream is one-way (seed 003)."""
        return TrackDecoded(faults=[NO_MESSAGES_FAULT])

    def _move(self, state: _Track, event: str, now: datetime, frame: bytes) -> list[str]:
        if self._closed:
            return []
        state.state, kinds = TRACK_MOVES[state.state, event]
        messages: list[str] = []
        for kind in kinds:
            if kind == "start_track":
                state.start_ms = epoch_ms(now)
                messages.append(self._start_or_stop(state, kind))
            elif kind == "stop_track":
                state.end_ms = epoch_ms(now)
                messages.append(self._start_or_stop(state, kind))
            else:
                messages.append(self._live(state, frame))
        return messages

    def _live(self, state: _Track, frame: bytes) -> str:
        # 50 messages/s per track: text around the base64, ids escaped once at init.
        state.sequence_number += 1
        media = base64.b64encode(ulaw_encode(frame)).decode("ascii")
        return (
            f'{self._live_head}"stream_sequence_number":{self._next()},'
            f'"track_sequence_number":{state.sequence_number},"media":"{media}{state.live_tail}'
        )

    def _start_or_stop(self, state: _Track, kind: str) -> str:
        state.sequence_number += 1
        meta = self.meta
        message: dict[str, Any] = {
            "stream_id": meta.stream_id,
            "type": kind,
            "stream_sequence_number": self._next(),
            "call_id": meta.call_id,
            "api_no": meta.to_number,
            "caller_no": meta.from_number,
            "track_sequence_number": state.sequence_number,
        }
        if kind == "start_track":
            message["media_format"] = MEDIA_FORMAT
        else:
            message["duration"] = state.end_ms - state.start_ms
            message["start_time"] = iso_ms(state.start_ms)
            message["end_time"] = iso_ms(state.end_ms)
        message["name"] = state.name
        return _json(message)

"""The base of the JSON stream wires with tracks (Voxology, Plivo; Twilio later).

CONTRACT (the stream core in calls/tracked.py drives these; sans-I/O: no socket, no
clock — wall-clock time is passed in as an aware UTC ``datetime``):

These streams are opened by the gateway towards the application's WebSocket. Each
message is one JSON text (``str``). One wire instance serves one stream.

    wire = TRACK_WIRES["voxology"](meta=StreamMeta(...), tracks=("caller", "transfer"),
                                   options={...})   # provider options (validated: ConfigError)
    wire.opening(now) -> list[str]                   # Voxology init_stream; Plivo start
    wire.track_started(track, now) -> list[str]      # Voxology start_track; Plivo: []
    wire.encode_audio(track, frame, now) -> list[str]
        # one canonical 20 ms frame (320 bytes, 8 kHz 16-bit PCM) heard on ``track``:
        # Voxology live_track (base64 mu-law); Plivo media (contentType; 16 kHz resampled)
    wire.encode_dtmf(digit, now) -> list[str]        # Plivo dtmf; Voxology: []
    wire.track_stopped(track, now) -> list[str]      # Voxology stop_track; Plivo: []
    wire.closing(now, *, error_code=None, error=None) -> list[str]
        # Voxology end_stream (per-track summary); Plivo stop
    wire.decode(message, now) -> TrackDecoded        # from the application; never raises
    wire.decode_audio(message) -> bytes | None       # fast path: the PCM of a message that
                                                     # is audio and nothing else, or None
                                                     # (nothing changed): decode() takes it
    wire.played(names) -> list[str]                  # Plivo playedStream per checkpoint name
    wire.cleared() -> list[str]                      # Plivo clearedAudio
    wire.stream_data                                 # Voxology: what end_stream carries
                                                     # (set by a STREAM stop's stream_data)

Track names are the provider's: Voxology ``caller``, ``transfer``, ``near``, ``far``;
Plivo ``inbound`` (what the participant says) and ``outbound`` (what the platform plays
to them). ``TRACK_SOURCES`` in each module maps a track name to where its audio comes
from: ("call" | "peer", "heard" | "said") — the call's own leg or the leg connected to
it, and what that leg hears from its party or says to it.

``TrackDecoded``: ``audio`` (canonical 8 kHz PCM chunks to play into the call, already
decoded from base64 / WAV / mu-law / 16 kHz), ``commands`` (``Checkpoint(name)``,
``ClearAudio()``, ``SendDtmf(digits)``), ``faults`` (exact reasons; malformed JSON, unknown
event, bad base64 ... are faults, never exceptions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What a provider's messages say about the stream and its call."""

    stream_id: str
    call_id: str
    account_id: str
    direction: str  # "inbound" | "outbound" (the call's)
    from_number: str = ""  # caller_no / From
    to_number: str = ""  # api_no / To
    stream_name: str = ""
    app_id: str = ""
    service: str = "programmable_voice"  # Voxology: or "sip_trunk"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str


@dataclass(frozen=True, slots=True)
class ClearAudio:
    pass


@dataclass(frozen=True, slots=True)
class SendDtmf:
    digits: str


Command = Checkpoint | ClearAudio | SendDtmf


@dataclass(slots=True)
class TrackDecoded:
    audio: list[bytes] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


class TrackWire(ABC):
    """One stream's JSON messages for one provider (see module docs)."""

    name: ClassVar[str]
    track_names: ClassVar[tuple[str, ...]]
    bidirectional: bool = False
    """Whether audio from the application is played into the call."""

    def __init__(
        self, *, meta: StreamMeta, tracks: Sequence[str], options: Mapping[str, Any]
    ) -> None:
        self.meta = meta
        self.tracks = tuple(tracks)
        self.stream_data: Any = None

    @abstractmethod
    def opening(self, now: datetime) -> list[str]: ...

    def track_started(self, track: str, now: datetime) -> list[str]:
        return []

    @abstractmethod
    def encode_audio(self, track: str, frame: bytes, now: datetime) -> list[str]: ...

    def encode_dtmf(self, digit: str, now: datetime) -> list[str]:
        return []

    def track_stopped(self, track: str, now: datetime) -> list[str]:
        return []

    @abstractmethod
    def closing(
        self, now: datetime, *, error_code: int | None = None, error: str | None = None
    ) -> list[str]: ...

    def decode(self, message: str | bytes, now: datetime) -> TrackDecoded:
        return TrackDecoded(faults=["this stream does not accept messages"])

    def decode_audio(self, message: str | bytes) -> bytes | None:
        """The PCM of a message that is audio to play and nothing else, or None.

        The per-message fast path (no ``TrackDecoded``, no clock read): it must give
        exactly the audio decode() would, and change no state unless it returns audio.
        None means decode() takes the message; a wire without a fast path always says
        None.
        """
        return None

    def played(self, names: Sequence[str]) -> list[str]:
        return []

    def cleared(self) -> list[str]:
        return []

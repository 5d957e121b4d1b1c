"""The records callstream keeps: plain frozen dataclasses, shaped like VoipBin's JSON.

Every layer speaks these: the store persists them, the API serialises them (``to_json``),
the call service builds them from live calls. Timestamps are timezone-aware UTC
``datetime``s; ids are UUID strings. ``Endpoint`` is VoipBin's address object
``{"type": "sip" | "tel", "target": "..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self


def utcnow() -> datetime:
    return datetime.now(UTC)


class CallStatus(StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    PROGRESSING = "progressing"
    TERMINATING = "terminating"
    HANGUP = "hangup"


class HangupReason(StrEnum):
    """VoipBin's hangup reasons, plus ``gateway_restart`` for calls a crash cut off."""

    NORMAL = "normal"
    BUSY = "busy"
    NOANSWER = "noanswer"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    GATEWAY_RESTART = "gateway_restart"


class ConferenceStatus(StrEnum):
    PROGRESSING = "progressing"
    TERMINATED = "terminated"


class StreamDirection(StrEnum):
    """Who opened a media stream's WebSocket."""

    INBOUND = "inbound"
    """The application connected to ``/v1.0/{calls,conferences}/{id}/media_stream``."""
    OUTBOUND = "outbound"
    """The gateway dialled the application (external media)."""


class StreamStatus(StrEnum):
    """A media stream's life: connecting, then streaming, then ended; or failed."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (StreamStatus.ENDED, StreamStatus.FAILED)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


class _Record:
    def to_json(self) -> dict[str, Any]:
        """The record as the API shows it (secrets excluded by each record's ``_hidden``)."""
        hidden: tuple[str, ...] = getattr(self, "_hidden", ())
        return {
            f.name: _json_value(getattr(self, f.name))
            for f in fields(self)  # type: ignore[arg-type]
            if f.name not in hidden
        }

    def evolve(self, **changes: Any) -> Self:
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Account(_Record):
    id: str
    name: str
    tm_create: datetime


@dataclass(frozen=True, slots=True)
class CallRecord(_Record):
    id: str
    account_id: str
    direction: str  # "inbound" | "outbound"
    source: dict[str, str]
    destination: dict[str, str]
    status: CallStatus
    tm_create: datetime
    tm_update: datetime
    actions: tuple[dict[str, Any], ...] = ()
    flow_id: str | None = None
    current_action: dict[str, Any] | None = None
    hangup_by: str | None = None  # "local" | "remote"
    hangup_reason: HangupReason | None = None
    sip_call_id: str | None = None
    codec: str | None = None
    conference_id: str | None = None
    tm_ringing: datetime | None = None
    tm_progressing: datetime | None = None
    tm_hangup: datetime | None = None
    error: str | None = None
    """Why the call's flow failed (e.g. an invalid Plivo answer XML), else None."""


@dataclass(frozen=True, slots=True)
class FlowRecord(_Record):
    id: str
    account_id: str
    name: str
    detail: str
    actions: tuple[dict[str, Any], ...]
    tm_create: datetime
    tm_update: datetime


@dataclass(frozen=True, slots=True)
class RouteRecord(_Record):
    """Maps an inbound Request-URI user part (exact, or ``re:`` regex) to a flow."""

    id: str
    account_id: str
    match: str
    flow_id: str
    priority: int
    tm_create: datetime
    tm_update: datetime


@dataclass(frozen=True, slots=True)
class TrunkRecord(_Record):
    """A SIP trunk: where ``tel`` calls go out, and which addresses may call in."""

    _hidden = ("password",)

    id: str
    account_id: str
    name: str
    proxy: str  # "host:port"
    transport: str  # "UDP" | "TCP"
    username: str | None
    password: str | None
    inbound_addresses: tuple[str, ...]
    tm_create: datetime
    tm_update: datetime
    media_stream: dict[str, Any] | None = field(default=None)
    register: bool = False
    """Register ``sip:username@proxy-host`` at the proxy (RFC 3261 §10)."""
    register_expires: int = 600


@dataclass(frozen=True, slots=True)
class ConferenceRecord(_Record):
    id: str
    account_id: str
    name: str
    detail: str
    status: ConferenceStatus
    call_ids: tuple[str, ...]
    tm_create: datetime
    tm_update: datetime
    tm_end: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStreamRecord(_Record):
    """One media stream of a call or a conference (issue 4, "Streams are records too").

    Exactly one of ``call_id`` and ``conference_id`` names what the stream is attached
    to. ``encapsulation`` is the wire protocol's registry name ("rtp", "sln",
    "audiosocket", ...) and ``format`` its audio format where it has a choice ("ulaw").
    ``url`` is the ws(s):// URL the gateway dialled (outbound only). ``tm_start`` is the
    first audio either way, ``tm_end`` the close. Counters are WebSocket messages
    (frames) and their payload bytes, each way; dropped frames are incoming messages
    that never reached the call (malformed, or beyond the playout buffer). The close
    code and reason are those of the WebSocket close (RFC 6455 section 7.4); ``error``
    says why a stream failed ("connection refused after 3 tries").
    """

    id: str
    account_id: str
    call_id: str | None = None
    conference_id: str | None = None
    encapsulation: str
    format: str | None = None
    direction: StreamDirection
    url: str | None = None
    status: StreamStatus
    tm_create: datetime
    tm_update: datetime
    tm_start: datetime | None = None
    tm_end: datetime | None = None
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    frames_dropped_malformed: int = 0
    frames_dropped_overflow: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    error: str | None = None

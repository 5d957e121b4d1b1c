"""The base of every stream wire protocol: frames and events in, messages out, and back.

CONTRACT (the stream core in calls/streams.py and io/websocket.py code against it):

A ``Wire`` instance serves ONE stream and holds its state (RTP sequence numbers,
reassembly buffers). It does no I/O and reads no clock. Messages are ``bytes`` (binary
WebSocket messages) or ``str`` (text messages, for the JSON wires of later issues).

    wire = WIRES["rtp"](stream_id=uuid.UUID(...), options={"format": "ulaw"})  # query options
        # raises WireOptionError (a ConfigError, -> HTTP 400) for a bad option, e.g.
        # "format: must be 'ulaw' or 'slin16'"
    wire.opening() -> list[Message]           # sent first (AudioSocket: the 0x01 UUID message)
    wire.encode_audio(frame) -> Message       # one canonical 20 ms frame (320 bytes PCM)
    wire.encode_dtmf(digit) -> Message | None # None when the wire cannot carry DTMF
    wire.closing() -> list[Message]           # sent before a close because the call ended
                                              # (AudioSocket: 0x00)
    wire.error_message() -> Message | None    # AudioSocket 0xff, else None
    wire.decode(message) -> Decoded           # from the client: never raises
    wire.decode_audio(message) -> bytes | None  # fast path: the PCM of a plain audio
                                              # message, or None (nothing changed):
                                              # then decode() takes it

``Decoded``: ``audio`` (list of canonical-format PCM chunks, any length — the playout
buffer re-frames them), ``faults`` (list of exact reasons for what was dropped, e.g.
"RTP version 1 is not supported", "odd byte count 321 for 16-bit PCM", "unknown
AudioSocket kind 0x42", "text message where binary was expected"), ``dtmf`` (digits the
client sent, if the wire carries them), ``hangup`` (the client asked to end the stream:
AudioSocket 0x00). Nothing malformed ever reaches ``audio``.

``WIRES`` maps the ``encapsulation`` query value to the class.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from callstream.errors import ConfigError

Message = bytes | str


class WireOptionError(ConfigError):
    """A stream option (query parameter) this wire does not accept; HTTP 400."""


@dataclass(slots=True)
class Decoded:
    audio: list[bytes] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)
    hangup: bool = False


class Wire(ABC):
    """One stream's encoder/decoder for one wire protocol."""

    name: ClassVar[str]
    options_allowed: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, stream_id: uuid.UUID, options: Mapping[str, str]) -> None:
        unknown = sorted(set(options) - self.options_allowed)
        if unknown:
            raise WireOptionError(f"{unknown[0]}: not an option of the {self.name} encapsulation")
        self.stream_id = stream_id

    def opening(self) -> list[Message]:
        return []

    @abstractmethod
    def encode_audio(self, frame: bytes) -> Message: ...

    def encode_dtmf(self, digit: str) -> Message | None:
        return None

    def closing(self) -> list[Message]:
        return []

    def error_message(self) -> Message | None:
        return None

    @abstractmethod
    def decode(self, message: Message) -> Decoded: ...

    def decode_audio(self, message: Message) -> bytes | None:
        """The PCM of a message that is plain audio and nothing else, or None.

        The per-message fast path (no ``Decoded`` built): it must give exactly the
        audio decode() would, and change no state unless it returns audio. None means
        decode() takes the message; a wire without a fast path always says None.
        """
        return None

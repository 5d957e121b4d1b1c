"""The ``sln`` encapsulation: headerless audio, one binary WebSocket message per frame.

Signed linear (Asterisk's "slin"): 16-bit signed little-endian PCM, 8 kHz mono,
320 bytes per 20 ms. The query option ``format=ulaw`` switches both directions to
G.711 μ-law (RFC 3551 §4.5.14), 160 bytes per 20 ms; ``format=slin`` (the default)
names the PCM form explicitly.

Incoming messages may have any length (the playout buffer re-frames them), but PCM
must be whole samples: a message with an odd byte count is dropped whole and
reported. Its stray byte is not carried into the next message because a client
that splits samples across messages is broken, and resynchronising on its guess
would turn the rest of the stream into noise.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import ClassVar

from callstream.codecs.g711 import ulaw_decode, ulaw_encode
from callstream.errors import MediaError
from callstream.media.frame import FRAME_BYTES
from callstream.wire.base import Decoded, Message, Wire, WireOptionError

FORMAT_SLIN = "slin"
FORMAT_ULAW = "ulaw"


class SlnWire(Wire):
    """Raw 16-bit LE PCM (or μ-law with ``format=ulaw``) both ways; option ``format``."""

    name: ClassVar[str] = "sln"
    options_allowed: ClassVar[frozenset[str]] = frozenset({"format"})

    def __init__(self, *, stream_id: uuid.UUID, options: Mapping[str, str]) -> None:
        super().__init__(stream_id=stream_id, options=options)
        audio_format = options.get("format", FORMAT_SLIN)
        if audio_format not in (FORMAT_SLIN, FORMAT_ULAW):
            raise WireOptionError("format: must be 'ulaw' or 'slin'")
        self.format = audio_format
        self._ulaw = audio_format == FORMAT_ULAW

    def encode_audio(self, frame: bytes) -> Message:
        """The frame itself (320 bytes), or its 160 μ-law bytes with ``format=ulaw``."""
        if len(frame) != FRAME_BYTES:
            raise MediaError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        return ulaw_encode(frame) if self._ulaw else frame

    def decode_audio(self, message: Message) -> bytes | None:
        """A non-empty binary message as PCM (odd byte counts go to decode())."""
        if type(message) is not bytes or not message:
            return None
        if self._ulaw:
            return ulaw_decode(message)
        return None if len(message) % 2 else message

    def decode(self, message: Message) -> Decoded:
        """One client message: its audio as PCM, or the fault it was dropped for."""
        if isinstance(message, str):
            return Decoded(faults=["text message where binary was expected"])
        if not message:
            return Decoded(faults=["empty message"])
        if self._ulaw:
            return Decoded(audio=[ulaw_decode(message)])
        if len(message) % 2:
            return Decoded(faults=[f"odd byte count {len(message)} for 16-bit PCM"])
        return Decoded(audio=[message])

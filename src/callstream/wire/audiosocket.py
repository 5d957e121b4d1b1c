"""The ``audiosocket`` encapsulation: Asterisk AudioSocket messages over WebSocket.

AudioSocket (docs.asterisk.org, Configuration/Channel-Drivers/AudioSocket, "Protocol
definition") is a byte stream of messages, each a 1-byte kind, a 2-byte big-endian
payload length and the payload::

    kind 0x00  hangup (terminate), no payload
    kind 0x01  the stream's UUID, 16 bytes
    kind 0x03  one DTMF digit, 1 ASCII byte
    kind 0x10  audio: 16-bit signed little-endian PCM, 8 kHz mono
    kind 0xff  error; the payload is an application error code

The gateway sends 0x01 with the stream id first, then one 0x10 message of 320 bytes
per 20 ms, 0x03 per digit the call receives, 0xff on an error and 0x00 before it
closes because the call ended.

From the client the WebSocket messages are a byte stream, not a framing: one
WebSocket message may hold several AudioSocket messages and one AudioSocket message
may be split across WebSocket messages, so an incomplete message waits in a
reassembly buffer. That buffer can never exceed one message (3 + 65535 bytes): every
complete message is consumed at once, and the 2-byte length bounds the rest.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from enum import IntEnum
from typing import ClassVar

from callstream.errors import ConfigError, MediaError
from callstream.media.frame import FRAME_BYTES
from callstream.rtp.dtmf import DIGIT_TO_EVENT
from callstream.wire.base import Decoded, Message, Wire


class AudioSocketKind(IntEnum):
    """The message kinds this gateway speaks (the first byte of every message)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


ERROR_CODE_FRAME_FORWARDING = 0x02
"""The code of our 0xff message: Asterisk's "frame forwarding error", the nearest of
its codes to "the gateway stopped carrying this stream's audio"."""

MAX_MESSAGE_BYTES = 3 + 0xFFFF
HEADER = struct.Struct(">BH")
_HIGHER_RATE_AUDIO_KINDS = range(0x11, 0x19)  # 12-192 kHz PCM, Asterisk 20+
_KNOWN_KINDS = frozenset(AudioSocketKind) | frozenset(_HIGHER_RATE_AUDIO_KINDS)
_AUDIO_HEADER = HEADER.pack(AudioSocketKind.AUDIO, FRAME_BYTES)
_HANGUP = HEADER.pack(AudioSocketKind.HANGUP, 0)


class AudioSocketWire(Wire):
    """AudioSocket messages both ways; no options."""

    name: ClassVar[str] = "audiosocket"

    def __init__(self, *, stream_id: uuid.UUID, options: Mapping[str, str]) -> None:
        super().__init__(stream_id=stream_id, options=options)
        # An incomplete message, and how many bytes it needs before parsing is worth it:
        # a message arriving in many small pieces is then copied once, not per piece.
        self._pending = bytearray()
        self._pending_needed_bytes = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete message waiting for the rest (truncated if the stream ends)."""
        return len(self._pending)

    def opening(self) -> list[Message]:
        """The 0x01 message carrying the stream's id, sent before any audio."""
        return [HEADER.pack(AudioSocketKind.UUID, 16) + self.stream_id.bytes]

    def encode_audio(self, frame: bytes) -> Message:
        """One 0x10 message: 3 header bytes and the frame's 320 bytes of PCM."""
        if len(frame) != FRAME_BYTES:
            raise MediaError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        return _AUDIO_HEADER + frame

    def encode_dtmf(self, digit: str) -> Message:
        """One 0x03 message with the digit as one ASCII byte."""
        if digit not in DIGIT_TO_EVENT:
            raise ConfigError(f"DTMF digit must be one of 0-9 * # A-D, got {digit!r}")
        return HEADER.pack(AudioSocketKind.DTMF, 1) + digit.encode("ascii")

    def closing(self) -> list[Message]:
        """The 0x00 hangup message, sent before closing because the call ended."""
        return [_HANGUP]

    def error_message(self) -> Message:
        """A 0xff message with the 1-byte code ``ERROR_CODE_FRAME_FORWARDING``."""
        return HEADER.pack(AudioSocketKind.ERROR, 1) + bytes((ERROR_CODE_FRAME_FORWARDING,))

    def decode_audio(self, message: Message) -> bytes | None:
        """A message that is exactly one whole 0x10 audio message, as its PCM."""
        if (
            self._pending
            or type(message) is not bytes
            or len(message) <= HEADER.size
            or message[0] != AudioSocketKind.AUDIO
            or (message[1] << 8) | message[2] != len(message) - HEADER.size
            or len(message) % 2 == 0  # 3 header bytes + an even payload is odd
        ):
            return None
        return message[HEADER.size :]

    def decode(self, message: Message) -> Decoded:
        """Every complete AudioSocket message so far; an incomplete one waits for more."""
        decoded = Decoded()
        if isinstance(message, str):
            decoded.faults.append("text message where binary was expected")
            return decoded
        if self._pending:
            self._pending += message
            if len(self._pending) < self._pending_needed_bytes:
                return decoded
            data = bytes(self._pending)
            self._pending.clear()
        else:
            data = message
        offset = self._parse(data, decoded)
        if offset < len(data):
            self._pending += data[offset:]
            self._pending_needed_bytes = self._needed_bytes()
        return decoded

    def _parse(self, data: bytes, decoded: Decoded) -> int:
        """Apply the complete messages in ``data``; the offset of what is left over."""
        offset = 0
        end = len(data)
        while offset < end:
            kind = data[offset]
            if kind not in _KNOWN_KINDS:
                # Framing is lost: nothing after this byte can be trusted.
                decoded.faults.append(f"unknown AudioSocket kind 0x{kind:02x}")
                return end
            if end - offset < HEADER.size:
                break
            payload_end = offset + HEADER.size + ((data[offset + 1] << 8) | data[offset + 2])
            if payload_end > end:
                break
            payload = data[offset + HEADER.size : payload_end]
            offset = payload_end
            if self._handle(kind, payload, decoded):
                return end  # the client hung up: what follows is not for this stream
        return offset

    def _needed_bytes(self) -> int:
        if len(self._pending) < HEADER.size:
            return HEADER.size
        return HEADER.size + ((self._pending[1] << 8) | self._pending[2])

    def _handle(self, kind: int, payload: bytes, decoded: Decoded) -> bool:
        """Apply one complete message; True when it ends the stream (hangup)."""
        if kind == AudioSocketKind.AUDIO:
            if len(payload) % 2:
                decoded.faults.append(f"odd byte count {len(payload)} for 16-bit PCM")
            elif payload:
                decoded.audio.append(payload)
        elif kind == AudioSocketKind.HANGUP:
            decoded.hangup = True
            return True
        elif kind == AudioSocketKind.DTMF:
            digit = payload.decode("ascii", "replace").upper()
            if len(payload) == 1 and digit in DIGIT_TO_EVENT:
                decoded.dtmf.append(digit)
            else:
                decoded.faults.append(f"AudioSocket DTMF payload {payload!r} is not one digit")
        elif kind == AudioSocketKind.ERROR:
            code = payload.hex() if payload else "none"
            decoded.faults.append(f"AudioSocket error from the client (code {code})")
        elif kind in _HIGHER_RATE_AUDIO_KINDS:
            decoded.faults.append(
                f"AudioSocket kind 0x{kind:02x} (audio at another sample rate) is not supported"
            )
        return False

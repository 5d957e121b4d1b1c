"""The ``rtp`` encapsulation: each binary WebSocket message is one RTP packet (RFC 3550 §5.1).

Outgoing: RTP v2, payload type 0 (PCMU, RFC 3551 §4.5.14), one 20 ms frame as a
160-byte μ-law payload, so every message is exactly 172 bytes. The SSRC and the first
sequence number and timestamp are random per stream (RFC 3550 §5.1); then the
sequence number goes up by 1 and the timestamp by 160 per message (modulo 2^16 and
2^32), and the first message carries the marker (RFC 3551 §4.1, start of a talkspurt).

Incoming: RTP v2 packets with payload type 0 (PCMU) or 8 (PCMA), any payload length,
CSRC list, padding and header extension handled by ``RtpPacket.parse``. Each packet's
payload is decoded and passed on in arrival order: the client is usually close to us
over TCP, so there is no reordering and sequence gaps are never filled with invented
audio. A packet whose (SSRC, sequence number) was among the last 32 seen is a
duplicate and dropped. RTCP is refused as a fault rather than ignored: a media stream
carries no RTCP, so a client that sends it is misconfigured and should be told.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Mapping
from typing import ClassVar

from callstream.codecs.g711 import (
    PCMA_PAYLOAD_TYPE,
    PCMU_PAYLOAD_TYPE,
    alaw_decode,
    ulaw_decode,
    ulaw_encode,
)
from callstream.errors import MediaError, RtpError
from callstream.media.frame import FRAME_BYTES, FRAME_SAMPLES
from callstream.rtp.packet import RTP_HEADER, RTP_VERSION, RtpPacket, is_rtcp
from callstream.wire.base import Decoded, Message, Wire

DUPLICATE_WINDOW_PACKETS = 32
"""How many recent sequence numbers (of the current SSRC) a duplicate is looked for in."""

_FIRST_BYTE = RTP_VERSION << 6  # V=2, no padding, no extension, no CSRC
_MARKER_BIT = 0x80
_SEQUENCE_MODULUS = 1 << 16
_TIMESTAMP_MODULUS = 1 << 32
_DECODERS = {PCMU_PAYLOAD_TYPE: ulaw_decode, PCMA_PAYLOAD_TYPE: alaw_decode}


class RtpWire(Wire):
    """RTP packets of PCMU out, PCMU or PCMA in; no options.

    ``ssrc``, ``sequence_number`` and ``timestamp`` (the first packet's) default to
    random values; tests pass them to get exact bytes.
    """

    name: ClassVar[str] = "rtp"

    def __init__(
        self,
        *,
        stream_id: uuid.UUID,
        options: Mapping[str, str],
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        super().__init__(stream_id=stream_id, options=options)
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc
        self.next_sequence_number = (
            random.getrandbits(16) if sequence_number is None else sequence_number
        )
        self.next_timestamp = random.getrandbits(32) if timestamp is None else timestamp
        self._marker_pending = True
        self._seen_ssrc: int | None = None
        self._seen_recent: deque[int] = deque(maxlen=DUPLICATE_WINDOW_PACKETS)
        self._after_newest = -1  # the sequence number after the newest seen (none yet)

    def encode_audio(self, frame: bytes) -> Message:
        """One 172-byte RTP packet carrying ``frame`` as PCMU."""
        if len(frame) != FRAME_BYTES:
            raise MediaError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        second = PCMU_PAYLOAD_TYPE
        if self._marker_pending:
            second |= _MARKER_BIT
            self._marker_pending = False
        header = RTP_HEADER.pack(
            _FIRST_BYTE, second, self.next_sequence_number, self.next_timestamp, self.ssrc
        )
        self.next_sequence_number = (self.next_sequence_number + 1) % _SEQUENCE_MODULUS
        self.next_timestamp = (self.next_timestamp + FRAME_SAMPLES) % _TIMESTAMP_MODULUS
        return header + ulaw_encode(frame)

    def decode_audio(self, message: Message) -> bytes | None:
        """A plain RTP packet (no CSRC, extension or padding) of new G.711 audio, as PCM."""
        if type(message) is not bytes or len(message) <= RTP_HEADER.size:
            return None
        first, second, sequence_number, _, ssrc = RTP_HEADER.unpack_from(message)
        decoder = _DECODERS.get(second & 0x7F) if first == _FIRST_BYTE else None
        if decoder is None or self._is_duplicate(ssrc, sequence_number):
            return None  # decode() finds the duplicate again and reports it
        return decoder(message[RTP_HEADER.size :])

    def decode(self, message: Message) -> Decoded:
        """One client message: its audio, or the fault it was dropped for."""
        decoded = Decoded()
        fault = self._decode_into(message, decoded)
        if fault is not None:
            decoded.faults.append(fault)
        return decoded

    def _decode_into(self, message: Message, decoded: Decoded) -> str | None:
        if isinstance(message, str):
            return "text message where binary was expected"
        if is_rtcp(message):
            return "RTCP is not accepted on a media stream"
        if message and message[0] >> 6 != RTP_VERSION:
            return f"RTP version {message[0] >> 6} is not supported"
        try:
            packet = RtpPacket.parse(message)
        except RtpError as error:
            return str(error)
        decoder = _DECODERS.get(packet.payload_type)
        if decoder is None:
            return f"payload type {packet.payload_type} is not PCMU (0) or PCMA (8)"
        if self._is_duplicate(packet.ssrc, packet.sequence_number):
            return "duplicate RTP packet"
        if packet.payload:
            decoded.audio.append(decoder(packet.payload))
        return None

    def _is_duplicate(self, ssrc: int, sequence_number: int) -> bool:
        """Whether this sequence number was seen lately; remembers it if not."""
        if ssrc != self._seen_ssrc:
            # A new source (a client that restarted) numbers its packets afresh.
            self._seen_ssrc = ssrc
            self._seen_recent.clear()
        elif sequence_number == self._after_newest:
            pass  # the next one after the newest seen (nearly every packet): cannot be seen
        elif sequence_number in self._seen_recent:
            return True
        elif (sequence_number - self._after_newest) % _SEQUENCE_MODULUS >= _SEQUENCE_MODULUS // 2:
            self._seen_recent.append(sequence_number)  # late: the newest stays the newest
            return False
        self._after_newest = (sequence_number + 1) % _SEQUENCE_MODULUS
        self._seen_recent.append(sequence_number)
        return False

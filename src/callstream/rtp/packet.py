"""RTP packets (RFC 3550 §5.1), parsed and serialized without I/O.

The fixed header::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           timestamp                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           synchronization source (SSRC) identifier            |
    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
    |            contributing source (CSRC) identifiers             |
    |                             ....                              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Parsing and serializing sit on the media hot path (50 packets/s per leg), so the
common header (no CSRC, extension or padding) takes a single ``struct`` call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from callstream.errors import RtpError

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
"""Fixed header: V/P/X/CC byte, M/PT byte, sequence number, timestamp, SSRC."""
RTP_HEADER_BYTES = RTP_HEADER.size  # 12
_EXTENSION_HEADER = struct.Struct("!HH")
# First byte of the common case: version 2, no padding, no extension, no CSRC.
_PLAIN_FIRST_BYTE = 0x80
_PADDING_BIT = 0x20
_EXTENSION_BIT = 0x10
_MARKER_BIT = 0x80
# RFC 5761 §4: RTCP packet types 192-223 share the second byte with RTP's M+PT.
_RTCP_FIRST_TYPE = 192
_RTCP_LAST_TYPE = 223


def is_rtcp(data: bytes) -> bool:
    """Whether ``data`` is an RTCP packet multiplexed on an RTP port (RFC 5761 §4).

    RTCP packet types 192-223 occupy the byte where RTP has marker + payload type;
    those payload types (64-95 with the marker set) are never assigned to RTP.
    """
    return (
        len(data) >= 2
        and data[0] >> 6 == RTP_VERSION
        and (_RTCP_FIRST_TYPE <= data[1] <= _RTCP_LAST_TYPE)
    )


@dataclass(slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 §5.1).

    ``extension_profile`` is None when the X bit is clear; ``extension`` is the
    header extension's data (a multiple of 4 bytes) without its 4-byte header.
    ``padding_bytes`` counts the padding including its final count octet
    (RFC 3550 §5.1, P bit); serialize() writes zero padding.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_bytes: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise RtpError when it is malformed."""
        if len(data) < RTP_HEADER_BYTES:
            raise RtpError("RTP packet too short")
        first, second, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first == _PLAIN_FIRST_BYTE:
            return cls(
                second & 0x7F,
                sequence_number,
                timestamp,
                ssrc,
                data[RTP_HEADER_BYTES:],
                bool(second & _MARKER_BIT),
            )
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"unsupported RTP version {version}")
        return cls._parse_general(data, first, second, sequence_number, timestamp, ssrc)

    @classmethod
    def _parse_general(
        cls, data: bytes, first: int, second: int, sequence_number: int, timestamp: int, ssrc: int
    ) -> RtpPacket:
        csrc_count = first & 0x0F
        offset = RTP_HEADER_BYTES + 4 * csrc_count
        if offset > len(data):
            raise RtpError("CSRC list truncated")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_BYTES)
        extension_profile: int | None = None
        extension = b""
        if first & _EXTENSION_BIT:
            if offset + _EXTENSION_HEADER.size > len(data):
                raise RtpError("RTP header extension truncated")
            extension_profile, length_words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += _EXTENSION_HEADER.size
            end = offset + 4 * length_words
            if end > len(data):
                raise RtpError("RTP header extension truncated")
            extension = data[offset:end]
            offset = end
        padding_bytes = 0
        if first & _PADDING_BIT:
            # The count octet counts itself, so zero can never be valid.
            padding_bytes = data[-1] if len(data) > offset else 0
            if padding_bytes == 0 or padding_bytes > len(data) - offset:
                raise RtpError("RTP padding larger than payload")
        return cls(
            second & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            data[offset : len(data) - padding_bytes],
            bool(second & _MARKER_BIT),
            csrc,
            extension_profile,
            extension,
            padding_bytes,
        )

    def serialize(self) -> bytes:
        """The packet's wire bytes; the inverse of parse() for every valid packet."""
        second = self.payload_type | _MARKER_BIT if self.marker else self.payload_type
        if not self.csrc and self.extension_profile is None and not self.padding_bytes:
            return (
                RTP_HEADER.pack(
                    _PLAIN_FIRST_BYTE, second, self.sequence_number, self.timestamp, self.ssrc
                )
                + self.payload
            )
        return self._serialize_general(second)

    def _serialize_general(self, second: int) -> bytes:
        first = _PLAIN_FIRST_BYTE | len(self.csrc)
        parts = [b"", struct.pack(f"!{len(self.csrc)}I", *self.csrc)]
        if self.extension_profile is not None:
            if len(self.extension) % 4:
                raise RtpError("RTP header extension must be a multiple of 4 bytes")
            first |= _EXTENSION_BIT
            parts.append(_EXTENSION_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding_bytes:
            first |= _PADDING_BIT
            parts.append(bytes(self.padding_bytes - 1) + bytes((self.padding_bytes,)))
        parts[0] = RTP_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)
        return b"".join(parts)

"""Per-leg RTP state, sans-I/O: what one call leg receives and sends (RFC 3550, 3551, 4733).

Receiving: parse, put back in order (ReorderBuffer), decode G.711 by each
packet's own payload type, turn telephone-events into digits. Sending: one packet
per 20 ms tick with the sequence number +1 and the timestamp +160 each time
(RFC 3550 §5.1), DTMF events in place of audio while digits are queued.

An answered leg sends on every tick: when it has nothing to say it sends encoded
silence, not nothing, so the peer always gets 50 packets/s. Gaps would make many
peers' jitter buffers and NAT bindings misbehave, and some hang up on RTP timeout.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from callstream.codecs.g711 import PCMA_PAYLOAD_TYPE, PCMU_PAYLOAD_TYPE, alaw_decode, ulaw_decode
from callstream.codecs.g711 import encoder_for as _encoder_for
from callstream.errors import ConfigError, MediaError, RtpError
from callstream.media.frame import FRAME_BYTES, FRAME_SAMPLES, SILENCE
from callstream.rtp.dtmf import DtmfDetector, DtmfDigit, DtmfSender
from callstream.rtp.packet import RTP_HEADER, RTP_HEADER_BYTES, RtpPacket, is_rtcp
from callstream.rtp.reorder import ReorderBuffer

_DECODERS: dict[int, Callable[[bytes], bytes]] = {
    PCMU_PAYLOAD_TYPE: ulaw_decode,
    PCMA_PAYLOAD_TYPE: alaw_decode,
}
_STATIC_BY_ENCODING = {"PCMU": PCMU_PAYLOAD_TYPE, "PCMA": PCMA_PAYLOAD_TYPE}
_DYNAMIC_FIRST, _DYNAMIC_LAST = 96, 127  # RFC 3551 §6
_FIRST_BYTE = 0x80  # version 2, no padding, extension or CSRC
_MARKER_BIT = 0x80


@dataclass(slots=True)
class ReceivedMedia:
    """What one received datagram (or a flush) made deliverable, in sequence order.

    ``frames`` holds each audio packet's decoded 16-bit PCM: 320 bytes for a
    20 ms packet, its own length for other packet times.
    """

    frames: list[bytes] = field(default_factory=list)
    dtmf: list[DtmfDigit] = field(default_factory=list)


class RtpSession:
    """One leg's RTP: receive() per datagram, send_frame()/send_tick() per 20 ms tick.

    Audio is sent as PCMU (0) or PCMA (8), ``payload_type``; received audio in
    either is decoded whatever was negotiated (peers switch after re-INVITEs). A
    dynamic payload type that SDP mapped to PCMU or PCMA (``a=rtpmap:96 PCMU/8000``,
    RFC 3551 §3) is sent and decoded as that codec (``set_payload_type(96, "PCMU")``).
    ``ssrc``, ``initial_sequence`` and ``initial_timestamp`` are random when None,
    as RFC 3550 §5.1 asks.
    """

    def __init__(
        self,
        payload_type: int = PCMU_PAYLOAD_TYPE,
        telephone_event_pt: int | None = 101,
        ssrc: int | None = None,
        initial_sequence: int | None = None,
        initial_timestamp: int | None = None,
    ) -> None:
        self.telephone_event_pt = telephone_event_pt
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self._sequence = secrets.randbits(16) if initial_sequence is None else initial_sequence
        self._timestamp = secrets.randbits(32) if initial_timestamp is None else initial_timestamp
        self._marker_pending = True
        self._payload_type = payload_type
        self._encode = _encoder_for(payload_type)
        self._silence = self._encode(SILENCE)
        self._decoders = _DECODERS
        self._reorder = ReorderBuffer()
        self.waiting_packets = self._reorder.held
        """Packets waiting behind a gap (not the call on hold: that is ``Leg.held``), read
        only: flush() has something to do when not empty."""
        self._detector = DtmfDetector()
        self._sender = DtmfSender()
        self._flush_due = False
        self.packets_received = 0
        self.bytes_received = 0
        self.malformed = 0
        self.unknown_payload_type = 0
        self.rtcp_received = 0
        self.packets_sent = 0

    # -- configuration -------------------------------------------------------------------
    @property
    def payload_type(self) -> int:
        """The payload type audio is sent with (0 PCMU or 8 PCMA)."""
        return self._payload_type

    @payload_type.setter
    def payload_type(self, payload_type: int) -> None:
        self.set_payload_type(payload_type)

    def set_payload_type(self, payload_type: int, encoding: str | None = None) -> None:
        """Send audio with another payload type from the next tick.

        A static type (0 PCMU, 8 PCMA) names its codec; a dynamic one (96–127) needs
        ``encoding``, the codec its SDP rtpmap gave ("PCMU" or "PCMA"), and received
        packets of that type are decoded with it too. MediaError otherwise.
        """
        if payload_type in _DECODERS:
            static = payload_type
        elif _DYNAMIC_FIRST <= payload_type <= _DYNAMIC_LAST and encoding is not None:
            found = _STATIC_BY_ENCODING.get(encoding.upper())
            if found is None:
                raise MediaError(f"no G.711 codec named {encoding!r}")
            static = found
        else:
            raise MediaError(f"no G.711 codec for payload type {payload_type}")
        self._encode = _encoder_for(static)
        self._silence = self._encode(SILENCE)
        self._payload_type = payload_type
        if payload_type == static:
            self._decoders = _DECODERS
        else:
            self._decoders = {**_DECODERS, payload_type: _DECODERS[static]}

    # -- receiving ---------------------------------------------------------------------
    @property
    def packets_lost(self) -> int:
        """Sequence numbers given up on (gaps skipped by the reorder buffer)."""
        return self._reorder.lost

    @property
    def packets_duplicate(self) -> int:
        return self._reorder.duplicates

    @property
    def packets_late(self) -> int:
        """Packets that arrived after their gap had been skipped (dropped)."""
        return self._reorder.late

    def receive(self, data: bytes) -> ReceivedMedia:
        """Take one datagram from the peer; RtpError if it is not valid RTP.

        RTCP multiplexed on the port (RFC 5761 §4) is counted and ignored.
        """
        if is_rtcp(data):
            self.rtcp_received += 1
            return ReceivedMedia()
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.malformed += 1
            raise
        self.packets_received += 1
        self.bytes_received += len(data)
        delivered = self._reorder.push(packet)
        if self._flush_due and not len(self._reorder):
            self._flush_due = False  # the gap filled: a later hold gets its full tick
        return self._deliver(delivered)

    def receive_in_order(self, data: bytes) -> bytes | None:
        """The per-packet fast path: the decoded audio of the next in-order packet.

        Takes a plain RTP header (no CSRC, extension or padding) whose packet is
        exactly the next of the current source, with nothing held for reordering,
        an audio payload and no DTMF event owed, and returns its PCM, counted as
        receive() would. Anything else returns None with nothing changed: pass it
        to receive(). It saves the packet, list and result objects receive() builds.
        """
        if len(data) <= RTP_HEADER_BYTES or data[0] != _FIRST_BYTE:
            return None
        _, second, sequence_number, _, ssrc = RTP_HEADER.unpack_from(data)
        decode = self._decoders.get(second & 0x7F)
        if (
            decode is None
            or not self._detector.idle
            or not self._reorder.take_next(sequence_number, ssrc)
        ):
            return None
        self.packets_received += 1
        self.bytes_received += len(data)
        self._flush_due = False
        return decode(data[RTP_HEADER_BYTES:])

    def flush(self) -> ReceivedMedia:
        """Call once per tick: releases packets held behind a gap for over a tick."""
        if not len(self._reorder):
            self._flush_due = False
            return ReceivedMedia()
        if not self._flush_due:
            # Give a reordered packet one tick to arrive before skipping its gap.
            self._flush_due = True
            return ReceivedMedia()
        self._flush_due = False
        return self._deliver(self._reorder.flush())

    def _deliver(self, packets: list[RtpPacket]) -> ReceivedMedia:
        media = ReceivedMedia()
        for packet in packets:
            payload_type = packet.payload_type
            decode = self._decoders.get(payload_type)
            if decode is not None:
                digit = self._detector.audio_received(packet)
                if digit is not None:
                    media.dtmf.append(digit)
                if packet.payload:
                    media.frames.append(decode(packet.payload))
            elif payload_type == self.telephone_event_pt:
                self._receive_event(packet, media)
            else:
                self.unknown_payload_type += 1
        return media

    def _receive_event(self, packet: RtpPacket, media: ReceivedMedia) -> None:
        try:
            digit = self._detector.receive(packet)
        except RtpError:
            # Other packets delivered with it are fine, so count rather than raise.
            self.malformed += 1
            return
        if digit is not None:
            media.dtmf.append(digit)

    # -- sending -------------------------------------------------------------------------
    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits to send as RFC 4733 events; ConfigError if none negotiated."""
        if self.telephone_event_pt is None:
            raise ConfigError("cannot send DTMF: the peer did not accept telephone-event")
        self._sender.send(digits, duration_ms)

    def send_frame(self, pcm: bytes | None) -> bytes:
        """The one RTP packet for this 20 ms tick.

        ``pcm`` is one canonical frame, or None for nothing to say (comfort
        silence is sent). While DTMF is queued an event packet replaces the audio.
        """
        telephone_event_pt = self.telephone_event_pt
        if telephone_event_pt is not None and self._sender.busy:
            tick = self._sender.next_tick(self._timestamp)
            if tick is not None:
                return self._packet(telephone_event_pt, tick.marker, tick.timestamp, tick.payload)
        if pcm is None:
            payload = self._silence
        elif len(pcm) == FRAME_BYTES:
            payload = self._encode(pcm)
        else:
            raise ValueError(f"send_frame needs {FRAME_BYTES} bytes of PCM, got {len(pcm)}")
        return self._packet(self._payload_type, False, self._timestamp, payload)

    def skip_ticks(self, ticks: int) -> None:
        """Ticks passed without a packet (the clock skipped them after a stall).

        The timestamp advances by 160 per tick all the same, the sequence number
        does not (RFC 3550 §5.1: the timestamp follows the sampling clock, the
        sequence number the packets sent), so the peer's jitter buffer sees a gap
        in real time rather than audio that is suddenly late.
        """
        if ticks > 0:
            self._timestamp = (self._timestamp + ticks * FRAME_SAMPLES) & 0xFFFFFFFF

    def send_tick(self, pcm: bytes | None) -> list[bytes]:
        """Every packet to send this tick (always one with this design; see send_frame)."""
        return [self.send_frame(pcm)]

    def _packet(self, payload_type: int, marker: bool, timestamp: int, payload: bytes) -> bytes:
        if marker or self._marker_pending:
            payload_type |= _MARKER_BIT
            self._marker_pending = False
        data = RTP_HEADER.pack(_FIRST_BYTE, payload_type, self._sequence, timestamp, self.ssrc)
        self._sequence = (self._sequence + 1) & 0xFFFF
        # The clock runs on during events: they are stamped with their start instead.
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.packets_sent += 1
        return data + payload

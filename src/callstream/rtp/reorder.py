"""A small reorder buffer: delivers RTP packets in sequence order, adding no delay
to packets that arrive in order.

Not a jitter buffer: playout timing belongs to the media clock, which pulls one
frame per tick. This only repairs reordering (RFC 3550 §A.1 extended sequence
numbers, wrap-around at 65535) and drops duplicates, so a packet is held only
while an earlier one is missing, and never for long.
"""

from __future__ import annotations

from collections import deque

from callstream.rtp.packet import RtpPacket

_SEQUENCE_MODULUS = 0x10000
_HALF_SEQUENCE = 0x8000
_REMEMBERED_SKIPS = 64


class ReorderBuffer:
    """Puts packets of one stream back in sequence order.

    push() returns what can be delivered now. A packet after a gap is held until
    the gap fills, or until ``capacity`` packets are held or one arrives
    ``capacity`` or more past the gap; then the gap is skipped (``lost``).
    Duplicates (``duplicates``) and packets older than the last delivered
    (``late``) are dropped. An SSRC change, or a sequence jump of more than
    ``max_jump``, is a new stream: what was held is released and counting restarts.
    """

    def __init__(self, capacity: int = 5, max_jump: int = 100) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_jump = max_jump
        self.duplicates = 0
        self.late = 0
        self.lost = 0
        self.resets = 0
        self._ssrc: int | None = None
        self._expected = 0  # extended sequence number of the next packet to deliver
        self.held: dict[int, RtpPacket] = {}
        """Packets waiting for a gap to fill, by extended sequence number (read only)."""
        self._skipped: deque[int] = deque(maxlen=_REMEMBERED_SKIPS)

    def __len__(self) -> int:
        """How many packets are held waiting for a gap to fill."""
        return len(self.held)

    def take_next(self, sequence_number: int, ssrc: int) -> bool:
        """Accept the packet if it is exactly the next one and nothing is held.

        The per-packet fast path: True means deliver it now (push() would have
        returned it alone); False means nothing changed and push() must judge it.
        """
        if (
            ssrc == self._ssrc
            and not self.held
            and sequence_number == self._expected & (_SEQUENCE_MODULUS - 1)
        ):
            self._expected += 1
            return True
        return False

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """Accept one packet; the packets deliverable now, in sequence order."""
        sequence = packet.sequence_number
        delta = ((sequence - self._expected + _HALF_SEQUENCE) % _SEQUENCE_MODULUS) - _HALF_SEQUENCE
        if delta == 0 and packet.ssrc == self._ssrc:
            self._expected += 1
            if not self.held:
                return [packet]
            return self._drain([packet])
        if packet.ssrc != self._ssrc or abs(delta) > self.max_jump:
            return self._restart(packet)
        extended = self._expected + delta
        if delta < 0:
            if extended in self._skipped:
                self._skipped.remove(extended)
                self.late += 1
            else:
                self.duplicates += 1
            return []
        if extended in self.held:
            self.duplicates += 1
            return []
        self.held[extended] = packet
        delivered: list[RtpPacket] = []
        # Reordering deeper than ``capacity`` is treated as loss: waiting longer
        # would delay every packet behind the gap.
        while self.held and (
            len(self.held) >= self.capacity or extended - self._expected >= self.capacity
        ):
            self._skip_gap(delivered)
        return delivered

    def flush(self) -> list[RtpPacket]:
        """Release every held packet in order, skipping the gaps between them."""
        delivered: list[RtpPacket] = []
        while self.held:
            self._skip_gap(delivered)
        return delivered

    def _restart(self, packet: RtpPacket) -> list[RtpPacket]:
        delivered = self.flush()
        if self._ssrc is not None:
            self.resets += 1
        self._ssrc = packet.ssrc
        self._expected = packet.sequence_number + 1
        self._skipped.clear()
        delivered.append(packet)
        return delivered

    def _skip_gap(self, delivered: list[RtpPacket]) -> list[RtpPacket]:
        first_held = min(self.held)
        for missing in range(max(self._expected, first_held - _REMEMBERED_SKIPS), first_held):
            self._skipped.append(missing)
        self.lost += first_held - self._expected
        self._expected = first_held
        return self._drain(delivered)

    def _drain(self, delivered: list[RtpPacket]) -> list[RtpPacket]:
        held = self.held
        while self._expected in held:
            delivered.append(held.pop(self._expected))
            self._expected += 1
        return delivered

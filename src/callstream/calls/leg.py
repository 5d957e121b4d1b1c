"""A Leg is one SIP dialog's audio: what we hear from the peer and what we say to it.

Receiving (called from the RTP socket, per packet, no queue): latch the peer's source
address (symmetric RTP, RFC 4961), decode through the leg's ``RtpSession`` (reorder,
G.711, RFC 4733 events), and hand each 20 ms PCM frame at once to every *tap*
(echo, recorder, later WebSocket streams) — no added buffering on that path.

Sending (called once per media-clock tick): read one frame from each *source* (a
player, a tone, the echo queue, later a stream's playout buffer), mix them, and send one
RTP packet. An answered leg that is not on hold always sends: comfort silence when no
source has anything, so the peer's jitter buffer and NAT binding stay alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from callstream.errors import RtpError
from callstream.io.rtp import Address, RtpSocket
from callstream.media.clock import MediaClock
from callstream.media.frame import FRAME_BYTES, SILENCE
from callstream.media.mixer import mix
from callstream.media.sources import AudioSource
from callstream.rtp.session import RtpSession
from callstream.sip.sdp import NegotiatedMedia

logger = logging.getLogger("callstream.media")

FrameTap = Callable[[bytes], None]
DtmfHandler = Callable[[str, int], None]


class Leg:
    """The media half of one call leg. Owned by a Call; driven by the media clock."""

    def __init__(
        self,
        socket: RtpSocket,
        *,
        on_dtmf: DtmfHandler,
        on_rtp_timeout: Callable[[], None],
        rtp_timeout: float,
        now: float,
        clock: MediaClock | None = None,
    ) -> None:
        self.socket = socket
        self.clock = clock
        """The clock that ticks this leg: a real-time stream source moves our tick's phase."""
        self._leader: object | None = None
        self.session = RtpSession(payload_type=0, telephone_event_pt=101)
        self.remote: Address | None = None
        self._latched = False
        """True once RTP arrived: then the source address wins over the SDP's."""
        self.media: NegotiatedMedia | None = None
        self.sending = False
        """True while we send RTP: after answer/early media, and not while held."""
        self.held = False
        self._taps: list[FrameTap] = []
        self._said_taps: list[FrameTap] = []
        """Receive each frame the leg sends its peer (comfort silence included)."""
        self._sources: list[AudioSource] = []
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._partial = bytearray()
        self._on_dtmf = on_dtmf
        self._on_rtp_timeout = on_rtp_timeout
        self._rtp_timeout = rtp_timeout
        self._last_heard = now
        self._heard = False
        """RTP arrived since the last tick (stamped then: no clock read per packet)."""
        self._timed_out = False
        self.malformed_packets = 0
        socket.set_receiver(self.on_rtp)

    # -- negotiation ---------------------------------------------------------------------
    def apply_media(self, media: NegotiatedMedia, now: float) -> None:
        """Use a negotiated offer/answer: codec, peer address, hold state."""
        self.media = media
        self.session.set_payload_type(media.payload_type, media.encoding)
        if media.telephone_event_pt is not None:
            self.session.telephone_event_pt = media.telephone_event_pt
        if self.remote is None or not self._latched:
            self.remote = (media.remote_address, media.remote_port)
        self.held = media.on_hold
        self._last_heard = now

    def start_sending(self) -> None:
        self.sending = True

    # -- receive path (per packet) ---------------------------------------------------------
    def on_rtp(self, data: bytes, addr: Address) -> None:
        frame = self.session.receive_in_order(data)
        if frame is not None:  # the common case, without receive()'s objects
            if addr != self.remote:
                self.remote = addr
            self._latched = True
            self._heard = True
            self._deliver(frame)
            return
        try:
            received = self.session.receive(data)
        except RtpError as exc:
            self.malformed_packets += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("! port %d dropped a malformed packet: %s", self.socket.port, exc)
            return
        if addr != self.remote:
            self.remote = addr  # symmetric RTP: answer where the peer really sends from
        self._latched = True
        self._heard = True
        for frame in received.frames:
            self._deliver(frame)
        for digit in received.dtmf:
            self._on_dtmf(digit.digit, digit.duration_ms)

    def _deliver(self, frame: bytes) -> None:
        if len(frame) != FRAME_BYTES or self._partial:
            self._partial += frame
            while len(self._partial) >= FRAME_BYTES:
                whole = bytes(self._partial[:FRAME_BYTES])
                del self._partial[:FRAME_BYTES]
                for tap in self._taps:
                    tap(whole)
            return
        for tap in self._taps:
            tap(frame)

    def add_tap(self, tap: FrameTap) -> None:
        self._taps.append(tap)

    def remove_tap(self, tap: FrameTap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    def add_said_tap(self, tap: FrameTap) -> None:
        self._said_taps.append(tap)

    def remove_said_tap(self, tap: FrameTap) -> None:
        if tap in self._said_taps:
            self._said_taps.remove(tap)

    # -- send path (per tick) ----------------------------------------------------------------
    def play(self, source: AudioSource) -> asyncio.Future[None]:
        """Add a source; the future completes when it is done (or the leg closes)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sources.append(source)
        self._waiters[id(source)] = future
        bind_tick_phase = getattr(source, "bind_tick_phase", None)
        if bind_tick_phase is not None and self.clock is not None:
            bind_tick_phase(self._advance_tick)
        return future

    def _advance_tick(self, seconds: float) -> float:
        """A real-time stream's frames wait ``seconds`` more than they need: tick earlier.

        Not while the leg follows a conference's mixer: its tick stays in the mixer's slot.
        """
        if self.clock is None or self._leader is not None:
            return 0.0
        return self.clock.advance(self, seconds)

    def follow_tick_of(self, leader: object | None) -> None:
        """Tick in ``leader``'s slot from now on (a conference mixer, which ticks first in
        its slot, so the leg sends this tick's mix); None stops following."""
        self._leader = leader

    def stop(self, source: AudioSource) -> None:
        if source in self._sources:
            self._sources.remove(source)
            bind_tick_phase = getattr(source, "bind_tick_phase", None)
            if bind_tick_phase is not None:
                bind_tick_phase(None)
        future = self._waiters.pop(id(source), None)
        if future is not None and not future.done():
            future.set_result(None)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        self.session.send_dtmf(digits, duration_ms)

    def on_tick(self, now: float) -> None:
        if self._timed_out:
            return
        if self.session.waiting_packets:  # packets wait behind a gap
            released = self.session.flush()
            for heard in released.frames:
                self._deliver(heard)
            for digit in released.dtmf:
                self._on_dtmf(digit.digit, digit.duration_ms)
        said = self._next_frame()
        if self.sending and not self.held and self.remote is not None:
            self.socket.sendto(self.session.send_frame(said), self.remote)
            if self._said_taps:
                frame = said if said is not None else SILENCE
                for tap in self._said_taps:
                    tap(frame)
        if self._leader is not None and self.clock is not None:
            self.clock.align(self, self._leader)
        if self._heard:
            self._heard = False
            self._last_heard = now
        elif not self.held and now - self._last_heard > self._rtp_timeout:
            self._timed_out = True
            self._on_rtp_timeout()

    def on_ticks_skipped(self, skipped_ticks: int) -> None:
        """The clock skipped ticks after a stall: drop what they would have played.

        Sources that can (``skip(n)``, e.g. a stream's playout buffer) drop that many
        frames, so a real-time sender's audio does not play late for the rest of the
        call; the RTP timestamp moves on by the skipped ticks.
        """
        for source in self._sources:
            skip = getattr(source, "skip", None)
            if skip is not None:
                skip(skipped_ticks)
        self.session.skip_ticks(skipped_ticks)

    def _next_frame(self) -> bytes | None:
        sources = self._sources
        if not sources:
            return None
        if len(sources) == 1:  # the common case (one stream or one prompt), no lists
            only = sources[0]
            frame = only.read_frame()
            if only.done:
                self.stop(only)
            return frame
        frames: list[bytes] = []
        finished: list[AudioSource] = []
        for source in sources:
            frame = source.read_frame()
            if frame is not None:
                frames.append(frame)
            if source.done:
                finished.append(source)
        for source in finished:
            self.stop(source)
        if not frames:
            return None
        return frames[0] if len(frames) == 1 else mix(frames)

    def media_stats(self) -> dict[str, int]:
        """RTP counters of this leg, for the call's closing log line."""
        session = self.session
        return {
            "packets_in": session.packets_received,
            "packets_out": session.packets_sent,
            "lost": session.packets_lost,
            "late": session.packets_late,
            "duplicate": session.packets_duplicate,
            "malformed": self.malformed_packets,
        }

    def close(self) -> None:
        for source in list(self._sources):
            self.stop(source)
        self._taps.clear()
        self.sending = False
        self.socket.close()

"""RTP sockets: a pool of UDP port pairs from ``--rtp-ports`` and one endpoint per leg.

Each leg gets an even RTP port and the odd port above it for RTCP (RFC 3550 §11). RTCP
is received and ignored, so a peer that sends it gets no ICMP errors. Received datagrams
go straight to the leg's ``on_rtp`` callback (no queue, no task); sends are plain
``sendto`` on the non-blocking socket, called from the media clock's tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from callstream.errors import TransportError

logger = logging.getLogger("callstream.rtp")

Address = tuple[str, int]
RtpCallback = Callable[[bytes, Address], None]


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: RtpCallback | None) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.on_datagram is not None:
            self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the RTP timeout handles it.
        pass


class RtpSocket:
    """One leg's RTP (and RTCP) socket pair."""

    def __init__(
        self,
        pool: RtpPortPool,
        port: int,
        rtp: _RtpProtocol,
        rtcp: _RtpProtocol,
    ) -> None:
        self._pool = pool
        self.port = port
        self._rtp = rtp
        self._rtcp = rtcp
        self.closed = False

    @property
    def host(self) -> str:
        return self._pool.host

    def set_receiver(self, callback: RtpCallback | None) -> None:
        self._rtp.on_datagram = callback

    def sendto(self, data: bytes, addr: Address) -> None:
        transport = self._rtp.transport
        if transport is not None and not self.closed:
            transport.sendto(data, addr)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proto in (self._rtp, self._rtcp):
            proto.on_datagram = None
            if proto.transport is not None:
                proto.transport.close()
        self._pool.release(self.port)


class RtpPortPool:
    """Hands out even/odd UDP port pairs from an inclusive range ``first``–``last``."""

    def __init__(self, host: str, first: int, last: int) -> None:
        if first > last or first < 1024 or last > 65535:
            raise TransportError(f"bad RTP port range {first}-{last}")
        self.host = host
        start = first + (first % 2)
        self._free: list[int] = list(range(start, last, 2))  # each needs port+1 <= last
        self._free.reverse()
        self._in_use: set[int] = set()
        if not self._free:
            raise TransportError(f"RTP port range {first}-{last} holds no even/odd pair")

    @property
    def free_pairs(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    async def allocate(self) -> RtpSocket:
        """Bind the next free pair; ports taken by other programs are skipped."""
        loop = asyncio.get_running_loop()
        tried: list[int] = []
        try:
            while self._free:
                port = self._free.pop()
                try:
                    rtp = await self._bind(loop, port)
                except OSError:
                    tried.append(port)
                    continue
                try:
                    rtcp = await self._bind(loop, port + 1)
                except OSError:
                    assert rtp.transport is not None
                    rtp.transport.close()
                    tried.append(port)
                    continue
                self._in_use.add(port)
                return RtpSocket(self, port, rtp, rtcp)
            raise TransportError("no free RTP port pair")
        finally:
            # Ports that were busy go to the back of the queue for a later try.
            self._free[:0] = reversed(tried)

    async def _bind(self, loop: asyncio.AbstractEventLoop, port: int) -> _RtpProtocol:
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(None), local_addr=(self.host, port)
        )
        return protocol

    def release(self, port: int) -> None:
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.insert(0, port)

"""RTP sockets: a pool of UDP port pairs from ``--rtp-ports`` and one endpoint per leg.

Each leg gets an even RTP port and the odd port above it for RTCP (RFC 3550 §11). RTCP
is received and ignored, so a peer that sends it gets no ICMP errors. Received datagrams
go straight to the leg's ``on_rtp`` callback (no queue, no task); sends are plain
``sendto`` on the non-blocking socket, called from the media clock's tick.

Written on ``loop.add_reader`` and the socket itself rather than
``create_datagram_endpoint``: the event loop's datagram transport (uvloop's, like
asyncio's) reads until the socket says EAGAIN, so every packet of a 50 packet/s
stream cost two ``recvmsg`` calls, one of them for nothing (a quarter of the
gateway's system calls in ``strace -c`` at 100 streams). Here one readiness event
reads one datagram; if more are queued, the level-triggered poll reports the socket
again on the next turn of the loop. A send the kernel refuses (a full socket buffer)
drops the packet, as the network would, rather than queueing audio that is already late.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket as socket_module
from collections.abc import Callable
from typing import Any

from callstream.errors import TransportError

logger = logging.getLogger("callstream.rtp")

Address = tuple[str, int]
RtpCallback = Callable[[bytes, Address], None]

MAX_DATAGRAM_BYTES = 2048
"""Larger than any RTP packet of 20 ms audio (and than an Ethernet MTU)."""


class UdpEndpoint:
    """One bound, non-blocking UDP socket: datagrams to ``on_datagram``, ``sendto``."""

    __slots__ = ("_loop", "_socket", "_recvfrom", "_sendto", "on_datagram", "closed", "send_errors")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket_module.socket,
        on_datagram: RtpCallback | None = None,
    ) -> None:
        self._loop = loop
        self._socket = sock
        self._recvfrom = sock.recvfrom
        self._sendto = sock.sendto
        self.on_datagram = on_datagram
        self.closed = False
        self.send_errors = 0
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _on_readable(self) -> None:
        try:
            data, addr = self._recvfrom(MAX_DATAGRAM_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. an ICMP error reported on the socket: the RTP timeout
            logger.debug("! UDP receive failed: %s", exc)  # handles a peer that went away
            return
        on_datagram = self.on_datagram
        if on_datagram is not None:
            on_datagram(data, addr if len(addr) == 2 else (addr[0], addr[1]))

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        try:
            self._sendto(data, addr)
        except OSError as exc:  # a full buffer or an unreachable peer: the packet is lost
            self.send_errors += 1
            if self.send_errors == 1 or self.send_errors % 1000 == 0:
                logger.warning(
                    "! UDP send to %s:%s failed (%d so far): %s", *addr[:2], self.send_errors, exc
                )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_datagram = None
        self._loop.remove_reader(self._socket.fileno())
        self._socket.close()


def bind_udp(loop: asyncio.AbstractEventLoop, host: str, port: int) -> UdpEndpoint:
    """A non-blocking UDP socket bound to ``host``:``port``, read on ``loop``.

    ``host`` is an IP address, or a name resolved here (from /etc/hosts, as a bind
    address is). OSError when the port is taken or the name does not resolve.
    """
    try:
        version = ipaddress.ip_address(host).version
        family = socket_module.AF_INET6 if version == 6 else socket_module.AF_INET
        address: tuple[Any, ...] = (host, port)
    except ValueError:
        family, _, _, _, address = socket_module.getaddrinfo(
            host, port, type=socket_module.SOCK_DGRAM
        )[0]
    sock = socket_module.socket(family, socket_module.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(address)
        return UdpEndpoint(loop, sock)
    except BaseException:
        sock.close()
        raise


class RtpSocket:
    """One leg's RTP (and RTCP) socket pair."""

    def __init__(
        self,
        pool: RtpPortPool,
        port: int,
        rtp: UdpEndpoint,
        rtcp: UdpEndpoint,
    ) -> None:
        self._pool = pool
        self.port = port
        self._rtp = rtp
        self._rtcp = rtcp
        self.sendto = rtp.sendto
        self.closed = False

    @property
    def host(self) -> str:
        return self._pool.host

    def set_receiver(self, callback: RtpCallback | None) -> None:
        self._rtp.on_datagram = callback

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._rtp.close()
        self._rtcp.close()
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
                    rtp = bind_udp(loop, self.host, port)
                except OSError:
                    tried.append(port)
                    continue
                try:
                    rtcp = bind_udp(loop, self.host, port + 1)
                except OSError:
                    rtp.close()
                    tried.append(port)
                    continue
                self._in_use.add(port)
                return RtpSocket(self, port, rtp, rtcp)
            raise TransportError("no free RTP port pair")
        finally:
            # Ports that were busy go to the back of the queue for a later try.
            self._free[:0] = reversed(tried)

    def release(self, port: int) -> None:
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.insert(0, port)

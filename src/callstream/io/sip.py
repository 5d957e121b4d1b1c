"""SIP transports: the asyncio adapter that moves bytes between sockets and the
sans-I/O ``SipAgent``.

After every input (a datagram, a TCP chunk, a timer) the adapter *pumps* the agent:
sends what it queued, re-arms the one timer at ``agent.get_timer()``, and hands the
events it produced to the gateway. Nothing here parses SIP beyond TCP framing.

TCP (RFC 3261 §18.3): connections are kept per remote address; responses to a request
that came over TCP go back on that connection; requests to a TCP peer reuse an open
connection or open a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from callstream.errors import SipParseError
from callstream.sip.agent import SipAgent, SipEvent
from callstream.sip.message import SipRequest, SipResponse, SipStreamParser

logger = logging.getLogger("callstream.sip")

Address = tuple[str, int]
EventHandler = Callable[[SipEvent], None]

PORT_ZERO_ATTEMPTS = 5


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._owner.datagram_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        logger.debug("! udp error %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner
        self._parser = SipStreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self._owner.tcp_connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._parser.feed(data)
        except SipParseError as exc:
            logger.warning("! tcp %s:%d sent a malformed message (%s); closing", *self.peer, exc)
            self.close()
            return
        for message in messages:
            self._owner.message_received(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._owner.tcp_connections.get(self.peer) is self:
            del self._owner.tcp_connections[self.peer]

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipTransport:
    """UDP and TCP listeners on one host/port, feeding one ``SipAgent``."""

    def __init__(self, on_event: EventHandler) -> None:
        self.agent: SipAgent  # attached once the port is known (see Engine.start)
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: _UdpProtocol | None = None
        self._tcp_server: asyncio.Server | None = None
        self.tcp_connections: dict[Address, _TcpConnection] = {}
        self._pending_tcp: dict[Address, list[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.local_port = 0

    async def start(self, host: str, port: int, *, tcp: bool = True) -> None:
        """Listen on UDP and TCP ``host:port``. With port 0 the system picks the UDP port;
        if TCP cannot have the same number, another is tried (a few times)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        attempts = PORT_ZERO_ATTEMPTS if port == 0 else 1
        for attempt in range(1, attempts + 1):
            udp_transport, udp = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            self._udp = udp
            self.local_port = udp_transport.get_extra_info("sockname")[1]
            if not tcp:
                return
            try:
                self._tcp_server = await loop.create_server(
                    lambda: _TcpConnection(self), host, self.local_port, reuse_address=True
                )
                return
            except OSError:
                udp_transport.close()
                if attempt == attempts:
                    raise

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for connection in list(self.tcp_connections.values()):
            connection.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- input -------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        if not hasattr(self, "agent"):
            return  # between bind and attach: the peer will retransmit
        self.agent.receive_datagram(data, addr, self.now(), "UDP")
        self.pump()

    def message_received(self, message: SipRequest | SipResponse, addr: Address) -> None:
        self.agent.receive_message(message, addr, self.now(), "TCP")
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.agent.handle_timer(self.now())
        self.pump()

    # -- output ------------------------------------------------------------------------
    def pump(self) -> None:
        """Send what the agent queued, deliver its events, re-arm its one timer.

        Event handlers may call the agent (respond, bye), so output is flushed again
        after each event.
        """
        while True:
            self._flush()
            event = self.agent.next_event()
            if event is None:
                break
            try:
                self._on_event(event)
            except Exception:
                logger.exception("! handling %r failed", event)
        self._arm_timer()

    def _flush(self) -> None:
        udp = self._udp.transport if self._udp is not None else None
        for data, addr, transport in self.agent.datagrams_to_send():
            if transport.upper() == "TCP":
                self._send_tcp(data, addr)
            elif udp is not None:
                udp.sendto(data, addr)

    def _arm_timer(self) -> None:
        when = self.agent.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _send_tcp(self, data: bytes, addr: Address) -> None:
        connection = self.tcp_connections.get(addr)
        if connection is not None:
            connection.send(data)
            return
        queued = self._pending_tcp.setdefault(addr, [])
        queued.append(data)
        if len(queued) == 1:
            assert self._loop is not None
            self._loop.create_task(self._connect_tcp(addr))

    async def _connect_tcp(self, addr: Address) -> None:
        assert self._loop is not None
        try:
            _, connection = await self._loop.create_connection(
                lambda: _TcpConnection(self), addr[0], addr[1]
            )
        except OSError as exc:
            logger.warning("! tcp connect to %s:%d failed: %s", addr[0], addr[1], exc)
            self._pending_tcp.pop(addr, None)
            return
        for data in self._pending_tcp.pop(addr, []):
            connection.send(data)

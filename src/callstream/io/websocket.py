"""WebSocket I/O for media streams (aiohttp, server and client side).

The stream core calls ``send(message)`` from the media path (an RTP arrival or a clock
tick), which must never wait. When the transport is accepting data and nothing is
queued, ``WebSocketSender`` writes the frame at once: a 2- or 4-byte header (FIN and the
opcode: RFC 6455 §5.2) and one ``transport.write``; on a socket the gateway dialled
(Plivo, Voxology, external media) the client side's masking key and masked payload too
(§5.3, masked in C by aiohttp's own helper). Waking a task per frame cost 14 % of the
gateway's core at 100 streams (bench/RESULTS.md). Otherwise (the peer is slow) the
message is queued for the stream's one writer task (a task per stream, never per
message), which also drains on back-pressure. A client that reads
too slowly cannot make the call wait or the gateway's memory grow: past
``MAX_PENDING_MESSAGES`` the oldest queued messages are dropped and counted.

``pump_stream`` hands what the client sends to the stream until the socket closes;
``connect_with_retries`` dials out for external media. Data messages skip aiohttp's
message queue: every server and client WebSocket of the process builds its queue as a
``StreamQueue`` (``use_stream_queues``, applied on import), which passes each data message
to the stream as aiohttp's parser produces it (``on_data``), instead of queueing it and
waking the task that awaits ``receive()`` once per message: that wake-up and the
``receive()`` path cost ~9 µs a message (bench/RESULTS.md). Control frames (ping, pong,
close) still go through the queue, so aiohttp answers pings and closes as it always did;
a queue without ``on_data`` behaves exactly as aiohttp's own. This is the one place where
callstream reaches into aiohttp's internals beyond the writer; ``direct_delivery`` tells
whether it took, and a test fails if an aiohttp upgrade breaks it.

Keepalive is ours too (``KeepAlive``): aiohttp's ``heartbeat`` re-arms its timer through a
``call_soon`` on every chunk received (6 % of the gateway's core at 200 streams), so stream
sockets are opened without it and ``autoping`` off. One sweep every few seconds serves all
of them: a stream that heard nothing (no data, no pong) for ``HEARTBEAT_S`` is pinged,
and one that still hears nothing ``PONG_TIMEOUT_S`` later is dropped (close code 1006 in
its record). ``pump_stream`` answers the client's pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import aiohttp.client
import aiohttp.web_ws
from aiohttp import WSMessage, WSMsgType, web
from aiohttp._websocket.helpers import websocket_mask
from aiohttp._websocket.reader import WebSocketDataQueue
from aiohttp.http_websocket import WSMessageTextBytes

from callstream.calls.streams import CLOSE_GOING_AWAY, StreamBase
from callstream.wire.base import Message

logger = logging.getLogger("callstream.streams")

MAX_PENDING_MESSAGES = 250
"""5 s of audio at one message per 20 ms: beyond that the client is not keeping up."""
HEARTBEAT_S = 20.0
"""A stream that heard nothing this long is pinged: keeps idle connections (and NAT
bindings) alive and finds peers that vanished."""
PONG_TIMEOUT_S = 10.0
"""...and dropped if it still hears nothing this long after the ping."""
KEEPALIVE_SWEEP_S = 5.0
CONNECT_DELAYS_S = (0.0, 1.0, 1.5)
"""External media: three tries over about 2.5 s, then the failure is recorded."""
CONNECT_TIMEOUT_S = 5.0

AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse

_MAX_CACHED_HEADERS = 8
_FIN_BINARY = 0x82
_FIN_TEXT = 0x81
_EXTENDED_LENGTH_16 = 126
_HEADER_16 = struct.Struct("!BBH")
_MASK_BIT = 0x80
_PACK_MASKING_KEY = struct.Struct("!L").pack
_random_bits = random.getrandbits
"""A masking key per frame, drawn as aiohttp's own writer draws it (§5.3: it only keeps
proxies from reading the stream; it is no secret)."""


_DATA_TYPES = (WSMsgType.BINARY, WSMsgType.TEXT)
_END_TYPES = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class StreamQueue(WebSocketDataQueue):
    """aiohttp's WebSocket message queue, with data messages handed straight to ``on_data``.

    ``feed_data`` is what aiohttp's parser calls for every complete message. With
    ``on_data`` set, a BINARY or TEXT message goes to it at once, in order; everything
    else (ping, pong, close, errors) is queued for ``receive()`` as usual.
    """

    on_data: Callable[[bytes | str], None] | None = None
    heard = False
    """Set by every message (data or control); ``KeepAlive`` clears it as it sweeps."""

    def feed_data(self, data: WSMessage | WSMessageTextBytes, size: int) -> None:
        self.heard = True
        on_data = self.on_data
        if on_data is not None and data[0] in _DATA_TYPES:
            on_data(data[1])
            return
        super().feed_data(data, size)


class _Watched:
    __slots__ = ("ws", "queue", "last_heard", "pinged_at")

    def __init__(self, ws: AnyWebSocket, queue: StreamQueue, now: float) -> None:
        self.ws = ws
        self.queue = queue
        self.last_heard = now
        self.pinged_at: float | None = None


class KeepAlive:
    """Pings idle stream sockets and drops dead ones, with one timer for all of them."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        idle_s: float = HEARTBEAT_S,
        pong_timeout_s: float = PONG_TIMEOUT_S,
        sweep_s: float = KEEPALIVE_SWEEP_S,
    ) -> None:
        self._loop = loop
        self.idle_s = idle_s
        self.pong_timeout_s = pong_timeout_s
        self.sweep_s = sweep_s
        self._watched: dict[int, _Watched] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._pings: set[asyncio.Task[None]] = set()
        self.pings_sent = 0
        self.dropped = 0

    def watch(self, ws: AnyWebSocket, queue: StreamQueue) -> None:
        self._watched[id(ws)] = _Watched(ws, queue, self._loop.time())
        if self._handle is None:
            self._handle = self._loop.call_later(self.sweep_s, self._sweep)

    def forget(self, ws: AnyWebSocket) -> None:
        self._watched.pop(id(ws), None)
        if not self._watched and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        now = self._loop.time()
        for key, watched in list(self._watched.items()):
            queue = watched.queue
            if queue.heard:
                queue.heard = False
                watched.last_heard = now
                watched.pinged_at = None
            elif watched.pinged_at is not None:
                if now - watched.pinged_at >= self.pong_timeout_s:
                    del self._watched[key]
                    self.dropped += 1
                    self._drop(watched.ws)
            elif now - watched.last_heard >= self.idle_s:
                watched.pinged_at = now
                self._ping(watched.ws)
        self._handle = self._loop.call_later(self.sweep_s, self._sweep) if self._watched else None

    def _ping(self, ws: AnyWebSocket) -> None:
        self.pings_sent += 1
        task = self._loop.create_task(_ping(ws))
        self._pings.add(task)
        task.add_done_callback(self._pings.discard)

    def _drop(self, ws: AnyWebSocket) -> None:
        """No pong: cut the connection; ``pump_stream`` then records the stream as lost."""
        logger.info("stream socket silent %.0f s after a ping: dropped", self.pong_timeout_s)
        writer = getattr(ws, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            transport.abort()


async def _ping(ws: AnyWebSocket) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
        await ws.ping()


_keepalives: dict[asyncio.AbstractEventLoop, KeepAlive] = {}


def keepalive_for(loop: asyncio.AbstractEventLoop) -> KeepAlive:
    """The one ``KeepAlive`` of ``loop`` (made on first use)."""
    keepalive = _keepalives.get(loop)
    if keepalive is None:
        for old in [other for other in _keepalives if other.is_closed()]:
            del _keepalives[old]
        keepalive = _keepalives[loop] = KeepAlive(loop)
    return keepalive


def use_stream_queues() -> bool:
    """Have aiohttp build every WebSocket's message queue as a ``StreamQueue``.

    aiohttp builds the queue in ``WebSocketResponse._post_start`` (server) and in
    ``ClientSession._ws_connect`` (client) from its module-level name; both are swapped.
    False when this aiohttp has no such names (then ``pump_stream`` reads as before).
    """
    modules = (aiohttp.web_ws, aiohttp.client)
    if not all(getattr(module, "WebSocketDataQueue", None) for module in modules):
        return False
    for module in modules:
        module.WebSocketDataQueue = StreamQueue  # type: ignore[attr-defined]
    return True


direct_delivery = use_stream_queues()
"""Whether data messages reach streams without a task wake-up each (see the module docs)."""
STREAM_SOCKET_OPTIONS: dict[str, Any] = (
    {"autoping": False, "heartbeat": None} if direct_delivery else {"heartbeat": HEARTBEAT_S}
)
"""How a stream's server-side ``WebSocketResponse`` is made: keepalive by ``KeepAlive``."""


def frame_header(opcode_byte: int, length_bytes: int, *, masked: bool = False) -> bytes:
    """A frame's header (RFC 6455 §5.2) for a payload under 64 KiB, without the masking
    key that follows it when ``masked`` (every frame a client sends, §5.3)."""
    mask_bit = _MASK_BIT if masked else 0
    if length_bytes < _EXTENDED_LENGTH_16:
        return bytes((opcode_byte, mask_bit | length_bytes))
    return _HEADER_16.pack(opcode_byte, mask_bit | _EXTENDED_LENGTH_16, length_bytes)


class WebSocketSender:
    """Non-blocking sends to one WebSocket, written in order by one task."""

    def __init__(self, ws: AnyWebSocket, name: str) -> None:
        self._ws = ws
        self._queue: deque[Message] = deque()
        self._wakeup = asyncio.Event()
        self._close_with: tuple[int, str] | None = None
        self.dropped_messages = 0
        # one or two entries in practice: a wire's audio messages all have one length
        self._headers: dict[tuple[int, int], bytes] = {}
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def send(self, message: Message) -> None:
        if self._close_with is not None:
            return
        queue = self._queue
        if not queue and self._write_now(message):
            return
        if len(queue) >= MAX_PENDING_MESSAGES:
            queue.popleft()
            self.dropped_messages += 1
        queue.append(message)
        self._wakeup.set()

    def _write_now(self, message: Message) -> bool:
        """Write ``message`` straight to the transport if nothing stands in the way."""
        writer = self._ws._writer
        if writer is None or writer._closing or writer.protocol._paused:
            return False
        transport = writer.transport
        if transport.is_closing():
            return False
        if isinstance(message, bytes):
            payload, opcode_byte = message, _FIN_BINARY
        else:
            payload, opcode_byte = message.encode(), _FIN_TEXT
        length_bytes = len(payload)
        if length_bytes > 0xFFFF:
            return False  # media messages are far smaller; leave the rare big one to aiohttp
        masked = writer.use_mask
        header = self._headers.get((opcode_byte, length_bytes))
        if header is None:
            header = frame_header(opcode_byte, length_bytes, masked=masked)
            if len(self._headers) < _MAX_CACHED_HEADERS:
                self._headers[(opcode_byte, length_bytes)] = header
        if masked:  # a socket we dialled (Plivo, Voxology, external media)
            masking_key = _PACK_MASKING_KEY(_random_bits(32))
            masked_payload = bytearray(payload)
            websocket_mask(masking_key, masked_payload)
            transport.write(header + masking_key + masked_payload)
        else:
            transport.write(header + payload)
        return True

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``/``reason``."""
        if self._close_with is None:
            self._close_with = (code, reason)
            self._wakeup.set()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def cancel(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        ws = self._ws
        queue = self._queue
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while queue:
                    message = queue.popleft()
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                    else:
                        await ws.send_str(message)
                if self._close_with is not None:
                    code, reason = self._close_with
                    await ws.close(code=code, message=reason.encode()[:123])
                    return
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            # the peer went away mid-send: the read loop reports the close
            logger.debug("stream writer stopped: %s", exc)


async def pump_stream(ws: AnyWebSocket, stream: StreamBase, sender: WebSocketSender) -> None:
    """Hand every message from the peer to the stream until the socket closes.

    Messages that came before the stream existed (queued while the upgrade finished)
    are read first; once the queue is empty, data messages go to the stream straight
    from the parser (``StreamQueue.on_data``) and this task only waits for the close.
    """
    loop = asyncio.get_running_loop()
    time = loop.time

    def receive(data: bytes | str) -> None:
        stream.receive(data, time())

    queue = getattr(ws, "_reader", None)
    direct = queue if isinstance(queue, StreamQueue) else None
    keepalive = keepalive_for(loop) if direct is not None else None
    if keepalive is not None and direct is not None:
        keepalive.watch(ws, direct)
    try:
        while True:
            if direct is not None and direct.on_data is None and not direct._buffer:
                direct.on_data = receive  # in order: nothing is queued before it
            message = await ws.receive()
            kind = message.type
            if kind in _DATA_TYPES:
                receive(message.data)
            elif kind is WSMsgType.PING:  # autoping is off (see KeepAlive)
                with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                    await ws.pong(message.data)
            elif kind in _END_TYPES:
                break
    finally:
        if keepalive is not None:
            keepalive.forget(ws)
        if direct is not None:
            direct.on_data = None
        code = ws.close_code
        stream.closed_by_peer(code, "closed by the client" if code else "connection lost")
        sender.close(CLOSE_GOING_AWAY, "stream ended")
        await asyncio.wait({asyncio.ensure_future(sender.wait_closed())}, timeout=2.0)
        sender.cancel()


@functools.lru_cache(maxsize=4)
def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, plus ``ca_file`` when given (``--tls-ca``).

    Built once per ``ca_file`` and shared by every stream we dial: loading the trust
    store took ~60 % of the gateway's core while 50 calls a second each dialled a
    stream (bench, ``--wire plivo``); a context serves any number of connections.
    """
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(ca_file)
    return context


async def connect_with_retries(
    session: aiohttp.ClientSession,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    delays_s: Sequence[float] = CONNECT_DELAYS_S,
) -> aiohttp.ClientWebSocketResponse:
    """Dial ``url``; refused or failed TLS is retried (about 3 tries over 2–3 s).

    Raises ``ConnectionError`` naming the last failure when every try failed.
    """
    last = ""
    for attempt, delay in enumerate(delays_s, start=1):
        if delay:
            await asyncio.sleep(delay)
        try:
            return await session.ws_connect(
                url,
                ssl=(ssl_context or True) if url.startswith("wss://") else True,
                autoping=not direct_delivery,  # pump_stream answers pings (KeepAlive)
                heartbeat=None if direct_delivery else HEARTBEAT_S,
                timeout=aiohttp.ClientWSTimeout(ws_close=CONNECT_TIMEOUT_S),
                max_msg_size=1024 * 1024,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            logger.info("external media %s: try %d failed: %s", url, attempt, last)
    raise ConnectionError(f"could not connect to {url} after {len(delays_s)} tries ({last})")

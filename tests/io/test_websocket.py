"""WebSocketSender against a real aiohttp server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from callstream.io.websocket import (
    STREAM_SOCKET_OPTIONS,
    KeepAlive,
    StreamQueue,
    WebSocketSender,
    direct_delivery,
    frame_header,
    keepalive_for,
    pump_stream,
)

SenderUse = Callable[[WebSocketSender], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1 answering ``/ws`` with ``handler``; its URL."""
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


def test_frame_header_is_fin_opcode_and_unmasked_length() -> None:
    assert frame_header(0x82, 172) == b"\x82\x7e\x00\xac"
    assert frame_header(0x82, 125) == b"\x82\x7d"
    assert frame_header(0x81, 0) == b"\x81\x00"
    assert frame_header(0x81, 0xFFFF) == b"\x81\x7e\xff\xff"


async def serve(use: SenderUse) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sender = WebSocketSender(ws, "test-writer")
        await use(sender)
        await sender.wait_closed()
        return ws

    async with serving(handler) as url:
        yield url


async def receive_all(url: str) -> tuple[list[tuple[WSMsgType, bytes | str]], int | None]:
    received: list[tuple[WSMsgType, bytes | str]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for message in ws:
            received.append((message.type, message.data))
        return received, ws.close_code


@pytest.fixture
def messages() -> list[bytes | str]:
    # 172 bytes (an rtp-wire packet: 16-bit length), 3 bytes, text, 70 000 bytes (aiohttp's path)
    return [bytes(range(172)), b"\x01\x02\x03", "héllo", b"\xd5" * 70_000, bytes(172)]


async def test_messages_arrive_whole_and_in_order_then_the_close(
    messages: list[bytes | str],
) -> None:
    async def use(sender: WebSocketSender) -> None:
        for message in messages:
            sender.send(message)
        # the small ones went straight to the transport (no task woken); the big one is
        # left to aiohttp's writer task, and what follows it waits behind it
        assert list(sender._queue) == messages[3:]
        sender.close(1000, "done")

    async for url in serve(use):
        received, close_code = await receive_all(url)
    expected = [(WSMsgType.TEXT if isinstance(m, str) else WSMsgType.BINARY, m) for m in messages]
    assert received == expected
    assert close_code == 1000


async def test_sends_while_the_transport_is_paused_are_queued_and_drained_in_order() -> None:
    async def use(sender: WebSocketSender) -> None:
        writer = sender._ws._writer  # type: ignore[union-attr]
        assert writer is not None
        sender.send(b"first")  # written at once
        writer.protocol._paused = True  # as if the kernel buffer were full
        sender.send(b"second")
        sender.send(b"third")
        assert list(sender._queue) == [b"second", b"third"]
        sender.send(b"fourth")  # something is queued: never written ahead of it
        assert len(sender._queue) == 3
        writer.protocol._paused = False
        await asyncio.sleep(0.05)
        assert not sender._queue
        sender.send(b"fifth")
        sender.close(1000, "done")

    async for url in serve(use):
        received, _ = await receive_all(url)
    assert [data for _, data in received] == [b"first", b"second", b"third", b"fourth", b"fifth"]


# -- pump_stream: data messages straight from aiohttp's parser to the stream ------------------
class RecordingStream:
    """What pump_stream needs of a stream (unit test of io/websocket.py alone)."""

    def __init__(self) -> None:
        self.received: list[bytes | str] = []
        self.closed: tuple[int | None, str] | None = None

    def receive(self, message: bytes | str, now: float) -> None:
        self.received.append(message)

    def closed_by_peer(self, code: int | None, reason: str) -> None:
        self.closed = (code, reason)


async def test_a_server_stream_gets_every_message_in_order_without_a_wakeup_each() -> None:
    assert direct_delivery  # the installed aiohttp takes StreamQueue; else this regresses
    stream = RecordingStream()
    queues: list[object] = []
    pumped = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        queues.append(ws._reader)
        await asyncio.sleep(0.2)  # the client's first messages queue up meanwhile
        sender = WebSocketSender(ws, "test-writer")
        await pump_stream(ws, stream, sender)  # type: ignore[arg-type]
        pumped.set()
        return ws

    sent: list[bytes | str] = [bytes([n]) * 160 for n in range(5)]
    async with serving(handler) as url, aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            for message in sent:  # before the server's stream exists
                await ws.send_bytes(message)  # type: ignore[arg-type]
            await asyncio.sleep(0.4)
            queue = queues[0]
            assert isinstance(queue, StreamQueue) and queue.on_data is not None
            for n in range(5, 200):
                sent.append(bytes([n]) * 160 if n % 7 else f"text {n}")
                if isinstance(sent[-1], str):
                    await ws.send_str(sent[-1])
                else:
                    await ws.send_bytes(sent[-1])
            await ws.ping()  # control frames still go through aiohttp's queue
            await ws.close()
        await asyncio.wait_for(pumped.wait(), 5)
    assert stream.received == sent
    assert stream.closed is not None and stream.closed[0] == 1000


async def test_a_dialled_stream_gets_every_message_in_order_too() -> None:
    sent: list[bytes | str] = [bytes([n % 256]) * 160 for n in range(300)]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for message in sent:
            await ws.send_bytes(message)  # type: ignore[arg-type]
        await ws.close()
        return ws

    stream = RecordingStream()
    async with serving(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        assert isinstance(ws._reader, StreamQueue)
        sender = WebSocketSender(ws, "test-writer")
        await asyncio.wait_for(pump_stream(ws, stream, sender), 5)  # type: ignore[arg-type]
    assert stream.received == sent
    assert stream.closed is not None and stream.closed[0] == 1000


# -- keepalive: one sweep for every stream socket, not aiohttp's per-message heartbeat -------
@pytest.fixture
async def fast_keepalive() -> AsyncIterator[KeepAlive]:
    keepalive = keepalive_for(asyncio.get_running_loop())
    saved = keepalive.idle_s, keepalive.pong_timeout_s, keepalive.sweep_s
    keepalive.idle_s, keepalive.pong_timeout_s, keepalive.sweep_s = 0.3, 0.3, 0.05
    yield keepalive
    keepalive.idle_s, keepalive.pong_timeout_s, keepalive.sweep_s = saved


async def stream_server(stream: RecordingStream, done: asyncio.Event) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(**STREAM_SOCKET_OPTIONS)
        await ws.prepare(request)
        await pump_stream(ws, stream, WebSocketSender(ws, "test-writer"))  # type: ignore[arg-type]
        done.set()
        return ws

    async with serving(handler) as url:
        yield url


async def test_a_silent_client_is_pinged_and_kept_while_it_answers(
    fast_keepalive: KeepAlive,
) -> None:
    stream, done = RecordingStream(), asyncio.Event()
    pings_before = fast_keepalive.pings_sent
    async for url in stream_server(stream, done):
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            # says nothing; aiohttp's client answers pings while it reads
            reading = asyncio.ensure_future(ws.receive())
            await asyncio.sleep(1.5)
            assert fast_keepalive.pings_sent - pings_before >= 2
            assert not done.is_set() and stream.closed is None
            await ws.send_bytes(b"still here")
            await ws.close()
            reading.cancel()
        await asyncio.wait_for(done.wait(), 5)
    assert stream.received == [b"still here"] and stream.closed is not None
    assert stream.closed[0] == 1000


async def test_a_client_that_never_answers_a_ping_is_dropped(fast_keepalive: KeepAlive) -> None:
    stream, done = RecordingStream(), asyncio.Event()
    dropped_before = fast_keepalive.dropped
    async for url in stream_server(stream, done):
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, autoping=False) as ws,  # reads nothing, answers nothing
        ):
            await asyncio.wait_for(done.wait(), 5)
            assert fast_keepalive.dropped == dropped_before + 1
            assert stream.closed is not None
            del ws


async def test_the_clients_ping_is_answered() -> None:
    stream, done = RecordingStream(), asyncio.Event()
    async for url in stream_server(stream, done):
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, autoping=False) as ws,
        ):
            await ws.ping(b"are you there")
            answer = await asyncio.wait_for(ws.receive(), 5)
            assert (answer.type, answer.data) == (WSMsgType.PONG, b"are you there")
            await ws.close()
        await asyncio.wait_for(done.wait(), 5)
    assert stream.received == []


async def test_a_dialled_socket_writes_masked_frames_at_once() -> None:
    """Client-side frames must be masked (RFC 6455 §5.3): each written frame carries the
    mask bit and a key that unmasks to the message, and the server reads them intact."""
    got: list[bytes | str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            got.append(message.data)
        return ws

    sent: list[bytes | str] = [bytes(range(172)), '{"event":"media"}', b"\xd5" * 320, "é" * 70]
    async with serving(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        writer = ws._writer
        real = writer.transport
        wire: list[bytes] = []

        class Recording:
            def write(self, data: bytes) -> None:
                wire.append(bytes(data))
                real.write(data)

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

        writer.transport = Recording()  # type: ignore[assignment]
        sender = WebSocketSender(ws, "test-writer")
        for message in sent:
            sender.send(message)
            assert not sender._queue  # written at once, not left to the writer task
        writer.transport = real
        for frame, message in zip(wire, sent, strict=True):
            payload = message.encode() if isinstance(message, str) else message
            assert frame[1] & 0x80  # the mask bit
            offset = 2 if len(payload) < 126 else 4
            key, masked = frame[offset : offset + 4], frame[offset + 4 :]
            assert bytes(b ^ key[i % 4] for i, b in enumerate(masked)) == payload
        sender.close(1000, "done")
        await sender.wait_closed()
        await ws.close()
    assert got == sent

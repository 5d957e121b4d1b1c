"""WebSocketSender against a real aiohttp server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from callstream.io.websocket import WebSocketSender, frame_header, masked_payload

SenderUse = Callable[[WebSocketSender], Awaitable[None]]


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

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


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


def test_masked_frame_header_sets_the_mask_bit() -> None:
    assert frame_header(0x81, 125, masked=True) == b"\x81\xfd"
    assert frame_header(0x82, 172, masked=True) == b"\x82\xfe\x00\xac"


def test_masked_payload_is_the_key_then_the_payload_xored_with_it() -> None:
    payload = bytes(range(256)) + b"tail"
    masked = masked_payload(payload, 0xA1B2C3D4)
    key, body = masked[:4], masked[4:]
    assert key == b"\xa1\xb2\xc3\xd4"
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload
    assert masked_payload(b"", 1) == b"\x00\x00\x00\x01"


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def raw_frames_server(
    frames: list[tuple[int, bool, bytes]], done: asyncio.Event
) -> tuple[asyncio.Server, str]:
    """A WebSocket server written out by hand: it answers the handshake, then records
    each frame as it is on the wire (opcode byte, mask bit, unmasked payload) until a
    close frame, which it echoes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            masked = bool(second & 0x80)
            mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
            body = await reader.readexactly(length)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
            frames.append((first, masked, payload))
            if first & 0x0F == 0x8:  # close: echo it, unmasked, and hang up
                writer.write(bytes((0x88, len(payload))) + payload)
                await writer.drain()
                writer.close()
                done.set()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/ws"


async def test_a_client_side_sender_masks_every_frame_and_keeps_the_order() -> None:
    """A stream the gateway dials (Plivo, Voxology): every frame on the wire carries the
    mask bit and a key, small ones are written at once, and a big one that goes through
    aiohttp is never overtaken by the ones sent after it."""
    frames: list[tuple[int, bool, bytes]] = []
    done = asyncio.Event()
    server, url = await raw_frames_server(frames, done)
    messages: list[bytes | str] = ['{"event":"media"}', bytes(range(172)), b"\xd5" * 70_000,
                                   "after the big one", b"last"]  # fmt: skip
    async with server, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        sender = WebSocketSender(ws, "test-client-writer")
        sender.send(messages[0])
        sender.send(messages[1])
        assert not sender._queue  # written straight to the transport, masked
        for message in messages[2:]:
            sender.send(message)
        assert list(sender._queue) == messages[2:]  # queued behind the big one
        sender.close(1000, "done")
        await asyncio.wait_for(done.wait(), 5)
        await sender.wait_closed()
    assert all(masked for _, masked, _ in frames)
    expected = [(0x81 if isinstance(m, str) else 0x82, m.encode() if isinstance(m, str) else m)
                for m in messages]  # fmt: skip
    assert [(first, payload) for first, _, payload in frames[:-1]] == expected
    assert frames[-1][0] == 0x88 and frames[-1][2][:2] == (1000).to_bytes(2, "big")
    assert len({payload[:4] for _, _, payload in frames}) > 1  # not one fixed key


async def test_a_client_side_sender_through_aiohttps_server() -> None:
    """aiohttp's server reads the masked frames back as they were sent."""
    received: list[bytes | str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            received.append(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
            sender = WebSocketSender(ws, "test-client-writer")
            for index in range(200):
                sender.send(f"text {index}" if index % 2 else bytes([index]) * 160)
            sender.close(1000, "done")
            await sender.wait_closed()
            assert ws.close_code == 1000
    finally:
        await runner.cleanup()
    assert received == [f"text {i}" if i % 2 else bytes([i]) * 160 for i in range(200)]

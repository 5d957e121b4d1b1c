"""WebSocketSender against a real aiohttp server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from callstream.io.websocket import WebSocketSender, frame_header

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

"""Streams the gateway dials: external media (VoipBin), Voxology and Plivo streams.

``DialedStream`` connects to the application's WebSocket (retrying briefly: about 3
tries over 2–3 s), attaches the stream once connected, and carries it until either side
closes. A connection that cannot be made, or that the application drops mid-call, is
recorded on the stream (and reported through ``on_failed``/``on_dropped``, e.g. Plivo's
DroppedStream callback); the call itself is never touched.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import aiohttp

from callstream.calls.streams import StreamBase
from callstream.io.websocket import WebSocketSender, connect_with_retries, pump_stream
from callstream.wire.base import Message

logger = logging.getLogger("callstream.streams")

StreamFactory = Callable[[Callable[[Message], None], Callable[[int, str], None]], StreamBase]
CallLog = Callable[..., None]


class DialedStream:
    """One outgoing WebSocket and the stream it carries."""

    def __init__(
        self,
        url: str,
        make_stream: StreamFactory,
        *,
        attach: Callable[[StreamBase], None],
        ssl_context: ssl.SSLContext | None,
        log: CallLog,
        on_failed: Callable[[str], None] | None = None,
        on_dropped: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self._attach = attach
        self._ssl_context = ssl_context
        self._log = log
        self._on_failed = on_failed
        self._on_dropped = on_dropped
        self._sender: WebSocketSender | None = None
        self._closing: tuple[int, str] | None = None
        self.stream = make_stream(self._send, self._close)

    def _send(self, message: Message) -> None:
        if self._sender is not None:
            self._sender.send(message)

    def _close(self, code: int, reason: str) -> None:
        self._closing = (code, reason)
        if self._sender is not None:
            self._sender.close(code, reason)

    async def run(self) -> None:
        stream = self.stream
        async with aiohttp.ClientSession() as session:
            try:
                ws = await connect_with_retries(session, self.url, ssl_context=self._ssl_context)
            except ConnectionError as exc:
                stream.fail(str(exc))
                self._log(stream.call_id, "error", message=f"{stream.encapsulation}: {exc}")
                if self._on_failed is not None:
                    self._on_failed(str(exc))
                return
            if self._closing is not None:  # stopped (or the call ended) while dialling
                await ws.close(code=self._closing[0], message=self._closing[1].encode())
                return
            self._sender = WebSocketSender(ws, f"dialed-stream-writer-{stream.id}")
            self._attach(stream)
            await pump_stream(ws, stream, self._sender)
        if stream.ended_by_peer:
            self._log(stream.call_id, "stream_dropped", stream_id=stream.id, url=self.url)
            if self._on_dropped is not None:
                self._on_dropped()

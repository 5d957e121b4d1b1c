"""What the Voxology and Plivo tests share: the customer's side of both services.

``ProviderApp`` is the application as a customer of either service runs it: one aiohttp
server on 127.0.0.1, in its own thread, that serves

- WebSockets on ``/ws/<name>``, recording every message with the moment it arrived
  (``time.monotonic``, for ordering only) and letting the test send messages back;
  ``/ws/refuse...`` answers the upgrade with 403 (a service that refuses the stream);
- a Plivo answer URL on ``/answer`` returning ``answer_xml`` (requests recorded);
- Plivo status callbacks on ``/callback/<name>`` (GET query or POST form, recorded).

Nothing here asserts timings: a stream's own media messages (50 a second per track)
are the clock the tests count in.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from callstream.codecs.g711 import ulaw_decode
from tests.interop.harness import HOST


@dataclass
class WsConnection:
    """One WebSocket the gateway opened to the application."""

    path: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    close_code: int | None = None
    ws: web.WebSocketResponse | None = None

    def of(self, kind: str, key: str = "type") -> list[dict[str, Any]]:
        return [message for message in self.messages if message.get(key) == kind]


@dataclass(frozen=True)
class HttpRequest:
    """One request to the answer URL or a status callback: method, path and parameters."""

    method: str
    path: str
    params: dict[str, str]
    arrived: float


OnMessage = Callable[["ProviderApp", WsConnection, dict[str, Any]], None]


class ProviderApp:
    """The customer's application (see module docs). ``on_message`` runs in the server's
    loop for every JSON message received, so it may reply at once through ``send_now``."""

    def __init__(self, port: int, answer_xml: str = "", on_message: OnMessage | None = None):
        self.port = port
        self.answer_xml = answer_xml
        self.on_message = on_message
        self.connections: list[WsConnection] = []
        self.requests: list[HttpRequest] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="provider-app", daemon=True)

    # -- addresses ----------------------------------------------------------------------
    def ws_url(self, name: str = "stream") -> str:
        return f"ws://{HOST}:{self.port}/ws/{name}"

    def http_url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    # -- life -----------------------------------------------------------------------------
    def __enter__(self) -> ProviderApp:
        self._thread.start()
        assert self._ready.wait(10), "the test's application server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/ws/{name:.*}", self._websocket)
        app.router.add_route("*", "/answer{rest:.*}", self._answer)
        app.router.add_route("*", "/callback/{name:.*}", self._callback)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    # -- handlers -------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> HttpRequest:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        recorded = HttpRequest(request.method, request.path, params, time.monotonic())
        self.requests.append(recorded)
        return recorded

    async def _answer(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text=self.answer_xml, content_type="application/xml")

    async def _callback(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="ok")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["name"].startswith("refuse"):
            self.connections.append(WsConnection(request.path, close_code=-403))
            return web.Response(status=403, text="refused")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = WsConnection(request.path, ws=ws)
        self.connections.append(connection)
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            connection.raw.append(message.data)
            connection.arrived.append(time.monotonic())
            parsed = json.loads(message.data)
            connection.messages.append(parsed)
            if self.on_message is not None:
                self.on_message(self, connection, parsed)
        connection.close_code = ws.close_code or 0
        return ws

    # -- the test's side ------------------------------------------------------------------
    def send_now(self, connection: WsConnection, message: object) -> None:
        """From ``on_message`` (the server's loop): queue one text message."""
        assert connection.ws is not None
        text = message if isinstance(message, str) else json.dumps(message)
        self._loop.create_task(connection.ws.send_str(text))

    def send(self, connection: WsConnection, message: object) -> None:
        """From the test's thread."""
        self._loop.call_soon_threadsafe(self.send_now, connection, message)

    def wait_for(self, what: str, done: Callable[[], object], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"waited {timeout} s for {what}; connections: "
                    f"{[(c.path, len(c.messages), c.close_code) for c in self.connections]}; "
                    f"requests: {self.requests}"
                )
            time.sleep(0.02)

    def wait_closed(self, count: int = 1, timeout: float = 30.0) -> list[WsConnection]:
        """Wait until ``count`` connections were made and all of them closed."""
        self.wait_for(
            f"{count} closed connections",
            lambda: (
                len(self.connections) >= count
                and all(c.close_code is not None for c in self.connections)
            ),
            timeout,
        )
        return list(self.connections)

    def callbacks(self, event: str | None = None) -> list[HttpRequest]:
        found = [r for r in self.requests if r.path.startswith("/callback/")]
        return [r for r in found if event is None or r.params.get("Event") == event]


# ---------------------------------------------------------------- audio in messages


def voxology_audio(messages: list[dict[str, Any]], track: str) -> bytes:
    """The 16-bit PCM of one Voxology track's live_track messages (base64 μ-law)."""
    return b"".join(
        ulaw_decode(base64.b64decode(m["media"]))
        for m in messages
        if m.get("type") == "live_track" and m.get("name") == track
    )


# ---------------------------------------------------------------- message logs


def truncated(raw: str, keep: int = 40) -> str:
    """A message with its audio (media / payload) cut to ``keep`` characters."""
    message = json.loads(raw)
    for holder in (message, message.get("media") if isinstance(message.get("media"), dict) else {}):
        for key in ("media", "payload"):
            value = holder.get(key)
            if isinstance(value, str) and len(value) > keep:
                holder[key] = f"{value[:keep]}...({len(value)} chars)"
    return json.dumps(message)


def save_message_log(path: Path, raw: list[str], head: int = 15, tail: int = 3) -> Path:
    """The first ``head`` and last ``tail`` messages as JSON lines, audio truncated; the
    path is printed (``pytest -s`` shows it and the log)."""
    chosen = raw if len(raw) <= head + tail else raw[:head] + raw[-tail:]
    lines = [truncated(message) for message in chosen]
    path.write_text("\n".join(lines) + "\n")
    skipped = len(raw) - len(chosen)
    print(f"\n===== message log: {path} ({len(raw)} messages, {skipped} in the middle left out)")
    for index, line in enumerate(lines):
        if index == head and skipped:
            print(f"... {skipped} more ...")
        print(line)
    return path


# ---------------------------------------------------------------- TOML for config


def toml_value(value: object) -> str:
    """A JSON value as a TOML inline value (config takes a Voxology script verbatim)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)  # TOML basic strings take JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"TOML has no {type(value).__name__} ({value!r})")

"""``GET /v1.0/calls/{id}/media_stream`` and ``/v1.0/conferences/{id}/media_stream``:
VoipBin's bi-directional media streams (seeds 000–002), upgraded to a WebSocket.

Every refusal happens before the upgrade, as an HTTP status with the JSON error body
(the auth middleware answers 401): 404 unknown id or another account's, 400 missing or
bad ``encapsulation``/option, 409 the call or conference has ended, 429 over the
per-call stream limit, 400 a request that is not a WebSocket upgrade. The query's other
parameters (``format``) are the wire's options.
"""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web

from callstream.errors import NotFoundError
from callstream.io.websocket import STREAM_SOCKET_OPTIONS, WebSocketSender, pump_stream

from .errors import ApiError
from .operations import ACCOUNT_KEY, SERVICE_KEY, Operation, QueryParam
from .schemas import Choice, Nullable

MAX_MESSAGE_BYTES = 1024 * 1024
RESERVED_QUERY = frozenset({"token", "encapsulation"})


def _uuid(request: web.Request, kind: str) -> str:
    raw = request.match_info["id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFoundError(f"{kind} not found: {raw[:64]!r}") from None


async def call_media_stream(request: web.Request) -> web.StreamResponse:
    return await _media_stream(request, call_id=_uuid(request, "call"))


async def conference_media_stream(request: web.Request) -> web.StreamResponse:
    return await _media_stream(request, conference_id=_uuid(request, "conference"))


async def _media_stream(
    request: web.Request, *, call_id: str | None = None, conference_id: str | None = None
) -> web.StreamResponse:
    service = request.app[SERVICE_KEY]
    options = {k: v for k, v in request.query.items() if k not in RESERVED_QUERY}
    prepared = await service.prepare_stream(
        request[ACCOUNT_KEY],
        call_id=call_id,
        conference_id=conference_id,
        encapsulation=request.query.get("encapsulation"),
        options=options,
    )
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, **STREAM_SOCKET_OPTIONS)
    if not ws.can_prepare(request).ok:
        raise ApiError(
            400, "not_websocket", "this URL upgrades to a WebSocket (Upgrade: websocket)"
        )
    await ws.prepare(request)
    sender = WebSocketSender(ws, f"stream-writer-{prepared.wire.stream_id}")
    stream = service.start_stream(prepared, send=sender.send, close=sender.close)
    await pump_stream(ws, stream, sender)
    return ws


TAG: Final = "Media streams"
UPGRADE: Final = {
    "type": "string",
    "description": "101 Switching Protocols: a WebSocket carrying the stream (see docs)",
}
STREAM_QUERY: Final = (
    QueryParam("encapsulation", Choice(("rtp", "sln", "audiosocket"))),
    QueryParam("format", Nullable(Choice(("ulaw", "slin")))),
)

OPERATIONS: Final = (
    Operation(
        "GET",
        "/v1.0/calls/{id}/media_stream",
        "Upgrade to a WebSocket carrying the call's audio both ways",
        TAG,
        UPGRADE,
        raw_handler=call_media_stream,
        authenticated=True,
        query=STREAM_QUERY,
        status=101,
    ),
    Operation(
        "GET",
        "/v1.0/conferences/{id}/media_stream",
        "Upgrade to a WebSocket carrying the conference's mix both ways",
        TAG,
        UPGRADE,
        raw_handler=conference_media_stream,
        authenticated=True,
        query=STREAM_QUERY,
        status=101,
    ),
)

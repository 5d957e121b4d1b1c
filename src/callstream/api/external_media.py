"""External media for live calls and conferences without a flow (issue 4):
``POST /v1.0/{calls|conferences}/{id}/external_media`` dials the application's
WebSocket and streams audio both ways; ``DELETE …/external_media/{media_id}`` stops it.
The response is the media stream's record (status ``connecting`` while dialling; a
connection that fails after its retries ends ``failed`` with the error recorded).
"""

from __future__ import annotations

from typing import Any, Final

from .operations import ApiRequest, Operation
from .schemas import Checked, Choice, Field, Nullable, Record, Text, fail, ref

TAG: Final = "External media"


def _check_url(value: str, path: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise fail(path, "must be a ws:// or wss:// URL")
    return value


EXTERNAL_MEDIA_START: Final = Record(
    {
        "url": Field(Checked(Text(1, 2000), _check_url, {"pattern": "^wss?://"})),
        "encapsulation": Field(Choice(("rtp", "sln", "audiosocket"))),
        "format": Field(Nullable(Choice(("ulaw", "slin"))), required=False, default=None),
    }
)


async def _start(request: ApiRequest, **owner: str) -> dict[str, Any]:
    record = await request.service.start_external_media(
        request.account,
        url=request.body["url"],
        encapsulation=request.body["encapsulation"],
        format=request.body["format"],
        **owner,
    )
    result: dict[str, Any] = record.to_json()
    return result


async def start_for_call(request: ApiRequest) -> dict[str, Any]:
    return await _start(request, call_id=request.resource_id("id", "call"))


async def start_for_conference(request: ApiRequest) -> dict[str, Any]:
    return await _start(request, conference_id=request.resource_id("id", "conference"))


async def _stop(request: ApiRequest, kind: str) -> dict[str, Any]:
    owner_id = request.resource_id("id", kind)
    media_id = request.resource_id("media_id", "external media")
    (record,) = await request.service.stop_external_media(request.account, owner_id, media_id)
    result: dict[str, Any] = record.to_json()
    return result


async def stop_for_call(request: ApiRequest) -> dict[str, Any]:
    return await _stop(request, "call")


async def stop_for_conference(request: ApiRequest) -> dict[str, Any]:
    return await _stop(request, "conference")


OPERATIONS: Final = (
    Operation(
        "POST",
        "/v1.0/calls/{id}/external_media",
        "Dial a WebSocket and stream the call's audio both ways",
        TAG,
        ref("MediaStream"),
        start_for_call,
        body=EXTERNAL_MEDIA_START,
    ),
    Operation(
        "DELETE",
        "/v1.0/calls/{id}/external_media/{media_id}",
        "Stop a call's external media",
        TAG,
        ref("MediaStream"),
        stop_for_call,
    ),
    Operation(
        "POST",
        "/v1.0/conferences/{id}/external_media",
        "Dial a WebSocket and stream the conference's mix both ways",
        TAG,
        ref("MediaStream"),
        start_for_conference,
        body=EXTERNAL_MEDIA_START,
    ),
    Operation(
        "DELETE",
        "/v1.0/conferences/{id}/external_media/{media_id}",
        "Stop a conference's external media",
        TAG,
        ref("MediaStream"),
        stop_for_conference,
    ),
)

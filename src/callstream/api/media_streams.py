"""``/v1.0/media_streams``: the records of media streams (issue 4, "Streams are records
too"), read through the call service, which flushes first so a read sees every state
change so far: the streams the application opened on ``…/media_stream`` (direction
``inbound``) and the ones the gateway dialled as external media (``outbound``).

VoipBin lists resources newest first with ``page_size``/``page_token``
(api.voipbin.net, "Pagination"); ``call_id`` and ``conference_id`` narrow the list.
"""

from __future__ import annotations

from typing import Any, Final

from .operations import PAGINATION, ApiRequest, Operation, QueryParam
from .schemas import Uuid, page_of, ref

TAG: Final = "Media streams"
CALL_ID: Final = QueryParam("call_id", Uuid("only the streams of this call"))
CONFERENCE_ID: Final = QueryParam("conference_id", Uuid("only the streams of this conference"))


async def list_media_streams(request: ApiRequest) -> dict[str, Any]:
    return await request.page_of(
        request.service.list_media_streams(
            request.account,
            call_id=request.query["call_id"],
            conference_id=request.query["conference_id"],
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_media_stream(request: ApiRequest) -> dict[str, Any]:
    stream_id = request.resource_id("id", "media stream")
    return (await request.service.get_media_stream(request.account, stream_id)).to_json()


OPERATIONS: Final = (
    Operation(
        "GET",
        "/v1.0/media_streams",
        "List the account's media streams, newest first",
        TAG,
        page_of("MediaStream"),
        list_media_streams,
        query=(CALL_ID, CONFERENCE_ID, *PAGINATION),
    ),
    Operation(
        "GET",
        "/v1.0/media_streams/{id}",
        "Get a media stream's record",
        TAG,
        ref("MediaStream"),
        get_media_stream,
    ),
)

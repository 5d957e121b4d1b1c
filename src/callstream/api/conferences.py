"""``/v1.0/conferences``: conferences and their participant calls, through the call
service (reads see every state change already written).
"""

from __future__ import annotations

from typing import Any, Final

from .operations import PAGINATION, ApiRequest, Operation
from .schemas import CONFERENCE_CALL, CONFERENCE_CREATE, page_of, ref

TAG: Final = "Conferences"


async def create_conference(request: ApiRequest) -> dict[str, Any]:
    conference = await request.service.create_conference(
        request.account, name=request.body["name"], detail=request.body["detail"]
    )
    return conference.to_json()


async def list_conferences(request: ApiRequest) -> dict[str, Any]:
    return await request.page_of(
        request.service.list_conferences(
            request.account,
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_conference(request: ApiRequest) -> dict[str, Any]:
    conference_id = request.resource_id("id", "conference")
    return (await request.service.get_conference(request.account, conference_id)).to_json()


async def end_conference(request: ApiRequest) -> dict[str, Any]:
    conference_id = request.resource_id("id", "conference")
    return (await request.service.end_conference(request.account, conference_id)).to_json()


async def add_call(request: ApiRequest) -> dict[str, Any]:
    conference_id = request.resource_id("id", "conference")
    conference = await request.service.add_conference_call(
        request.account, conference_id, request.body["call_id"]
    )
    return conference.to_json()


async def remove_call(request: ApiRequest) -> dict[str, Any]:
    conference_id = request.resource_id("id", "conference")
    call_id = request.resource_id("call_id", "call")
    conference = await request.service.remove_conference_call(
        request.account, conference_id, call_id
    )
    return conference.to_json()


OPERATIONS: Final = (
    Operation(
        "POST",
        "/v1.0/conferences",
        "Create a conference",
        TAG,
        ref("Conference"),
        create_conference,
        body=CONFERENCE_CREATE,
    ),
    Operation(
        "GET",
        "/v1.0/conferences",
        "List the account's conferences, newest first",
        TAG,
        page_of("Conference"),
        list_conferences,
        query=PAGINATION,
    ),
    Operation(
        "GET",
        "/v1.0/conferences/{id}",
        "Get a conference",
        TAG,
        ref("Conference"),
        get_conference,
    ),
    Operation(
        "DELETE",
        "/v1.0/conferences/{id}",
        "End a conference; participants leave per flow",
        TAG,
        ref("Conference"),
        end_conference,
    ),
    Operation(
        "POST",
        "/v1.0/conferences/{id}/calls",
        "Add a call to a conference",
        TAG,
        ref("Conference"),
        add_call,
        body=CONFERENCE_CALL,
    ),
    Operation(
        "DELETE",
        "/v1.0/conferences/{id}/calls/{call_id}",
        "Remove a call from a conference",
        TAG,
        ref("Conference"),
        remove_call,
    ),
)

"""``/v1.0/calls``: place outbound calls, list and read them, hang them up.

Shapes follow VoipBin's call API (api.voipbin.net, "Call"): ``POST /v1.0/calls`` takes
``{source, destinations[], actions[] | flow_id}`` and answers
``{"calls": [...], "groupcalls": [...]}`` (callstream makes no group calls: always empty).
The tutorial's older singular ``destination`` is accepted too.
"""

from __future__ import annotations

from typing import Any, Final

from callstream.errors import ConfigError
from callstream.store.records import CallStatus

from .operations import PAGINATION, ApiRequest, Operation, QueryParam
from .schemas import CALL_CREATE, Choice, fail, page_of, ref

TAG: Final = "Calls"
STATUS: Final = QueryParam(
    "status", Choice(tuple(status.value for status in CallStatus), "only calls in this status")
)


async def create_calls(request: ApiRequest) -> dict[str, Any]:
    body = request.body
    destinations, single = body["destinations"], body["destination"]
    if destinations is not None and single is not None:
        raise ConfigError("give destinations or destination, not both")
    if destinations is None:
        if single is None:
            raise fail("destinations", "is required")
        destinations = [single]
    actions, flow_id = body["actions"], body["flow_id"]
    given = [name for name in ("actions", "flow_id", "answer_url", "xml") if body[name] is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of actions, flow_id, answer_url or xml")
    if flow_id is not None and await request.store.get_flow(request.account.id, flow_id) is None:
        raise fail("flow_id", "no such flow")
    calls = await request.service.create_calls(
        request.account,
        source=body["source"],
        destinations=destinations,
        actions=actions,
        flow_id=flow_id,
        answer_url=body["answer_url"],
        answer_method=body["answer_method"],
        xml=body["xml"],
    )
    return {"calls": [call.to_json() for call in calls], "groupcalls": []}


async def list_calls(request: ApiRequest) -> dict[str, Any]:
    status = request.query["status"]
    return await request.page_of(
        request.service.list_calls(
            request.account,
            status=None if status is None else CallStatus(status),
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_call(request: ApiRequest) -> dict[str, Any]:
    call_id = request.resource_id("id", "call")
    return (await request.service.get_call(request.account, call_id)).to_json()


async def hangup_call(request: ApiRequest) -> dict[str, Any]:
    call_id = request.resource_id("id", "call")
    return (await request.service.hangup_call(request.account, call_id)).to_json()


CALLS_CREATED: Final = {
    "type": "object",
    "properties": {
        "calls": {"type": "array", "items": ref("Call")},
        "groupcalls": {"type": "array", "items": {"type": "object"}, "maxItems": 0},
    },
    "required": ["calls", "groupcalls"],
}

OPERATIONS: Final = (
    Operation(
        "POST",
        "/v1.0/calls",
        "Place one outbound call per destination",
        TAG,
        CALLS_CREATED,
        create_calls,
        body=CALL_CREATE,
    ),
    Operation(
        "GET",
        "/v1.0/calls",
        "List the account's calls, newest first",
        TAG,
        page_of("Call"),
        list_calls,
        query=(STATUS, *PAGINATION),
    ),
    Operation("GET", "/v1.0/calls/{id}", "Get a call", TAG, ref("Call"), get_call),
    Operation(
        "POST",
        "/v1.0/calls/{id}/hangup",
        "Hang up a call (an ended call is returned as is)",
        TAG,
        ref("Call"),
        hangup_call,
    ),
    Operation(
        "DELETE",
        "/v1.0/calls/{id}",
        "Hang up the call if live; the record is kept and returned",
        TAG,
        ref("Call"),
        hangup_call,
    ),
)

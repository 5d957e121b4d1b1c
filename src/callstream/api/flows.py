"""``/v1.0/flows``: named action lists that calls (``flow_id``) and inbound routes run.

Actions are validated with ``flows.actions.parse_actions`` before anything is stored and
kept as the request wrote them, each given an ``id`` (a UUID) where it had none.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from callstream.errors import ConflictError, NotFoundError
from callstream.store.records import FlowRecord, utcnow

from .operations import PAGINATION, ApiRequest, Operation
from .schemas import FLOW_WRITE, page_of, ref

TAG: Final = "Flows"


async def _flow(request: ApiRequest) -> FlowRecord:
    flow_id = request.resource_id("id", "flow")
    flow = await request.store.get_flow(request.account.id, flow_id)
    if flow is None:
        raise NotFoundError(f"flow {flow_id} not found")
    return flow


async def create_flow(request: ApiRequest) -> dict[str, Any]:
    now = utcnow()
    flow = FlowRecord(
        id=str(uuid.uuid4()),
        account_id=request.account.id,
        name=request.body["name"],
        detail=request.body["detail"],
        actions=tuple(request.body["actions"]),
        tm_create=now,
        tm_update=now,
    )
    await request.store.save_flow(flow)
    return flow.to_json()


async def list_flows(request: ApiRequest) -> dict[str, Any]:
    return await request.page_of(
        request.store.list_flows(
            request.account.id,
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_flow(request: ApiRequest) -> dict[str, Any]:
    return (await _flow(request)).to_json()


async def update_flow(request: ApiRequest) -> dict[str, Any]:
    flow = (await _flow(request)).evolve(
        name=request.body["name"],
        detail=request.body["detail"],
        actions=tuple(request.body["actions"]),
        tm_update=utcnow(),
    )
    await request.store.save_flow(flow)
    return flow.to_json()


async def delete_flow(request: ApiRequest) -> dict[str, Any]:
    flow = await _flow(request)
    for route in await request.store.all_routes():
        if route.account_id == flow.account_id and route.flow_id == flow.id:
            raise ConflictError(f"flow {flow.id} is used by route {route.id}")
    await request.store.delete_flow(request.account.id, flow.id)
    return flow.to_json()


OPERATIONS: Final = (
    Operation(
        "POST", "/v1.0/flows", "Create a flow", TAG, ref("Flow"), create_flow, body=FLOW_WRITE
    ),
    Operation(
        "GET",
        "/v1.0/flows",
        "List the account's flows, newest first",
        TAG,
        page_of("Flow"),
        list_flows,
        query=PAGINATION,
    ),
    Operation("GET", "/v1.0/flows/{id}", "Get a flow", TAG, ref("Flow"), get_flow),
    Operation(
        "PUT",
        "/v1.0/flows/{id}",
        "Replace a flow's name, detail and actions",
        TAG,
        ref("Flow"),
        update_flow,
        body=FLOW_WRITE,
    ),
    Operation(
        "DELETE",
        "/v1.0/flows/{id}",
        "Delete a flow no route uses; returns it",
        TAG,
        ref("Flow"),
        delete_flow,
    ),
)

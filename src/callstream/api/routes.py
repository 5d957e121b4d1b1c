"""``/v1.0/routes``: inbound routes — a Request-URI user part (exact, or ``re:`` regex)
mapped to one of the account's flows. The call service's router cache is refreshed
(``routes_changed``) after every write.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from callstream.errors import NotFoundError
from callstream.store.records import RouteRecord, utcnow

from .operations import PAGINATION, ApiRequest, Operation
from .schemas import ROUTE_WRITE, fail, page_of, ref

TAG: Final = "Routes"


async def _route(request: ApiRequest) -> RouteRecord:
    route_id = request.resource_id("id", "route")
    route = await request.store.get_route(request.account.id, route_id)
    if route is None:
        raise NotFoundError(f"route {route_id} not found")
    return route


async def _check_flow(request: ApiRequest) -> None:
    if await request.store.get_flow(request.account.id, request.body["flow_id"]) is None:
        raise fail("flow_id", "no such flow")


async def create_route(request: ApiRequest) -> dict[str, Any]:
    await _check_flow(request)
    now = utcnow()
    route = RouteRecord(
        id=str(uuid.uuid4()),
        account_id=request.account.id,
        match=request.body["match"],
        flow_id=request.body["flow_id"],
        priority=request.body["priority"],
        tm_create=now,
        tm_update=now,
    )
    await request.store.save_route(route)
    await request.service.routes_changed()
    return route.to_json()


async def list_routes(request: ApiRequest) -> dict[str, Any]:
    return await request.page_of(
        request.store.list_routes(
            request.account.id,
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_route(request: ApiRequest) -> dict[str, Any]:
    return (await _route(request)).to_json()


async def update_route(request: ApiRequest) -> dict[str, Any]:
    route = await _route(request)
    await _check_flow(request)
    route = route.evolve(
        match=request.body["match"],
        flow_id=request.body["flow_id"],
        priority=request.body["priority"],
        tm_update=utcnow(),
    )
    await request.store.save_route(route)
    await request.service.routes_changed()
    return route.to_json()


async def delete_route(request: ApiRequest) -> dict[str, Any]:
    route = await _route(request)
    await request.store.delete_route(request.account.id, route.id)
    await request.service.routes_changed()
    return route.to_json()


OPERATIONS: Final = (
    Operation(
        "POST",
        "/v1.0/routes",
        "Create an inbound route",
        TAG,
        ref("Route"),
        create_route,
        body=ROUTE_WRITE,
    ),
    Operation(
        "GET",
        "/v1.0/routes",
        "List the account's inbound routes, newest first",
        TAG,
        page_of("Route"),
        list_routes,
        query=PAGINATION,
    ),
    Operation("GET", "/v1.0/routes/{id}", "Get an inbound route", TAG, ref("Route"), get_route),
    Operation(
        "PUT",
        "/v1.0/routes/{id}",
        "Replace an inbound route",
        TAG,
        ref("Route"),
        update_route,
        body=ROUTE_WRITE,
    ),
    Operation(
        "DELETE",
        "/v1.0/routes/{id}",
        "Delete an inbound route; returns it",
        TAG,
        ref("Route"),
        delete_route,
    ),
)

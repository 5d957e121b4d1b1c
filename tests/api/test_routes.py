from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, error, store_is_empty


async def make_flow(api: Api, token: str | None = "") -> str:
    _, created = await api.call(
        "POST", "/v1.0/flows", {"name": "f", "actions": [{"type": "answer"}]}, token=token
    )
    return str(created["id"])


async def test_crud_refreshes_the_router(api: Api) -> None:
    flow_id = await make_flow(api)
    status, route = await api.call(
        "POST", "/v1.0/routes", {"match": "re:^1\\d{2}$", "flow_id": flow_id}
    )
    assert status == 200
    assert (route["match"], route["flow_id"], route["priority"]) == ("re:^1\\d{2}$", flow_id, 100)
    assert api.service.routes_changes == 1
    path = f"/v1.0/routes/{route['id']}"
    assert await api.call("GET", path) == (200, route)
    body = {"match": "200", "flow_id": flow_id, "priority": 5}
    status, updated = await api.call("PUT", path, body)
    assert (status, updated["match"], updated["priority"]) == (200, "200", 5)
    assert api.service.routes_changes == 2
    [stored] = await api.store.all_routes()
    assert (stored.id, stored.match, stored.priority) == (route["id"], "200", 5)
    _, page = await api.call("GET", "/v1.0/routes")
    assert page == {"result": [updated], "next_page_token": None}
    assert await api.call("DELETE", path) == (200, updated)
    assert api.service.routes_changes == 3
    assert await api.store.all_routes() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"flow_id": "FLOW"}, "match: is required"),
        ({"match": "", "flow_id": "FLOW"}, "match: must not be empty"),
        (
            {"match": "re:(", "flow_id": "FLOW"},
            "match: not a valid regular expression "
            "(missing ), unterminated subpattern at position 0)",
        ),
        ({"match": "100"}, "flow_id: is required"),
        ({"match": "100", "flow_id": "abc"}, "flow_id: must be a UUID"),
        (
            {"match": "100", "flow_id": "FLOW", "priority": -1},
            "priority: must be between 0 and 1000000",
        ),
        ({"match": "100", "flow_id": "FLOW", "priority": "1"}, "priority: must be an integer"),
        ({"match": "100", "flow_id": "FLOW", "priority": True}, "priority: must be an integer"),
        ({"match": "100", "flow_id": "OTHER"}, "flow_id: no such flow"),
    ],
)
async def test_bad_routes_are_refused(api: Api, body: dict[str, Any], message: str) -> None:
    flow_id = await make_flow(api)
    other = await make_flow(api, token=api.b)
    body = {
        k: {"FLOW": flow_id, "OTHER": other}.get(v, v) if isinstance(v, str) else v
        for k, v in body.items()
    }
    status, reply = await api.call("POST", "/v1.0/routes", body)
    assert (status, reply) == (400, error("invalid_request", message))
    assert await api.store.all_routes() == []
    assert api.service.routes_changes == 0


async def test_another_account_cannot_see_or_change_a_route(api: Api) -> None:
    flow_id = await make_flow(api)
    _, route = await api.call("POST", "/v1.0/routes", {"match": "100", "flow_id": flow_id})
    path = f"/v1.0/routes/{route['id']}"
    missing = (404, error("not_found", f"route {route['id']} not found"))
    own_flow = await make_flow(api, token=api.b)
    assert await api.call("GET", path, token=api.b) == missing
    assert await api.call("PUT", path, {"match": "1", "flow_id": own_flow}, token=api.b) == missing
    assert await api.call("DELETE", path, token=api.b) == missing
    _, page = await api.call("GET", "/v1.0/routes", token=api.b)
    assert page["result"] == []
    assert await api.call("GET", path) == (200, route)
    assert not await store_is_empty(api)

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, error, store_is_empty

ID_1 = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
ID_2 = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
ACTIONS = [
    {"id": ID_1.upper(), "type": "answer"},
    {"type": "talk", "option": {"text": "hello"}},
    {"id": ID_2, "type": "goto", "option": {"target_id": ID_1, "loop_count": 2}},
]


def flow(**changes: Any) -> dict[str, Any]:
    return {"name": "greeting", "detail": "says hello", "actions": ACTIONS} | changes


async def test_create_fills_in_ids_and_keeps_the_rest(api: Api) -> None:
    status, created = await api.call("POST", "/v1.0/flows", flow())
    assert status == 200
    assert (created["name"], created["detail"]) == ("greeting", "says hello")
    first, second, third = created["actions"]
    assert first == {"id": ID_1, "type": "answer"}  # lower-cased, as the flow module settles
    assert set(second) == {"id", "type", "option"} and len(second["id"]) == 36
    assert second["option"] == {"text": "hello"}
    assert third == ACTIONS[2]
    stored = await api.store.get_flow(api.account_a.id, created["id"])
    assert stored is not None and list(stored.actions) == created["actions"]


async def test_get_list_put_delete(api: Api) -> None:
    _, created = await api.call("POST", "/v1.0/flows", flow())
    path = f"/v1.0/flows/{created['id']}"
    assert await api.call("GET", path) == (200, created)
    _, page = await api.call("GET", "/v1.0/flows")
    assert page == {"result": [created], "next_page_token": None}
    status, updated = await api.call("PUT", path, {"name": "short", "actions": []})
    assert status == 200
    assert (updated["name"], updated["detail"], updated["actions"]) == ("short", "", [])
    assert (updated["id"], updated["tm_create"]) == (created["id"], created["tm_create"])
    assert updated["tm_update"] >= created["tm_update"]
    assert await api.call("DELETE", path) == (200, updated)
    assert await api.call("GET", path) == (
        404,
        error("not_found", f"flow {created['id']} not found"),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (flow(name=None), "name: must be a string"),
        (flow(name=""), "name: must not be empty"),
        ({"actions": []}, "name: is required"),
        (flow(actions=None), "actions: must be a list"),
        (flow(actions=[{"type": "answer"}, {"type": "fly"}]), "action 1: unknown type 'fly'"),
        (
            flow(actions=[{"type": "talk", "option": {}}]),
            "action 0 (talk): option.text is required",
        ),
        (
            flow(actions=[{"type": "goto", "option": {"target_id": ID_2}}]),
            f"action 0 (goto): option.target_id {ID_2} is not the id of an action in this list",
        ),
        (flow(detail=7), "detail: must be a string"),
    ],
)
async def test_bad_flows_are_refused(api: Api, body: dict[str, Any], message: str) -> None:
    status, reply = await api.call("POST", "/v1.0/flows", body)
    assert status == 400
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"].startswith(message)
    assert await store_is_empty(api)


async def test_put_validates_before_writing(api: Api) -> None:
    _, created = await api.call("POST", "/v1.0/flows", flow())
    path = f"/v1.0/flows/{created['id']}"
    status, _ = await api.call("PUT", path, flow(actions=[{"type": "fly"}]))
    assert status == 400
    assert await api.call("GET", path) == (200, created)


async def test_a_flow_in_use_by_a_route_cannot_be_deleted(api: Api) -> None:
    _, created = await api.call("POST", "/v1.0/flows", flow())
    _, route = await api.call("POST", "/v1.0/routes", {"match": "100", "flow_id": created["id"]})
    status, reply = await api.call("DELETE", f"/v1.0/flows/{created['id']}")
    message = f"flow {created['id']} is used by route {route['id']}"
    assert (status, reply) == (409, error("conflict", message))


async def test_another_account_cannot_see_or_change_a_flow(api: Api) -> None:
    _, created = await api.call("POST", "/v1.0/flows", flow())
    path = f"/v1.0/flows/{created['id']}"
    missing = (404, error("not_found", f"flow {created['id']} not found"))
    assert await api.call("GET", path, token=api.b) == missing
    assert await api.call("PUT", path, flow(name="mine"), token=api.b) == missing
    assert await api.call("DELETE", path, token=api.b) == missing
    assert await api.call("GET", "/v1.0/flows", token=api.b) == (
        200,
        {"result": [], "next_page_token": None},
    )
    assert await api.call("GET", path) == (200, created)


async def test_flow_pages(api: Api) -> None:
    names = [f"flow {n}" for n in range(3)]
    for name in names:
        await api.call("POST", "/v1.0/flows", flow(name=name))
    _, first = await api.call("GET", "/v1.0/flows?page_size=2")
    assert [f["name"] for f in first["result"]] == ["flow 2", "flow 1"]
    token = first["next_page_token"]
    _, second = await api.call("GET", "/v1.0/flows", params={"page_size": 2, "page_token": token})
    assert ([f["name"] for f in second["result"]], second["next_page_token"]) == (["flow 0"], None)

from __future__ import annotations

from tests.api.conftest import Api, error

CALL = {
    "source": {"type": "sip", "target": "sip:alice@127.0.0.1"},
    "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:5062"}],
    "actions": [{"type": "answer"}],
}


async def new_call(api: Api, token: str | None = "") -> str:
    _, created = await api.call("POST", "/v1.0/calls", CALL, token=token)
    return str(created["calls"][0]["id"])


async def test_lifecycle(api: Api) -> None:
    status, conference = await api.call("POST", "/v1.0/conferences", {"name": "standup"})
    assert status == 200
    assert (conference["name"], conference["detail"], conference["status"]) == (
        "standup",
        "",
        "progressing",
    )
    path = f"/v1.0/conferences/{conference['id']}"
    call_id = await new_call(api)
    status, joined = await api.call("POST", f"{path}/calls", {"call_id": call_id})
    assert (status, joined["call_ids"]) == (200, [call_id])
    assert await api.call("GET", path) == (200, joined)
    _, page = await api.call("GET", "/v1.0/conferences")
    assert page == {"result": [joined], "next_page_token": None}
    status, left = await api.call("DELETE", f"{path}/calls/{call_id}")
    assert (status, left["call_ids"]) == (200, [])
    status, ended = await api.call("DELETE", path)
    assert (status, ended["status"]) == (200, "terminated")


async def test_bad_bodies(api: Api) -> None:
    _, conference = await api.call("POST", "/v1.0/conferences", {})
    path = f"/v1.0/conferences/{conference['id']}/calls"
    assert await api.call("POST", path, {}) == (
        400,
        error("invalid_request", "call_id: is required"),
    )
    assert await api.call("POST", path, {"call_id": "x"}) == (
        400,
        error("invalid_request", "call_id: must be a UUID"),
    )
    assert await api.call("POST", "/v1.0/conferences", {"name": ["a"]}) == (
        400,
        error("invalid_request", "name: must be a string"),
    )


async def test_another_account_cannot_read_end_or_join(api: Api) -> None:
    _, conference = await api.call("POST", "/v1.0/conferences", {"name": "a"})
    path = f"/v1.0/conferences/{conference['id']}"
    missing = (404, error("not_found", f"conference {conference['id']} not found"))
    own_call = await new_call(api, token=api.b)
    assert await api.call("GET", path, token=api.b) == missing
    assert await api.call("DELETE", path, token=api.b) == missing
    assert await api.call("POST", f"{path}/calls", {"call_id": own_call}, token=api.b) == missing
    assert await api.call("DELETE", f"{path}/calls/{own_call}", token=api.b) == missing
    _, page = await api.call("GET", "/v1.0/conferences", token=api.b)
    assert page["result"] == []
    # Nor can A pull B's call into A's conference.
    status, reply = await api.call("POST", f"{path}/calls", {"call_id": own_call})
    assert (status, reply) == (404, error("not_found", f"call {own_call} not found"))
    assert (await api.call("GET", path))[1]["status"] == "progressing"

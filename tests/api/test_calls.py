from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, error, store_is_empty

SOURCE = {"type": "tel", "target": "+15551234567"}
SIP_A = {"type": "sip", "target": "sip:alice@127.0.0.1:5062"}
SIP_B = {"type": "sip", "target": "sips:bob@example.com"}
ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
TALK = [{"type": "answer"}, {"type": "tone", "option": {"frequency": 440, "duration": 500}}]


def call_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": SOURCE, "destinations": [SIP_A, SIP_B], "actions": TALK}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def test_create_calls_one_per_destination_in_voipbins_shape(api: Api) -> None:
    status, body = await api.call("POST", "/v1.0/calls", call_body())
    assert status == 200
    assert set(body) == {"calls", "groupcalls"}
    assert body["groupcalls"] == []
    assert [call["destination"] for call in body["calls"]] == [SIP_A, SIP_B]
    assert {call["status"] for call in body["calls"]} == {"dialing"}
    assert {call["account_id"] for call in body["calls"]} == {api.account_a.id}
    [(name, args)] = api.service.requests
    assert name == "create_calls"
    account_id, source, destinations, actions, flow_id = args
    assert (account_id, source, destinations, flow_id) == (
        api.account_a.id,
        SOURCE,
        [SIP_A, SIP_B],
        None,
    )
    # Each action got an id; the rest is as written.
    assert [{k: v for k, v in a.items() if k != "id"} for a in actions] == TALK
    assert all(len(a["id"]) == 36 for a in actions)


async def test_create_call_accepts_the_older_singular_destination(api: Api) -> None:
    body = {"source": SOURCE, "destination": SIP_A, "actions": TALK}
    status, created = await api.call("POST", "/v1.0/calls", body)
    assert status == 200
    assert [call["destination"] for call in created["calls"]] == [SIP_A]


async def test_create_call_with_a_stored_flow(api: Api) -> None:
    _, flow = await api.call("POST", "/v1.0/flows", {"name": "f", "actions": TALK})
    status, created = await api.call(
        "POST", "/v1.0/calls", call_body(actions=None, **{"flow_id": flow["id"]})
    )
    assert status == 200
    assert created["calls"][0]["flow_id"] == flow["id"]
    assert api.service.requests[0][1][3:] == (None, flow["id"])


async def test_tel_destination_must_be_e164(api: Api) -> None:
    body = call_body(destinations=[{"type": "tel", "target": "+15551234567"}])
    assert (await api.call("POST", "/v1.0/calls", body))[0] == 200


BAD_CALLS = [
    pytest.param(
        call_body(destinations=None),
        "destinations: is required",
        id="missing destination",
    ),
    pytest.param(
        call_body(destinations=[]),
        "destinations: must have between 1 and 100 items",
        id="no destinations",
    ),
    pytest.param(
        call_body(destinations=[SIP_A] * 101),
        "destinations: must have between 1 and 100 items",
        id="too many destinations",
    ),
    pytest.param(
        call_body(destinations=[SIP_A, {"type": "sip", "target": "alice@127.0.0.1"}]),
        "destinations[1].target: not a SIP URI (bad SIP URI: unsupported scheme)",
        id="bad SIP URI",
    ),
    pytest.param(
        call_body(destinations=[{"type": "sip", "target": "sip:bob@host:70000"}]),
        "destinations[0].target: not a SIP URI (bad SIP URI: bad port)",
        id="bad SIP port",
    ),
    pytest.param(
        call_body(destinations=[{"type": "sip", "target": "tel:+15551234567"}]),
        "destinations[0].target: not a SIP URI (sip:user@host)",
        id="tel URI as sip",
    ),
    pytest.param(
        call_body(destinations=[{"type": "tel", "target": "555-1234"}]),
        "destinations[0].target: not an E.164 number (+ and 8 to 15 digits, the first not 0)",
        id="bad tel",
    ),
    pytest.param(
        call_body(destinations=[{"type": "fax", "target": "+15551234567"}]),
        "destinations[0].type: must be one of 'sip', 'tel'",
        id="bad endpoint type",
    ),
    pytest.param(
        call_body(destinations=[{"type": "sip"}]),
        "destinations[0].target: is required",
        id="endpoint without target",
    ),
    pytest.param(
        call_body(destinations=SIP_A),
        "destinations: must be a list",
        id="destinations not a list",
    ),
    pytest.param(
        call_body(source=None),
        "source: is required",
        id="missing source",
    ),
    pytest.param(
        call_body(destination=SIP_A),
        "give destinations or destination, not both",
        id="both destination forms",
    ),
    pytest.param(
        call_body(actions=[{"type": "answer"}, {"type": "tone", "option": {"frequency": 440}}]),
        "action 1 (tone): option.duration is required",
        id="action missing option",
    ),
    pytest.param(
        call_body(actions=None),
        "give exactly one of actions, flow_id, answer_url or xml",
        id="neither actions nor flow",
    ),
    pytest.param(
        call_body(flow_id="9d3c1f0e-8f5b-4a43-9a3e-2b1f0c6f2a11"),
        "give exactly one of actions, flow_id, answer_url or xml",
        id="both actions and flow",
    ),
    pytest.param(
        call_body(actions=None, flow_id="9d3c1f0e-8f5b-4a43-9a3e-2b1f0c6f2a11"),
        "flow_id: no such flow",
        id="unknown flow",
    ),
    pytest.param(
        call_body(actions=None, flow_id="flow-1"),
        "flow_id: must be a UUID",
        id="flow id not a UUID",
    ),
    pytest.param(
        call_body(actions=[{"id": ID, "type": "answer"}, {"id": ID.upper(), "type": "hangup"}]),
        f"action 1 (hangup): id {ID} is already the id of action 0",
        id="duplicate action ids",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_CALLS)
async def test_bad_call_requests_are_refused_before_anything_is_created(
    api: Api, body: dict[str, Any], message: str
) -> None:
    status, reply = await api.call("POST", "/v1.0/calls", body)
    assert (status, reply) == (400, error("invalid_request", message))
    assert api.service.requests == []
    assert await store_is_empty(api)


async def test_unknown_action_names_its_index(api: Api) -> None:
    body = call_body(actions=[{"type": "answer"}, {"type": "dance"}])
    status, reply = await api.call("POST", "/v1.0/calls", body)
    assert status == 400
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["message"].startswith("action 1: unknown type 'dance' (known: ")
    assert await store_is_empty(api)


async def test_another_accounts_flow_is_no_such_flow(api: Api) -> None:
    _, flow = await api.call("POST", "/v1.0/flows", {"name": "b", "actions": TALK}, token=api.b)
    body = call_body(actions=None, flow_id=flow["id"])
    status, reply = await api.call("POST", "/v1.0/calls", body)
    assert (status, reply) == (400, error("invalid_request", "flow_id: no such flow"))
    assert (await api.store.list_calls(api.account_a.id)).result == []


async def _create(api: Api, count: int, token: str | None = "") -> list[str]:
    ids = []
    for _ in range(count):
        _, body = await api.call(
            "POST", "/v1.0/calls", call_body(destinations=[SIP_A]), token=token
        )
        ids.append(body["calls"][0]["id"])
    return ids


async def test_get_hangup_and_delete_keep_the_record(api: Api) -> None:
    [call_id] = await _create(api, 1)
    status, call = await api.call("GET", f"/v1.0/calls/{call_id}")
    assert (status, call["id"], call["status"]) == (200, call_id, "dialing")
    status, call = await api.call("POST", f"/v1.0/calls/{call_id}/hangup")
    assert (status, call["status"], call["hangup_reason"]) == (200, "hangup", "normal")
    status, call = await api.call("DELETE", f"/v1.0/calls/{call_id}")
    assert (status, call["status"]) == (200, "hangup")
    status, call = await api.call("GET", f"/v1.0/calls/{call_id}")
    assert (status, call["status"]) == (200, "hangup")
    assert [name for name, _ in api.service.requests] == ["create_calls"] + ["hangup_call"] * 2


async def test_list_filters_by_status(api: Api) -> None:
    first, second = await _create(api, 2)
    await api.call("POST", f"/v1.0/calls/{first}/hangup")
    _, page = await api.call("GET", "/v1.0/calls?status=hangup")
    assert [call["id"] for call in page["result"]] == [first]
    _, page = await api.call("GET", "/v1.0/calls", params={"status": "dialing"})
    assert [call["id"] for call in page["result"]] == [second]
    status, reply = await api.call("GET", "/v1.0/calls?status=done")
    message = "status: must be one of 'dialing', 'ringing', 'progressing', 'terminating', 'hangup'"
    assert (status, reply) == (400, error("invalid_request", message))


async def test_pagination_round_trip(api: Api) -> None:
    ids = await _create(api, 5)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"page_size": "2"} | ({"page_token": token} if token else {})
        status, page = await api.call("GET", "/v1.0/calls", params=params)
        assert status == 200
        seen += [call["id"] for call in page["result"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, each once


async def test_default_page_is_everything_up_to_50(api: Api) -> None:
    ids = await _create(api, 3)
    _, page = await api.call("GET", "/v1.0/calls")
    assert [call["id"] for call in page["result"]] == list(reversed(ids))
    assert page["next_page_token"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page_size=0", "page_size: must be between 1 and 100"),
        ("page_size=101", "page_size: must be between 1 and 100"),
        ("page_size=ten", "page_size: must be an integer"),
        ("page_size=1e3", "page_size: must be an integer"),
        ("page_size=", "page_size: must be an integer"),
        ("page_token=%25%25%25", "page_token: not a valid page token"),
        ("page_token=", "page_token: must not be empty"),
    ],
)
async def test_bad_pagination_is_400(api: Api, query: str, message: str) -> None:
    await _create(api, 1)
    status, reply = await api.call("GET", f"/v1.0/calls?{query}")
    assert (status, reply) == (400, error("invalid_request", message))


async def test_another_account_sees_nothing_of_a_call(api: Api) -> None:
    [call_id] = await _create(api, 1)
    [own] = await _create(api, 1, token=api.b)
    for method, path in [
        ("GET", f"/v1.0/calls/{call_id}"),
        ("POST", f"/v1.0/calls/{call_id}/hangup"),
        ("DELETE", f"/v1.0/calls/{call_id}"),
    ]:
        status, reply = await api.call(method, path, token=api.b)
        assert (status, reply) == (404, error("not_found", f"call {call_id} not found"))
    _, page = await api.call("GET", "/v1.0/calls", token=api.b)
    assert [call["id"] for call in page["result"]] == [own]
    call = await api.store.get_call(api.account_a.id, call_id)
    assert call is not None and call.status == "dialing"


async def test_an_id_that_is_not_a_uuid_is_not_found(api: Api) -> None:
    status, reply = await api.call("GET", "/v1.0/calls/nope")
    assert (status, reply) == (404, error("not_found", "call not found: 'nope'"))


async def test_plivo_answer_url_or_inline_xml_instead_of_actions(api: Api) -> None:
    """Plivo users give an answer_url (fetched on answer) or the <Response> inline."""
    base = {
        "source": {"type": "tel", "target": "+15551230000"},
        "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:5070"}],
    }
    for extra in (
        {"answer_url": "http://127.0.0.1:9000/answer", "answer_method": "GET"},
        {"xml": "<Response><Hangup/></Response>"},
    ):
        status, body = await api.call("POST", "/v1.0/calls", {**base, **extra})
        assert status == 200, body
    both = {"actions": [{"type": "answer"}], "xml": "<Response/>"}
    status, body = await api.call("POST", "/v1.0/calls", {**base, **both})
    assert status == 400
    assert body["error"]["message"] == "give exactly one of actions, flow_id, answer_url or xml"
    status, body = await api.call("POST", "/v1.0/calls", {**base, "answer_url": "ftp://x/a"})
    assert body["error"]["message"] == "answer_url: must be an http:// or https:// URL"

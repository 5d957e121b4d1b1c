from __future__ import annotations

import io
import logging

import pytest

from callstream.errors import StoreError
from tests.api.conftest import Api, error, store_is_empty

ONE_CALL = {
    "source": {"type": "sip", "target": "sip:alice@127.0.0.1"},
    "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:5062"}],
    "actions": [{"type": "answer"}],
}


async def post_raw(api: Api, path: str, data: bytes | io.BytesIO) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {api.a}", "Content-Type": "application/json"}
    response = await api.client.post(path, data=data, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b'{"source": ',
            "request body is not valid JSON: Expecting value: line 1 column 12 (char 11)",
        ),
        (
            b"{'a': 1}",
            "request body is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (b'{"a": NaN}', "request body is not valid JSON: NaN is not JSON"),
        (b'{"a": 1} x', "request body is not valid JSON: Extra data: line 1 column 10 (char 9)"),
        (b'{"a": "\xff"}', "request body is not valid JSON: not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON: nested too deeply"),
        (b"", "request body is required (a JSON object)"),
        (b"  \n", "request body is required (a JSON object)"),
        (b"[]", "request body must be a JSON object, not an array"),
        (b'"call me"', "request body must be a JSON object, not a string"),
        (b"null", "request body must be a JSON object, not null"),
        (b"42", "request body must be a JSON object, not a number"),
    ],
)
async def test_malformed_bodies_are_400_and_create_nothing(
    api: Api, data: bytes, message: str
) -> None:
    for path in ("/v1.0/calls", "/v1.0/flows", "/v1.0/conferences"):
        assert await post_raw(api, path, data) == (400, error("invalid_request", message))
    assert api.service.requests == []
    assert await store_is_empty(api)


async def test_oversized_body_is_413_json_and_creates_nothing(api: Api) -> None:
    padding = "x" * (1024 * 1024)
    data = ('{"name": "big", "detail": "' + padding + '", "actions": []}').encode()
    status, body = await post_raw(api, "/v1.0/flows", io.BytesIO(data))
    message = "request body is larger than 1048576 bytes"
    assert (status, body) == (413, error("payload_too_large", message))
    assert await store_is_empty(api)


async def test_unknown_route_is_404_json(api: Api) -> None:
    status, body = await api.call("GET", "/v1.0/callz?page_size=3")
    assert (status, body) == (404, error("not_found", "no such route: GET /v1.0/callz"))
    # Unknown routes answer the same with or without a token.
    assert await api.call("GET", "/v1.0/callz", token=None) == (status, body)


async def test_wrong_method_is_405_json_with_allow(api: Api) -> None:
    response = await api.client.patch("/v1.0/calls", headers={"Authorization": f"Bearer {api.a}"})
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}
    body = await response.json()
    assert body["error"]["code"] == "method_not_allowed"
    assert body["error"]["message"].startswith("method PATCH not allowed on /v1.0/calls")


async def test_unexpected_errors_are_500_without_internals(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.service.fail_with = RuntimeError("secret internals at 0xdeadbeef")
    status, body = await api.call("POST", "/v1.0/calls", ONE_CALL)
    assert (status, body) == (500, error("internal", "internal error (logged on the gateway)"))
    [record] = [r for r in caplog.records if r.name == "callstream.api"]
    assert record.getMessage() == "unexpected error on POST /v1.0/calls"
    assert record.exc_info is not None and "0xdeadbeef" in str(record.exc_info[1])


async def test_store_failures_are_503(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    api.service.fail_with = StoreError("database is locked")
    status, body = await api.call("POST", "/v1.0/calls", ONE_CALL)
    assert (status, body) == (503, error("unavailable", "records could not be read or written"))
    assert "store failed on POST /v1.0/calls: database is locked" in caplog.text


async def test_conflicts_are_409(api: Api) -> None:
    _, created = await api.call("POST", "/v1.0/calls", ONE_CALL)
    call_id = created["calls"][0]["id"]
    await api.call("DELETE", f"/v1.0/calls/{call_id}")
    _, conference = await api.call("POST", "/v1.0/conferences", {})
    path = f"/v1.0/conferences/{conference['id']}/calls"
    status, body = await api.call("POST", path, {"call_id": call_id})
    message = f"call {call_id} or conference {conference['id']} has ended"
    assert (status, body) == (409, error("conflict", message))

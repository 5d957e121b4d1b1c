from __future__ import annotations

import logging

import pytest

from tests.api.conftest import Api, error

MISSING = error("unauthorized", "an API token is required: ?token= or Authorization: Bearer")
INVALID = error("unauthorized", "the API token is not valid")


async def test_no_token_is_401(api: Api) -> None:
    response = await api.client.get("/v1.0/calls")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await response.json() == MISSING


async def test_bad_token_in_the_query_is_401(api: Api) -> None:
    status, body = await api.call("GET", "/v1.0/calls?token=nope", token=None)
    assert (status, body) == (401, INVALID)


async def test_bad_bearer_token_is_401(api: Api) -> None:
    assert await api.call("GET", "/v1.0/calls", token="nope") == (401, INVALID)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token abc"])
async def test_malformed_authorization_header_is_401(api: Api, header: str) -> None:
    response = await api.client.get("/v1.0/calls", headers={"Authorization": header})
    assert response.status == 401
    message = "the Authorization header must be 'Bearer <token>'"
    assert await response.json() == error("unauthorized", message)


async def test_an_overlong_token_is_invalid_without_a_lookup(api: Api) -> None:
    assert await api.call("GET", "/v1.0/calls", token="x" * 5000) == (401, INVALID)


async def test_revoked_token_is_401(api: Api) -> None:
    assert await api.store.revoke_token(api.a)
    assert await api.call("GET", "/v1.0/calls") == (401, INVALID)


async def test_good_token_either_way(api: Api) -> None:
    assert (await api.call("GET", "/v1.0/calls"))[0] == 200
    status, body = await api.call("GET", f"/v1.0/calls?token={api.a}", token=None)
    assert (status, body) == (200, {"result": [], "next_page_token": None})


async def test_401_comes_before_body_validation(api: Api) -> None:
    response = await api.client.post("/v1.0/calls", data=b"{not json")
    assert (response.status, await response.json()) == (401, MISSING)


@pytest.mark.parametrize("path", ["/healthz", "/v1.0/openapi.json", "/v1.0/docs"])
async def test_public_paths_need_no_token(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.status == 200


async def test_the_token_never_reaches_a_log_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.service.fail_with = RuntimeError(f"boom {api.a[:0]}")
    bad = "not-a-real-token-1234567890"
    await api.call("GET", f"/v1.0/calls?token={api.a}", token=None)
    await api.call("GET", f"/v1.0/calls?token={bad}", token=None)
    await api.call("GET", f"/v1.0/nowhere?token={api.a}", token=None)
    await api.call("PATCH", f"/v1.0/calls?token={api.a}", token=None)
    body = {
        "source": {"type": "sip", "target": "sip:a@h"},
        "destination": {"type": "sip", "target": "sip:b@h"},
        "actions": [],
    }
    status, _ = await api.call("POST", f"/v1.0/calls?token={api.a}", body, token=None)
    assert status == 500  # the stand-in service raised: logged with its traceback
    logged = caplog.text
    assert "GET /v1.0/calls 200" in logged  # the access log does write the path
    assert "GET /v1.0/calls 401" in logged
    assert "unexpected error on POST /v1.0/calls" in logged
    assert api.a not in logged
    assert bad not in logged

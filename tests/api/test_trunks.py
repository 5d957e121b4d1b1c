from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, error

TRUNK = {
    "name": "carrier",
    "proxy": "sip.example.com:5060",
    "transport": "tcp",
    "username": "user1",
    "password": "s3cret-pa55",
    "inbound_addresses": ["192.0.2.10", "2001:db8::1"],
}


async def test_crud_never_returns_the_password(api: Api) -> None:
    status, trunk = await api.call("POST", "/v1.0/trunks", TRUNK)
    assert status == 200
    assert "password" not in trunk
    assert (trunk["transport"], trunk["inbound_addresses"]) == ("TCP", TRUNK["inbound_addresses"])
    assert api.service.trunks_changes == 1
    path = f"/v1.0/trunks/{trunk['id']}"
    stored = await api.store.get_trunk(api.account_a.id, trunk["id"])
    assert stored is not None and stored.password == "s3cret-pa55"
    responses = [await api.call("GET", path), await api.call("GET", "/v1.0/trunks")]
    assert all("s3cret" not in repr(body) for _, body in responses)
    # PUT what was read (no password): the stored password stays.
    read = responses[0][1]
    body = {k: read[k] for k in ("name", "proxy", "transport", "username", "inbound_addresses")}
    status, updated = await api.call("PUT", path, body | {"name": "renamed"})
    assert (status, updated["name"], "password" in updated) == (200, "renamed", False)
    stored = await api.store.get_trunk(api.account_a.id, trunk["id"])
    assert stored is not None and (stored.name, stored.password) == ("renamed", "s3cret-pa55")
    # An explicit null clears it.
    await api.call("PUT", path, body | {"password": None})
    stored = await api.store.get_trunk(api.account_a.id, trunk["id"])
    assert stored is not None and stored.password is None
    status, deleted = await api.call("DELETE", path)
    assert (status, deleted["id"], "password" in deleted) == (200, trunk["id"], False)
    assert api.service.trunks_changes == 4
    assert await api.store.all_trunks() == []


def bad(message: str) -> dict[str, Any]:
    return error("invalid_request", message)


async def test_register_needs_a_username_and_is_stored(api: Api) -> None:
    bare = {"name": "t", "proxy": "127.0.0.1:5080", "register": True}
    status, body = await api.call("POST", "/v1.0/trunks", bare)
    assert (status, body) == (400, bad("username: required when register is true"))
    status, body = await api.call("POST", "/v1.0/trunks", bare | {"register_expires": 30})
    assert (status, body) == (400, bad("register_expires: must be between 60 and 86400"))
    status, body = await api.call("POST", "/v1.0/trunks", bare | {"register": "yes"})
    assert (status, body) == (400, bad("register: must be true or false"))
    status, trunk = await api.call("POST", "/v1.0/trunks", bare | {"username": "alice"})
    assert status == 200
    assert (trunk["register"], trunk["register_expires"]) == (True, 600)
    stored = await api.store.get_trunk(api.account_a.id, trunk["id"])
    assert stored is not None and (stored.register, stored.username) == (True, "alice")
    path = f"/v1.0/trunks/{trunk['id']}"
    status, updated = await api.call("PUT", path, {"name": "t", "proxy": "127.0.0.1:5080"})
    assert (status, updated["register"]) == (200, False)  # PUT replaces: absent is false


async def test_defaults(api: Api) -> None:
    _, trunk = await api.call("POST", "/v1.0/trunks", {"name": "t", "proxy": "[2001:db8::2]:5080"})
    assert (trunk["transport"], trunk["username"], trunk["inbound_addresses"]) == ("UDP", None, [])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"proxy": "sip.example.com"}, "proxy: must be host:port"),
        ({"proxy": "sip.example.com:0"}, "proxy: port must be between 1 and 65535"),
        ({"proxy": "sip.example.com:99999"}, "proxy: port must be between 1 and 65535"),
        ({"proxy": "bad host:5060"}, "proxy: must be host:port"),
        ({"transport": "tls"}, "transport: must be one of 'UDP', 'TCP'"),
        ({"inbound_addresses": ["192.0.2.300"]}, "inbound_addresses[0]: not an IP address"),
        ({"inbound_addresses": "192.0.2.1"}, "inbound_addresses: must be a list"),
        ({"username": 5}, "username: must be a string"),
        ({"name": ""}, "name: must not be empty"),
    ],
)
async def test_bad_trunks_are_refused(api: Api, changes: dict[str, Any], message: str) -> None:
    status, reply = await api.call("POST", "/v1.0/trunks", TRUNK | changes)
    assert (status, reply) == (400, error("invalid_request", message))
    assert await api.store.all_trunks() == []
    assert api.service.trunks_changes == 0


async def test_another_account_cannot_see_or_change_a_trunk(api: Api) -> None:
    _, trunk = await api.call("POST", "/v1.0/trunks", TRUNK)
    path = f"/v1.0/trunks/{trunk['id']}"
    missing = (404, error("not_found", f"trunk {trunk['id']} not found"))
    assert await api.call("GET", path, token=api.b) == missing
    assert await api.call("PUT", path, TRUNK, token=api.b) == missing
    assert await api.call("DELETE", path, token=api.b) == missing
    _, page = await api.call("GET", "/v1.0/trunks", token=api.b)
    assert page["result"] == []
    assert (await api.call("GET", path))[0] == 200

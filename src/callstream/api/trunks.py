"""``/v1.0/trunks``: SIP trunks — where ``tel`` calls go out (proxy, digest credentials),
which source addresses may call in, and whether the gateway registers at the proxy. The
password is stored but never returned (``TrunkRecord._hidden``); the call service
reloads trunks (``trunks_changed``) after every write, and registers or unregisters
them to match.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from callstream.errors import NotFoundError
from callstream.store.records import TrunkRecord, utcnow

from .operations import PAGINATION, ApiRequest, Operation
from .schemas import ABSENT, TRUNK_WRITE, fail, page_of, ref

TAG: Final = "Trunks"


async def _trunk(request: ApiRequest) -> TrunkRecord:
    trunk_id = request.resource_id("id", "trunk")
    trunk = await request.store.get_trunk(request.account.id, trunk_id)
    if trunk is None:
        raise NotFoundError(f"trunk {trunk_id} not found")
    return trunk


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    if body["register"] and not body["username"]:
        raise fail("username", "required when register is true")
    return {
        "name": body["name"],
        "proxy": body["proxy"],
        "transport": body["transport"],
        "username": body["username"],
        "inbound_addresses": tuple(body["inbound_addresses"]),
        "register": body["register"],
        "register_expires": body["register_expires"],
    }


async def create_trunk(request: ApiRequest) -> dict[str, Any]:
    now = utcnow()
    trunk = TrunkRecord(
        id=str(uuid.uuid4()),
        account_id=request.account.id,
        password=None if request.body["password"] is ABSENT else request.body["password"],
        tm_create=now,
        tm_update=now,
        **_fields(request.body),
    )
    await request.store.save_trunk(trunk)
    await request.service.trunks_changed()
    return trunk.to_json()


async def list_trunks(request: ApiRequest) -> dict[str, Any]:
    return await request.page_of(
        request.store.list_trunks(
            request.account.id,
            page_size=request.query["page_size"],
            page_token=request.query["page_token"],
        )
    )


async def get_trunk(request: ApiRequest) -> dict[str, Any]:
    return (await _trunk(request)).to_json()


async def update_trunk(request: ApiRequest) -> dict[str, Any]:
    trunk = await _trunk(request)
    changes = _fields(request.body)
    # The password is never shown, so a client that PUTs back what it read has none:
    # an absent password keeps the stored one, an explicit null clears it.
    if request.body["password"] is not ABSENT:
        changes["password"] = request.body["password"]
    trunk = trunk.evolve(tm_update=utcnow(), **changes)
    await request.store.save_trunk(trunk)
    await request.service.trunks_changed()
    return trunk.to_json()


async def delete_trunk(request: ApiRequest) -> dict[str, Any]:
    trunk = await _trunk(request)
    await request.store.delete_trunk(request.account.id, trunk.id)
    await request.service.trunks_changed()
    return trunk.to_json()


OPERATIONS: Final = (
    Operation(
        "POST",
        "/v1.0/trunks",
        "Create a SIP trunk",
        TAG,
        ref("Trunk"),
        create_trunk,
        body=TRUNK_WRITE,
    ),
    Operation(
        "GET",
        "/v1.0/trunks",
        "List the account's SIP trunks, newest first",
        TAG,
        page_of("Trunk"),
        list_trunks,
        query=PAGINATION,
    ),
    Operation("GET", "/v1.0/trunks/{id}", "Get a SIP trunk", TAG, ref("Trunk"), get_trunk),
    Operation(
        "PUT",
        "/v1.0/trunks/{id}",
        "Replace a SIP trunk (absent password: kept)",
        TAG,
        ref("Trunk"),
        update_trunk,
        body=TRUNK_WRITE,
    ),
    Operation(
        "DELETE",
        "/v1.0/trunks/{id}",
        "Delete a SIP trunk; returns it",
        TAG,
        ref("Trunk"),
        delete_trunk,
    ),
)

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from callstream.api import OPERATIONS
from callstream.api.openapi import openapi_document, record_schema
from callstream.flows.actions import ACTION_TYPES
from callstream.store.records import TrunkRecord
from tests.api.conftest import Api


def router_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method != "HEAD":
            routes.add((route.method, path))
    return routes


async def test_every_registered_route_is_documented_and_nothing_else(api: Api) -> None:
    response = await api.client.get("/v1.0/openapi.json")
    assert response.status == 200
    document = await response.json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    registered = router_routes(api.client.app) - {("GET", "/healthz")}  # the gateway's own
    assert documented == registered
    assert len(documented) == len(OPERATIONS) == 36


async def test_document_shape(api: Api) -> None:
    document = openapi_document(OPERATIONS)
    assert document["openapi"] == "3.1.0"
    create = document["paths"]["/v1.0/calls"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["source"]
    assert body["properties"]["destinations"]["maxItems"] == 100
    assert set(create["responses"]) == {"200", "400", "401", "413", "500", "503"}
    listing = document["paths"]["/v1.0/calls"]["get"]
    assert [p["name"] for p in listing["parameters"]] == ["status", "page_size", "page_token"]
    assert listing["parameters"][1]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 50,
    }
    one = document["paths"]["/v1.0/calls/{id}"]["get"]
    assert one["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert document["paths"]["/v1.0/openapi.json"]["get"]["security"] == []
    action_types = document["components"]["schemas"]["Action"]["properties"]["type"]["enum"]
    assert action_types == sorted(ACTION_TYPES)
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(set(operation_ids)) == len(operation_ids)


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


def test_every_reference_resolves() -> None:
    document = openapi_document(OPERATIONS)
    for reference in refs(document):
        _, section, kind, name = reference.split("/")
        assert name in document[section][kind], reference


def test_record_schemas_follow_the_dataclasses() -> None:
    trunk = record_schema(TrunkRecord)
    assert "password" not in trunk["properties"]
    assert trunk["properties"]["inbound_addresses"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    assert trunk["properties"]["username"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    document = openapi_document(OPERATIONS)
    call = document["components"]["schemas"]["Call"]["properties"]
    assert call["status"]["enum"] == ["dialing", "ringing", "progressing", "terminating", "hangup"]
    assert call["destination"] == {"$ref": "#/components/schemas/Endpoint"}
    assert call["tm_create"] == {"type": "string", "format": "date-time"}


async def test_call_record_matches_its_schema(api: Api) -> None:
    body = {
        "source": {"type": "tel", "target": "+15551234567"},
        "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1"}],
        "actions": [{"type": "answer"}],
    }
    _, created = await api.call("POST", "/v1.0/calls", body)
    schema = openapi_document(OPERATIONS)["components"]["schemas"]["Call"]
    assert set(created["calls"][0]) == set(schema["properties"]) == set(schema["required"])


async def test_docs_page_is_plain_html_describing_every_route(api: Api) -> None:
    response = await api.client.get("/v1.0/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert page.startswith("<!doctype html>")
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # no external assets
    for operation in OPERATIONS:
        assert f"<h3>{operation.method} {operation.path}</h3>" in page
    assert "<code>destinations</code>" in page

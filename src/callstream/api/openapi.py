"""The API described from its own route table: ``GET /v1.0/openapi.json`` (OpenAPI 3.1)
and ``GET /v1.0/docs`` (one plain HTML page, no external assets).

Request bodies and query parameters come from the operations' schemas (what is
enforced); response components come from the record dataclasses' fields (what is
sent), so neither can fall out of step with the code.
"""

from __future__ import annotations

import dataclasses
import html
import json
import types
import typing
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from aiohttp import web

from callstream import __version__
from callstream.store.records import (
    CallRecord,
    ConferenceRecord,
    FlowRecord,
    MediaStreamRecord,
    RouteRecord,
    TrunkRecord,
)

from .operations import OPERATIONS_KEY, Operation, QueryParam
from .schemas import ACTIONS, ENDPOINT, JsonSchema, ref

RECORDS: Final[dict[str, type]] = {
    "Call": CallRecord,
    "Flow": FlowRecord,
    "Route": RouteRecord,
    "Trunk": TrunkRecord,
    "Conference": ConferenceRecord,
    "MediaStream": MediaStreamRecord,
}

ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}

_ERROR_STATUSES: Final = {
    400: "invalid request (the message names the field)",
    401: "missing or invalid API token",
    404: "no such resource for this account",
    409: "the resource cannot do this now",
    413: "request body larger than 1 MiB",
    500: "unexpected error (logged on the gateway)",
    503: "the database is unavailable",
}


def _type_schema(hint: Any, name: str) -> JsonSchema:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        assert len(inner) == 1, hint
        return {"anyOf": [_type_schema(inner[0], name), {"type": "null"}]}
    if origin is tuple:
        item = ref("Action") if name == "actions" else _type_schema(typing.get_args(hint)[0], "")
        return {"type": "array", "items": item}
    if origin is dict:
        return ref("Endpoint") if name in ("source", "destination") else {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return {"type": "string", "enum": [member.value for member in hint]}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint is datetime:
        return {"type": "string", "format": "date-time"}
    return {"type": simple[hint]}


def record_schema(record_type: type) -> JsonSchema:
    """The JSON Schema of ``record_type.to_json()``: its fields less the hidden ones."""
    hints = typing.get_type_hints(record_type)
    hidden: tuple[str, ...] = getattr(record_type, "_hidden", ())
    properties = {
        f.name: _type_schema(hints[f.name], f.name)
        for f in dataclasses.fields(record_type)
        if f.name not in hidden
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _parameter(param: QueryParam) -> JsonSchema:
    schema = param.schema.json_schema()
    description = schema.pop("description", "")
    if param.default is not None:
        schema["default"] = param.default
    return {"name": param.name, "in": "query", "required": False, "schema": schema} | (
        {"description": description} if description else {}
    )


def path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _error_statuses(operation: Operation) -> list[int]:
    statuses = [401, 500, 503]
    if operation.body is not None or operation.query:
        statuses.append(400)
    if operation.body is not None:
        statuses.append(413)
    if path_names(operation.path):
        statuses.append(404)
        if operation.method != "GET":
            statuses.append(409)
    return sorted(statuses)


def _operation(operation: Operation) -> JsonSchema:
    document: JsonSchema = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_names(operation.path)
    ]
    parameters += [_parameter(param) for param in operation.query]
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": operation.body.json_schema()}},
        }
    content = {operation.response_type: {"schema": operation.response}}
    responses: JsonSchema = {str(operation.status): {"description": "OK", "content": content}}
    if operation.public:
        document["security"] = []
    else:
        for status in _error_statuses(operation):
            responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    document["responses"] = responses
    return document


def openapi_document(operations: Sequence[Operation]) -> JsonSchema:
    """The OpenAPI 3.1 document of these operations."""
    paths: dict[str, JsonSchema] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    schemas = {name: record_schema(record) for name, record in RECORDS.items()}
    schemas["Endpoint"] = ENDPOINT.json_schema()
    schemas["Action"] = ACTIONS.inner.json_schema()["items"]
    schemas["Error"] = ERROR_SCHEMA
    error_content = {"application/json": {"schema": ref("Error")}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callstream",
            "version": __version__,
            "description": "Calls, flows, routes, trunks and conferences in VoipBin's shapes.",
        },
        "security": [{"bearer": []}, {"token": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                f"E{status}": {"description": why, "content": error_content}
                for status, why in _ERROR_STATUSES.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


# -- the docs page -----------------------------------------------------------------------

_STYLE: Final = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "code,pre{background:#f4f4f4}h3{font-family:monospace}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
)


def _fields_table(schema: JsonSchema) -> str:
    required = set(schema.get("required", ()))
    rows = []
    for name, field in schema.get("properties", {}).items():
        kind = field.get("type") or ("enum" if "enum" in field else "see schema")
        if "$ref" in field:
            kind = field["$ref"].rsplit("/", 1)[-1]
        detail = field.get("description", "")
        if "enum" in field:
            detail = f"one of {', '.join(map(str, field['enum']))}. {detail}"
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(str(kind))}</td>"
            f"<td>{'yes' if name in required else ''}</td><td>{html.escape(detail)}</td></tr>"
        )
    head = "<tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _operation_html(operation: Operation) -> str:
    parts = [
        f"<h3>{operation.method} {html.escape(operation.path)}</h3>",
        f"<p>{html.escape(operation.summary)}</p>",
    ]
    if operation.query:
        names = ", ".join(f"<code>{param.name}</code>" for param in operation.query)
        parts.append(f"<p>Query: {names}</p>")
    if operation.body is not None:
        parts.append("<p>Body (JSON):</p>" + _fields_table(operation.body.json_schema()))
    response = json.dumps(operation.response)
    parts.append(f"<p>Response {operation.status}: <code>{html.escape(response)}</code></p>")
    return "\n".join(parts)


def docs_page(operations: Sequence[Operation]) -> str:
    """A plain HTML page describing every operation and record."""
    sections = []
    for tag in dict.fromkeys(operation.tag for operation in operations):
        body = "\n".join(_operation_html(op) for op in operations if op.tag == tag)
        sections.append(f"<h2>{html.escape(tag)}</h2>\n{body}")
    records = "\n".join(
        f"<h3>{name}</h3>{_fields_table(record_schema(record))}" for name, record in RECORDS.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>callstream API</title>"
        f"<style>{_STYLE}</style></head><body><h1>callstream API {__version__}</h1>"
        "<p>Every request but this page and <code>/v1.0/openapi.json</code> carries a token: "
        "<code>Authorization: Bearer TOKEN</code> or <code>?token=TOKEN</code> "
        "(<code>callstream token create --account NAME</code>). Errors are "
        '<code>{"error": {"code": "...", "message": "..."}}</code>. Lists are '
        '<code>{"result": [...], "next_page_token": ...}</code>.</p>'
        + "\n".join(sections)
        + f"<h2>Records</h2>\n{records}</body></html>"
    )


async def serve_openapi(request: web.Request) -> web.StreamResponse:
    operations = request.app[OPERATIONS_KEY]
    return web.json_response(openapi_document(operations))


async def serve_docs(request: web.Request) -> web.StreamResponse:
    operations = request.app[OPERATIONS_KEY]
    return web.Response(text=docs_page(operations), content_type="text/html")


TAG: Final = "Documentation"

OPERATIONS: Final = (
    Operation(
        "GET",
        "/v1.0/openapi.json",
        "This API as an OpenAPI 3.1 document (no token needed)",
        TAG,
        {"type": "object"},
        raw_handler=serve_openapi,
    ),
    Operation(
        "GET",
        "/v1.0/docs",
        "This API as a human-readable page (no token needed)",
        TAG,
        {"type": "string"},
        raw_handler=serve_docs,
        response_type="text/html",
    ),
)

"""The route table: each ``Operation`` both registers its handler and describes itself
in the OpenAPI document and the docs page, so the three cannot drift apart.

A handler receives an ``ApiRequest`` — the authenticated account, the validated body and
query, the call service and the store — and returns JSON-able data, which is sent with
the operation's status. Body parsing and validation happen here, before the handler
runs, so a bad request never creates anything.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from callstream.errors import ConfigError, NotFoundError
from callstream.store.base import Page, Store
from callstream.store.records import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    MediaStreamRecord,
)

from .schemas import Integer, JsonSchema, Record, Schema, Text, check_body, fail

if TYPE_CHECKING:
    from callstream.calls.media_streams import PreparedStream
    from callstream.calls.streams import MediaStream
    from callstream.wire.base import Message


class CallService(Protocol):
    """What the API needs of ``callstream.calls.service`` (its docstring is the contract)."""

    async def create_calls(
        self,
        account: Account,
        *,
        source: dict[str, str],
        destinations: list[dict[str, str]],
        actions: list[dict[str, Any]] | None,
        flow_id: str | None,
        answer_url: str | None = None,
        answer_method: str = "POST",
        xml: str | None = None,
    ) -> list[CallRecord]: ...

    async def hangup_call(self, account: Account, call_id: str) -> CallRecord: ...

    async def get_call(self, account: Account, call_id: str) -> CallRecord: ...

    async def list_calls(
        self,
        account: Account,
        *,
        status: CallStatus | None,
        page_size: int,
        page_token: str | None,
    ) -> Page[CallRecord]: ...

    async def create_conference(
        self, account: Account, *, name: str, detail: str
    ) -> ConferenceRecord: ...

    async def get_conference(self, account: Account, conference_id: str) -> ConferenceRecord: ...

    async def list_conferences(
        self, account: Account, *, page_size: int, page_token: str | None
    ) -> Page[ConferenceRecord]: ...

    async def end_conference(self, account: Account, conference_id: str) -> ConferenceRecord: ...

    async def add_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord: ...

    async def remove_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord: ...

    async def list_media_streams(
        self,
        account: Account,
        *,
        call_id: str | None,
        conference_id: str | None,
        page_size: int,
        page_token: str | None,
    ) -> Page[MediaStreamRecord]:
        """The account's media stream records, newest first, after a flush (so every
        state change so far is written); ValueError for a malformed page token."""
        ...

    async def get_media_stream(self, account: Account, stream_id: str) -> MediaStreamRecord:
        """After a flush; NotFoundError for an unknown id or another account's."""
        ...

    async def prepare_stream(
        self,
        account: Account,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        encapsulation: str | None,
        options: dict[str, str],
    ) -> PreparedStream:
        """Every check before a media_stream upgrade: 404, 409 (ended), 400, 429."""
        ...

    def start_stream(
        self,
        prepared: PreparedStream,
        *,
        send: Callable[[Message], None],
        close: Callable[[int, str], None],
    ) -> MediaStream: ...

    async def start_external_media(
        self,
        account: Account,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        url: str,
        encapsulation: str,
        format: str | None = None,
    ) -> MediaStreamRecord: ...

    async def stop_external_media(
        self, account: Account, owner_id: str, media_id: str | None = None
    ) -> list[MediaStreamRecord]: ...

    async def routes_changed(self) -> None: ...

    async def trunks_changed(self) -> None: ...


SERVICE_KEY: Final = web.AppKey("callstream.api.service", CallService)
STORE_KEY: Final = web.AppKey("callstream.api.store", Store)
ACCOUNT_KEY: Final = web.RequestKey("callstream.api.account", Account)


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    schema: Schema
    default: Any = None

    def read(self, request: web.Request) -> Any:
        raw = request.query.get(self.name)
        if raw is None:
            return self.default
        value: object = raw
        if isinstance(self.schema, Integer):
            if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 12:
                raise fail(self.name, "must be an integer")
            value = int(raw)
        return self.schema.check(value, self.name)


PAGE_SIZE: Final = QueryParam("page_size", Integer(1, 100, "items per page"), 50)
PAGE_TOKEN: Final = QueryParam(
    "page_token", Text(1, 500, "the next_page_token of the previous page")
)
PAGINATION: Final = (PAGE_SIZE, PAGE_TOKEN)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    http: web.Request
    account: Account
    service: CallService
    store: Store
    body: dict[str, Any]
    query: dict[str, Any]

    def resource_id(self, name: str, kind: str) -> str:
        """A path id; one that is not a UUID names nothing (404, like another's id)."""
        raw = self.http.match_info[name]
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise NotFoundError(f"{kind} not found: {raw[:64]!r}") from None

    async def page_of(self, fetch: Awaitable[Page[Any]]) -> dict[str, Any]:
        """A VoipBin list response; a malformed page token is the client's error."""
        try:
            page = await fetch
        except ValueError:
            raise fail("page_token", "not a valid page token") from None
        return {
            "result": [record.to_json() for record in page.result],
            "next_page_token": page.next_page_token,
        }


Handler = Callable[[ApiRequest], Awaitable[Any]]
RawHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    response: JsonSchema
    handler: Handler | None = None
    raw_handler: RawHandler | None = None
    """Answered as the handler makes it: public pages (openapi.json, docs), and, with
    ``authenticated``, the media_stream WebSocket upgrades."""
    authenticated: bool = False
    body: Record | None = None
    query: Sequence[QueryParam] = field(default_factory=tuple)
    status: int = 200
    response_type: str = "application/json"

    @property
    def public(self) -> bool:
        return self.raw_handler is not None and not self.authenticated

    @property
    def operation_id(self) -> str:
        words = [self.method.lower()]
        for part in self.path.split("/")[2:]:
            words.append(("by_" + part[1:-1]) if part.startswith("{") else part)
        return "_".join(words)

    def aiohttp_handler(self) -> RawHandler:
        if self.raw_handler is not None:
            return self.raw_handler
        assert self.handler is not None
        return self._run

    async def _run(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request, self.body) if self.body is not None else {}
        query = {param.name: param.read(request) for param in self.query}
        api_request = ApiRequest(
            http=request,
            account=request[ACCOUNT_KEY],
            service=request.app[SERVICE_KEY],
            store=request.app[STORE_KEY],
            body=body,
            query=query,
        )
        assert self.handler is not None
        result = await self.handler(api_request)
        return web.json_response(result, status=self.status)


OPERATIONS_KEY: Final[web.AppKey[tuple[Operation, ...]]] = web.AppKey("callstream.api.operations")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: web.Request, schema: Record) -> dict[str, Any]:
    """The request body as JSON, validated; aiohttp raises 413 past client_max_size."""
    raw = await request.read()
    if not raw.strip():
        raise ConfigError("request body is required (a JSON object)")
    try:
        parsed = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ConfigError("request body is not valid JSON: not UTF-8") from None
    except RecursionError:
        raise ConfigError("request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"request body is not valid JSON: {exc}") from None
    result: dict[str, Any] = check_body(schema, parsed)
    return result


def register(app: web.Application, operations: Sequence[Operation]) -> None:
    """Add every operation's handler to the app's router."""
    for operation in operations:
        app.router.add_route(operation.method, operation.path, operation.aiohttp_handler())

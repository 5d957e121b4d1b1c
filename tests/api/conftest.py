"""Fixtures for the API tests: a store, a stand-in call service that records what the
API asks of it, two accounts with tokens, and an aiohttp test client over loopback.

The store is the real one: ``callstream.store.open_store`` on SQLite in ``tmp_path``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callstream.api import ApiAccessLogger, create_api
from callstream.errors import ConflictError, NotFoundError
from callstream.store import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    HangupReason,
    MediaStreamRecord,
    Page,
    Store,
    open_store,
    utcnow,
)


class StandInService:
    """The call service's contract over the store, recording every request it gets."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: list[tuple[str, Any]] = []
        self.routes_changes = 0
        self.trunks_changes = 0
        self.fail_with: Exception | None = None

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
    ) -> list[CallRecord]:
        if self.fail_with is not None:
            raise self.fail_with
        if answer_url is not None or xml is not None:
            self.requests.append(("create_calls_xml", (answer_url, answer_method, xml)))
        self.requests.append(("create_calls", (account.id, source, destinations, actions, flow_id)))
        records = []
        for destination in destinations:
            now = utcnow()
            record = CallRecord(
                id=str(uuid.uuid4()),
                account_id=account.id,
                direction="outbound",
                source=source,
                destination=destination,
                status=CallStatus.DIALING,
                tm_create=now,
                tm_update=now,
                actions=tuple(actions or ()),
                flow_id=flow_id,
            )
            await self.store.save_call(record)
            records.append(record)
        return records

    async def _call(self, account: Account, call_id: str) -> CallRecord:
        record = await self.store.get_call(account.id, call_id)
        if record is None:
            raise NotFoundError(f"call {call_id} not found")
        return record

    async def hangup_call(self, account: Account, call_id: str) -> CallRecord:
        record = await self._call(account, call_id)
        self.requests.append(("hangup_call", call_id))
        if record.status is not CallStatus.HANGUP:
            record = record.evolve(
                status=CallStatus.HANGUP,
                hangup_by="local",
                hangup_reason=HangupReason.NORMAL,
                tm_hangup=utcnow(),
            )
            await self.store.save_call(record)
        return record

    async def get_call(self, account: Account, call_id: str) -> CallRecord:
        return await self._call(account, call_id)

    async def list_calls(
        self,
        account: Account,
        *,
        status: CallStatus | None,
        page_size: int,
        page_token: str | None,
    ) -> Page[CallRecord]:
        return await self.store.list_calls(
            account.id, status=status, page_size=page_size, page_token=page_token
        )

    async def create_conference(
        self, account: Account, *, name: str, detail: str
    ) -> ConferenceRecord:
        now = utcnow()
        record = ConferenceRecord(
            str(uuid.uuid4()), account.id, name, detail, ConferenceStatus.PROGRESSING, (), now, now
        )
        await self.store.save_conference(record)
        return record

    async def get_conference(self, account: Account, conference_id: str) -> ConferenceRecord:
        record = await self.store.get_conference(account.id, conference_id)
        if record is None:
            raise NotFoundError(f"conference {conference_id} not found")
        return record

    async def list_conferences(
        self, account: Account, *, page_size: int, page_token: str | None
    ) -> Page[ConferenceRecord]:
        return await self.store.list_conferences(
            account.id, page_size=page_size, page_token=page_token
        )

    async def end_conference(self, account: Account, conference_id: str) -> ConferenceRecord:
        record = await self.get_conference(account, conference_id)
        record = record.evolve(status=ConferenceStatus.TERMINATED, call_ids=(), tm_end=utcnow())
        await self.store.save_conference(record)
        return record

    async def add_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord:
        record = await self.get_conference(account, conference_id)
        call = await self._call(account, call_id)
        if call.status is CallStatus.HANGUP or record.status is ConferenceStatus.TERMINATED:
            raise ConflictError(f"call {call_id} or conference {conference_id} has ended")
        record = record.evolve(call_ids=(*record.call_ids, call_id))
        await self.store.save_conference(record)
        return record

    async def remove_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord:
        record = await self.get_conference(account, conference_id)
        if call_id not in record.call_ids:
            raise NotFoundError(f"call {call_id} is not in conference {conference_id}")
        record = record.evolve(call_ids=tuple(c for c in record.call_ids if c != call_id))
        await self.store.save_conference(record)
        return record

    async def list_media_streams(
        self,
        account: Account,
        *,
        call_id: str | None,
        conference_id: str | None,
        page_size: int,
        page_token: str | None,
    ) -> Page[MediaStreamRecord]:
        self.requests.append(("list_media_streams", (account.id, call_id, conference_id)))
        return await self.store.list_streams(
            account.id,
            call_id=call_id,
            conference_id=conference_id,
            page_size=page_size,
            page_token=page_token,
        )

    async def get_media_stream(self, account: Account, stream_id: str) -> MediaStreamRecord:
        self.requests.append(("get_media_stream", stream_id))
        record = await self.store.get_stream(account.id, stream_id)
        if record is None:
            raise NotFoundError(f"media stream {stream_id} not found")
        return record

    async def routes_changed(self) -> None:
        self.routes_changes += 1

    async def trunks_changed(self) -> None:
        self.trunks_changes += 1


@dataclass
class Api:
    """A client with two accounts: ``a`` and ``b`` are their tokens."""

    client: TestClient[web.Request, web.Application]
    store: Store
    service: StandInService
    a: str
    b: str
    account_a: Account
    account_b: Account

    def _headers(self, token: str | None) -> dict[str, str]:
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = "", **kw: Any
    ) -> tuple[int, Any]:
        """One request as account A (``token=""``), another token, or none (None)."""
        token = self.a if token == "" else token
        if body is not None:
            kw["json"] = body
        response = await self.client.request(method, path, headers=self._headers(token), **kw)
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def store_is_empty(api: Api) -> bool:
    """No call, flow, route, trunk, conference or media stream of either account."""
    for account in (api.account_a, api.account_b):
        pages = [
            await api.store.list_calls(account.id),
            await api.store.list_flows(account.id),
            await api.store.list_routes(account.id),
            await api.store.list_trunks(account.id),
            await api.store.list_conferences(account.id),
            await api.store.list_streams(account.id),
        ]
        if any(page.result for page in pages):
            return False
    return True


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'callstream.db'}")
    yield store
    await store.close()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    service = StandInService(store)
    app = create_api(service, store)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    account_a, token_a = await store.create_token("alpha")
    account_b, token_b = await store.create_token("bravo")
    server = TestServer(app)
    # As the gateway runs it: its access log writes paths, never ?token=.
    await server.start_server(access_log_class=ApiAccessLogger)
    async with TestClient(server) as client:
        yield Api(client, store, service, token_a, token_b, account_a, account_b)

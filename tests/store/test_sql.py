"""SqlStore: every Store method on SQLite and PostgreSQL, isolation, pagination, errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from callstream.errors import ConfigError, ConflictError, StoreError
from callstream.store import (
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    FlowRecord,
    HangupReason,
    RouteRecord,
    SqlStore,
    TrunkRecord,
    open_store,
)
from callstream.store.sql import async_url, decode_page_token, encode_page_token
from tests.store.conftest import sqlite_url

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def call(
    account_id: str,
    *,
    at: datetime = T0,
    status: CallStatus = CallStatus.DIALING,
    call_id: str | None = None,
) -> CallRecord:
    return CallRecord(
        id=call_id or str(uuid.uuid4()),
        account_id=account_id,
        direction="outbound",
        source={"type": "sip", "target": "sip:alice@example.com"},
        destination={"type": "tel", "target": "+15551234567"},
        status=status,
        tm_create=at,
        tm_update=at,
        actions=({"type": "answer"}, {"type": "talk", "option": {"text": "héllo"}}),
    )


def full_call(account_id: str) -> CallRecord:
    return call(account_id, status=CallStatus.HANGUP).evolve(
        flow_id=str(uuid.uuid4()),
        current_action={"type": "talk", "id": "a1"},
        hangup_by="remote",
        hangup_reason=HangupReason.BUSY,
        sip_call_id="a84b4c76e66710@pc33.atlanta.com",
        codec="PCMU",
        conference_id=str(uuid.uuid4()),
        tm_ringing=T0 + timedelta(milliseconds=250),
        tm_progressing=T0 + timedelta(seconds=2, microseconds=1),
        tm_hangup=T0 + timedelta(minutes=3),
    )


def flow(account_id: str, *, at: datetime = T0) -> FlowRecord:
    return FlowRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        name="greeting",
        detail="answer and talk",
        actions=({"type": "answer"}, {"type": "hangup"}),
        tm_create=at,
        tm_update=at,
    )


def route(account_id: str, *, priority: int = 10, at: datetime = T0) -> RouteRecord:
    return RouteRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        match="re:^\\+1",
        flow_id=str(uuid.uuid4()),
        priority=priority,
        tm_create=at,
        tm_update=at,
    )


def trunk(account_id: str, *, at: datetime = T0) -> TrunkRecord:
    return TrunkRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        name="carrier",
        proxy="sip.carrier.example:5060",
        transport="UDP",
        username="user1",
        password="s3cret",
        inbound_addresses=("192.0.2.10", "198.51.100.0/24"),
        tm_create=at,
        tm_update=at,
        media_stream={"url": "wss://example.com/ws", "encapsulation": "rtp"},
    )


def conference(
    account_id: str, *, at: datetime = T0, status: ConferenceStatus = ConferenceStatus.PROGRESSING
) -> ConferenceRecord:
    return ConferenceRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        name="standup",
        detail="daily",
        status=status,
        call_ids=(str(uuid.uuid4()), str(uuid.uuid4())),
        tm_create=at,
        tm_update=at,
    )


async def two_accounts(store: SqlStore) -> tuple[str, str]:
    first = await store.ensure_account("alpha")
    second = await store.ensure_account("beta")
    return first.id, second.id


# -- URLs and page tokens ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///callstream.db", "sqlite+aiosqlite:///callstream.db"),
        ("sqlite:////var/lib/cs.db", "sqlite+aiosqlite:////var/lib/cs.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://user@127.0.0.1:5432/db", "postgresql+asyncpg://user@127.0.0.1:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_async_url_maps_user_urls(url: str, expected: str) -> None:
    assert async_url(url).render_as_string(hide_password=False) == expected


def test_async_url_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError) as caught:
        async_url("mysql://root@localhost/db")
    assert str(caught.value) == (
        "database_url: unsupported scheme 'mysql' (use sqlite:/// or postgresql://)"
    )


def test_async_url_rejects_garbage() -> None:
    with pytest.raises(ConfigError) as caught:
        async_url("not a url")
    assert str(caught.value) == "database_url: cannot parse 'not a url'"


async def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="unsupported scheme 'oracle'"):
        await open_store("oracle://scott@localhost/db")


def test_page_token_round_trip() -> None:
    stamp = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    token = encode_page_token(stamp, "id-1")
    assert base64.urlsafe_b64decode(token) == b"2025-01-02T01:04:05.678901+00:00|id-1"
    assert decode_page_token(token) == (stamp, "id-1")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!not base64",
        "é",
        _b64("2025-01-02T01:04:05+00:00"),  # no separator
        _b64("yesterday|id-1"),
        _b64("2025-01-02T01:04:05|id-1"),  # naive
        _b64("2025-01-02T01:04:05+00:00|"),  # no id
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_bad_page_token(token: str) -> None:
    with pytest.raises(ValueError) as caught:
        decode_page_token(token)
    assert str(caught.value) == "bad page_token"


# -- calls ---------------------------------------------------------------------------


async def test_call_round_trip_every_field(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    record = full_call(alpha)
    await store.save_call(record)
    assert await store.get_call(alpha, record.id) == record


async def test_call_timestamps_come_back_utc_aware(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    paris = timezone(timedelta(hours=1))
    local = datetime(2025, 3, 1, 13, 0, 0, 1000, tzinfo=paris)
    await store.save_call(call(alpha, at=local, call_id="c-local"))
    loaded = await store.get_call(alpha, "c-local")
    assert loaded is not None
    assert loaded.tm_create == local
    assert loaded.tm_create.tzinfo == UTC
    assert loaded.tm_create.isoformat() == "2025-03-01T12:00:00.001000+00:00"


async def test_save_call_replaces_by_id(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    first = call(alpha)
    await store.save_call(first)
    later = first.evolve(status=CallStatus.PROGRESSING, tm_progressing=T0, codec="PCMA")
    await store.save_call(later)
    assert await store.get_call(alpha, first.id) == later
    page = await store.list_calls(alpha)
    assert page.result == [later]


async def test_unknown_call_is_none(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    assert await store.get_call(alpha, "no-such-call") is None


async def test_naive_timestamp_is_a_store_error(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    with pytest.raises(StoreError, match="naive datetime 2025-03-01T12:00:00"):
        await store.save_call(call(alpha, at=datetime(2025, 3, 1, 12)))


# -- pagination ----------------------------------------------------------------------


async def test_list_calls_three_pages_newest_first_stable_on_ties(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    # three calls share one timestamp: the id breaks the tie, descending
    stamps = [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
        T0 + timedelta(milliseconds=2500),
        T0 + timedelta(seconds=3),
    ]
    records = [call(alpha, at=at, call_id=f"call-{i}") for i, at in enumerate(stamps)]
    for record in reversed(records):
        await store.save_call(record)
    await store.save_call(call(beta, at=T0 + timedelta(hours=1)))

    first = await store.list_calls(alpha, page_size=3)
    assert [r.id for r in first.result] == ["call-6", "call-5", "call-4"]
    assert first.next_page_token is not None
    second = await store.list_calls(alpha, page_size=3, page_token=first.next_page_token)
    assert [r.id for r in second.result] == ["call-3", "call-2", "call-1"]
    assert second.next_page_token is not None
    third = await store.list_calls(alpha, page_size=3, page_token=second.next_page_token)
    assert [r.id for r in third.result] == ["call-0"]
    assert third.next_page_token is None


async def test_full_last_page_has_no_next_token(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    for i in range(4):
        await store.save_call(call(alpha, at=T0 + timedelta(seconds=i), call_id=f"c{i}"))
    first = await store.list_calls(alpha, page_size=2)
    second = await store.list_calls(alpha, page_size=2, page_token=first.next_page_token)
    assert [r.id for r in second.result] == ["c1", "c0"]
    assert second.next_page_token is None


async def test_list_calls_status_filter_pages(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    for i in range(6):
        status = CallStatus.HANGUP if i % 2 else CallStatus.PROGRESSING
        await store.save_call(
            call(alpha, at=T0 + timedelta(seconds=i), call_id=f"c{i}", status=status)
        )
    first = await store.list_calls(alpha, status=CallStatus.HANGUP, page_size=2)
    assert [r.id for r in first.result] == ["c5", "c3"]
    second = await store.list_calls(
        alpha, status=CallStatus.HANGUP, page_size=2, page_token=first.next_page_token
    )
    assert [r.id for r in second.result] == ["c1"]
    assert second.next_page_token is None
    live = await store.list_calls(alpha, status=CallStatus.PROGRESSING)
    assert [r.id for r in live.result] == ["c4", "c2", "c0"]


async def test_list_with_bad_page_token(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    for method in (
        store.list_calls,
        store.list_flows,
        store.list_routes,
        store.list_trunks,
        store.list_conferences,
    ):
        with pytest.raises(ValueError) as caught:
            await method(alpha, page_token="garbage!")
        assert str(caught.value) == "bad page_token"


async def test_list_empty(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    page = await store.list_flows(alpha)
    assert page.result == []
    assert page.next_page_token is None


# -- flows, routes, trunks, conferences ---------------------------------------------


async def test_flow_save_get_list_delete(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    older, newer = flow(alpha), flow(alpha, at=T0 + timedelta(seconds=5))
    await store.save_flow(older)
    await store.save_flow(newer)
    assert await store.get_flow(alpha, older.id) == older
    assert (await store.list_flows(alpha)).result == [newer, older]
    renamed = older.evolve(name="renamed", tm_update=T0 + timedelta(minutes=1))
    await store.save_flow(renamed)
    assert await store.get_flow(alpha, older.id) == renamed
    assert await store.delete_flow(alpha, older.id) is True
    assert await store.delete_flow(alpha, older.id) is False
    assert await store.get_flow(alpha, older.id) is None
    assert (await store.list_flows(alpha)).result == [newer]


async def test_route_save_get_list_delete(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    record = route(alpha)
    await store.save_route(record)
    assert await store.get_route(alpha, record.id) == record
    assert (await store.list_routes(alpha)).result == [record]
    assert await store.delete_route(alpha, record.id) is True
    assert await store.get_route(alpha, record.id) is None
    assert await store.delete_route(alpha, record.id) is False


async def test_all_routes_by_priority_then_age_across_accounts(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    late_first = route(alpha, priority=1, at=T0 + timedelta(hours=1))
    early_first = route(beta, priority=1, at=T0)
    second = route(alpha, priority=5, at=T0 - timedelta(days=1))
    for record in (second, late_first, early_first):
        await store.save_route(record)
    assert await store.all_routes() == [early_first, late_first, second]


async def test_trunk_save_get_list_delete_keeps_password(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    record = trunk(alpha)
    other = trunk(beta, at=T0 - timedelta(seconds=1)).evolve(
        username=None, password=None, media_stream=None, inbound_addresses=()
    )
    await store.save_trunk(record)
    await store.save_trunk(other)
    loaded = await store.get_trunk(alpha, record.id)
    assert loaded == record
    assert loaded is not None and loaded.password == "s3cret"
    assert (await store.list_trunks(alpha)).result == [record]
    assert await store.all_trunks() == [other, record]
    assert await store.delete_trunk(alpha, record.id) is True
    assert await store.all_trunks() == [other]


async def test_conference_save_get_list(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    record = conference(alpha)
    await store.save_conference(record)
    assert await store.get_conference(alpha, record.id) == record
    ended = record.evolve(
        status=ConferenceStatus.TERMINATED, call_ids=(), tm_end=T0 + timedelta(hours=1)
    )
    await store.save_conference(ended)
    assert await store.get_conference(alpha, record.id) == ended
    newer = conference(alpha, at=T0 + timedelta(seconds=1))
    await store.save_conference(newer)
    page = await store.list_conferences(alpha, page_size=1)
    assert page.result == [newer]
    rest = await store.list_conferences(alpha, page_size=1, page_token=page.next_page_token)
    assert rest.result == [ended]
    assert rest.next_page_token is None


# -- isolation -----------------------------------------------------------------------


async def test_accounts_never_see_each_others_rows(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    a_call, a_flow, a_route = call(alpha), flow(alpha), route(alpha)
    a_trunk, a_conference = trunk(alpha), conference(alpha)
    await store.save_call(a_call)
    await store.save_flow(a_flow)
    await store.save_route(a_route)
    await store.save_trunk(a_trunk)
    await store.save_conference(a_conference)

    assert await store.get_call(beta, a_call.id) is None
    assert await store.get_flow(beta, a_flow.id) is None
    assert await store.get_route(beta, a_route.id) is None
    assert await store.get_trunk(beta, a_trunk.id) is None
    assert await store.get_conference(beta, a_conference.id) is None
    for method in (
        store.list_calls,
        store.list_flows,
        store.list_routes,
        store.list_trunks,
        store.list_conferences,
    ):
        page = await method(beta)
        assert page.result == [] and page.next_page_token is None
    assert await store.delete_flow(beta, a_flow.id) is False
    assert await store.delete_route(beta, a_route.id) is False
    assert await store.delete_trunk(beta, a_trunk.id) is False
    # nothing of alpha's went missing
    assert await store.get_flow(alpha, a_flow.id) == a_flow
    assert await store.get_route(alpha, a_route.id) == a_route
    assert await store.get_trunk(alpha, a_trunk.id) == a_trunk


async def test_page_token_of_one_account_shows_nothing_of_another(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    for i in range(3):
        await store.save_call(call(alpha, at=T0 + timedelta(seconds=i)))
    page = await store.list_calls(alpha, page_size=1)
    assert (await store.list_calls(beta, page_token=page.next_page_token)).result == []


async def test_saving_under_another_accounts_id_is_a_conflict(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    mine = call(alpha)
    await store.save_call(mine)
    with pytest.raises(ConflictError) as caught:
        await store.save_call(mine.evolve(account_id=beta, status=CallStatus.HANGUP))
    assert str(caught.value) == f"calls id {mine.id} belongs to another account"
    assert await store.get_call(alpha, mine.id) == mine
    assert await store.get_call(beta, mine.id) is None
    a_flow = flow(alpha)
    await store.save_flow(a_flow)
    with pytest.raises(ConflictError, match=f"^flows id {a_flow.id} belongs"):
        await store.save_flow(a_flow.evolve(account_id=beta, name="stolen"))
    assert await store.get_flow(alpha, a_flow.id) == a_flow


async def test_save_many_writes_every_kind_in_order_in_one_go(store: SqlStore) -> None:
    from tests.store.test_media_streams import full_stream

    alpha, _beta = await two_accounts(store)
    first, room, streamed = full_call(alpha), conference(alpha), full_stream(alpha)
    later = first.evolve(status=CallStatus.HANGUP, tm_update=T0 + timedelta(seconds=5))
    await store.save_many([first, room, streamed, later])  # the later version wins
    assert await store.get_call(alpha, first.id) == later
    assert await store.get_conference(alpha, room.id) == room
    assert await store.get_stream(alpha, streamed.id) == streamed
    await store.save_many([])


async def test_save_many_is_all_or_none_on_a_conflict(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    mine = call(alpha)
    await store.save_call(mine)
    fresh = call(beta)
    with pytest.raises(ConflictError) as caught:
        await store.save_many([fresh, mine.evolve(account_id=beta, status=CallStatus.HANGUP)])
    assert str(caught.value) == f"calls id {mine.id} belongs to another account"
    assert await store.get_call(beta, fresh.id) is None  # rolled back with the conflict
    assert await store.get_call(alpha, mine.id) == mine


# -- end_live_calls ------------------------------------------------------------------


async def test_end_live_calls(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    live = [
        call(alpha, status=status)
        for status in (CallStatus.DIALING, CallStatus.RINGING, CallStatus.PROGRESSING)
    ]
    live.append(call(beta, status=CallStatus.TERMINATING))
    ended = full_call(alpha)
    for record in (*live, ended):
        await store.save_call(record)
    running, over = conference(alpha), conference(beta, status=ConferenceStatus.TERMINATED)
    await store.save_conference(running)
    await store.save_conference(over)
    before = datetime.now(UTC) - timedelta(seconds=1)

    assert await store.end_live_calls(HangupReason.GATEWAY_RESTART) == 4

    for record in live:
        loaded = await store.get_call(record.account_id, record.id)
        assert loaded is not None
        assert loaded.status is CallStatus.HANGUP
        assert loaded.hangup_reason is HangupReason.GATEWAY_RESTART
        assert loaded.hangup_by == "local"
        assert loaded.tm_hangup is not None and loaded.tm_hangup >= before
        assert loaded.tm_update == loaded.tm_hangup
        assert (
            loaded.evolve(
                status=record.status,
                hangup_reason=None,
                hangup_by=None,
                tm_hangup=None,
                tm_update=record.tm_update,
            )
            == record
        )
    assert await store.get_call(alpha, ended.id) == ended
    loaded_conference = await store.get_conference(alpha, running.id)
    assert loaded_conference is not None
    assert loaded_conference.status is ConferenceStatus.TERMINATED
    assert loaded_conference.tm_end is not None and loaded_conference.tm_end >= before
    assert await store.get_conference(beta, over.id) == over
    assert await store.end_live_calls(HangupReason.GATEWAY_RESTART) == 0


# -- accounts and tokens -------------------------------------------------------------


async def test_token_create_verify_revoke(store: SqlStore) -> None:
    account, token = await store.create_token("acme")
    assert account.name == "acme"
    assert token.startswith("cs_") and len(token) == 46
    assert await store.account_for_token(token) == account
    again, second_token = await store.create_token("acme")
    assert again == account
    assert second_token != token
    assert await store.get_account_by_name("acme") == account

    assert await store.revoke_token(token) is True
    assert await store.account_for_token(token) is None
    assert await store.revoke_token(token) is False
    assert await store.account_for_token(second_token) == account


async def test_unknown_tokens(store: SqlStore) -> None:
    _, token = await store.create_token("acme")
    assert await store.account_for_token(token[:-1]) is None
    assert await store.account_for_token("") is None
    assert await store.account_for_token("cs_\udcff") is None
    assert await store.revoke_token("cs_nope") is False


async def test_tokens_belong_to_their_account(store: SqlStore) -> None:
    acme, acme_token = await store.create_token("acme")
    other, other_token = await store.create_token("other")
    assert acme.id != other.id
    assert await store.account_for_token(acme_token) == acme
    assert await store.account_for_token(other_token) == other


async def test_ensure_account_is_idempotent(store: SqlStore) -> None:
    created = await store.ensure_account("config")
    assert await store.ensure_account("config") == created
    assert await store.get_account_by_name("config") == created
    assert await store.get_account_by_name("nobody") is None
    account, _ = await store.create_token("config")
    assert account == created


def _all_bytes(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.iterdir())


async def test_token_is_never_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    store = await open_store(sqlite_url(path))
    _, token = await store.create_token("acme")
    hashed = await store.account_for_token(token)
    assert hashed is not None
    await store.close()
    stored = _all_bytes(tmp_path)
    assert token.encode() not in stored
    assert token[3:].encode() not in stored
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored


# -- errors --------------------------------------------------------------------------


async def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError) as caught:
        await open_store("postgresql://postgres@127.0.0.1:1/nothing")
    assert str(caught.value).startswith("database migration failed: ")
    assert caught.value.__cause__ is not None


async def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with pytest.raises(StoreError) as caught:
        await open_store(sqlite_url(tmp_path / "no" / "such" / "dir.db"))
    assert str(caught.value) == (
        "database migration failed: OperationalError: unable to open database file"
    )
    await _threads_ended(set(threading.enumerate()) - before)


async def _threads_ended(threads: set[threading.Thread]) -> None:
    """aiosqlite stops the thread of a failed connect without awaiting it; the thread
    reports to the loop, so the loop must outlive it (else pytest sees a thread error)."""
    for _ in range(500):
        if not any(thread.is_alive() for thread in threads):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("aiosqlite worker thread still running")


async def test_database_failure_after_open_is_a_store_error(tmp_path: Path) -> None:
    store = await open_store(sqlite_url(tmp_path / "broken.db"))
    async with store.engine.begin() as connection:
        await connection.execute(sa.text("DROP TABLE calls"))
    with pytest.raises(StoreError) as caught:
        await store.get_call("a", "b")
    assert str(caught.value) == "database read failed: OperationalError: no such table: calls"
    with pytest.raises(StoreError, match="^database write failed: OperationalError: no such"):
        await store.save_call(call("a"))
    await store.close()


async def test_page_size_must_be_positive(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    with pytest.raises(ValueError) as caught:
        await store.list_flows(alpha, page_size=0)
    assert str(caught.value) == "bad page_size"

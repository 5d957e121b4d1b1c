"""Media stream records: the record, and every stream method of SqlStore on SQLite and
PostgreSQL (round trip, replace, isolation, filters, pages, end_live_calls, conflicts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from callstream.errors import ConflictError
from callstream.store import (
    CallRecord,
    CallStatus,
    HangupReason,
    MediaStreamRecord,
    SqlStore,
    StreamDirection,
    StreamStatus,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CALL_ID = "0b6a7c3e-5d0f-4a7e-9d7e-3f1c2b9a8e01"
CONFERENCE_ID = "6f2d9c1a-8b3e-4f5a-a1c2-7e9d0b4c3a12"


def stream(
    account_id: str,
    *,
    at: datetime = T0,
    stream_id: str | None = None,
    call_id: str | None = CALL_ID,
    conference_id: str | None = None,
    status: StreamStatus = StreamStatus.STREAMING,
) -> MediaStreamRecord:
    return MediaStreamRecord(
        id=stream_id or str(uuid.uuid4()),
        account_id=account_id,
        call_id=call_id,
        conference_id=conference_id,
        encapsulation="rtp",
        direction=StreamDirection.INBOUND,
        status=status,
        tm_create=at,
        tm_update=at,
    )


def full_stream(account_id: str) -> MediaStreamRecord:
    """Every field set, counters past 2**31 (BIGINT), a non-ASCII close reason."""
    return MediaStreamRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        conference_id=CONFERENCE_ID,
        encapsulation="sln",
        format="ulaw",
        direction=StreamDirection.OUTBOUND,
        url="wss://media.example.com:8443/in?call=1",
        status=StreamStatus.FAILED,
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=7),
        tm_start=T0 + timedelta(milliseconds=20),
        tm_end=T0 + timedelta(seconds=7),
        frames_sent=350,
        bytes_sent=3_000_000_000,
        frames_received=349,
        bytes_received=55_840,
        frames_dropped_malformed=3,
        frames_dropped_overflow=12,
        close_code=1011,
        close_reason="serveur arrêté",
        error="connection refused after 3 tries",
    )


async def two_accounts(store: SqlStore) -> tuple[str, str]:
    first = await store.ensure_account("alpha")
    second = await store.ensure_account("beta")
    return first.id, second.id


# -- the record ------------------------------------------------------------------------


def test_to_json_every_field_in_order() -> None:
    record = full_stream("acct").evolve(id="5f0c", call_id=None)
    assert record.to_json() == {
        "id": "5f0c",
        "account_id": "acct",
        "call_id": None,
        "conference_id": CONFERENCE_ID,
        "encapsulation": "sln",
        "format": "ulaw",
        "direction": "outbound",
        "url": "wss://media.example.com:8443/in?call=1",
        "status": "failed",
        "tm_create": "2025-03-01T12:00:00.123Z",
        "tm_update": "2025-03-01T12:00:07.123Z",
        "tm_start": "2025-03-01T12:00:00.143Z",
        "tm_end": "2025-03-01T12:00:07.123Z",
        "frames_sent": 350,
        "bytes_sent": 3_000_000_000,
        "frames_received": 349,
        "bytes_received": 55_840,
        "frames_dropped_malformed": 3,
        "frames_dropped_overflow": 12,
        "close_code": 1011,
        "close_reason": "serveur arrêté",
        "error": "connection refused after 3 tries",
    }
    assert list(record.to_json()) == [
        "id",
        "account_id",
        "call_id",
        "conference_id",
        "encapsulation",
        "format",
        "direction",
        "url",
        "status",
        "tm_create",
        "tm_update",
        "tm_start",
        "tm_end",
        "frames_sent",
        "bytes_sent",
        "frames_received",
        "bytes_received",
        "frames_dropped_malformed",
        "frames_dropped_overflow",
        "close_code",
        "close_reason",
        "error",
    ]


def test_defaults_and_keyword_only() -> None:
    record = stream("acct", stream_id="s1")
    assert (record.format, record.url, record.tm_start, record.tm_end) == (None, None, None, None)
    assert (record.frames_sent, record.bytes_received, record.frames_dropped_overflow) == (0, 0, 0)
    assert (record.close_code, record.close_reason, record.error) == (None, None, None)
    with pytest.raises(TypeError):
        MediaStreamRecord("s1", "acct")  # type: ignore[misc]


def test_enums() -> None:
    assert [d.value for d in StreamDirection] == ["inbound", "outbound"]
    assert [s.value for s in StreamStatus] == ["connecting", "streaming", "ended", "failed"]
    assert [s.is_final for s in StreamStatus] == [False, False, True, True]


# -- the store -------------------------------------------------------------------------


async def test_round_trip_every_field(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    record = full_stream(alpha)
    await store.save_stream(record)
    loaded = await store.get_stream(alpha, record.id)
    assert loaded == record
    assert loaded is not None
    assert loaded.direction is StreamDirection.OUTBOUND
    assert loaded.status is StreamStatus.FAILED
    assert loaded.tm_start is not None and loaded.tm_start.tzinfo == UTC


async def test_save_replaces_by_id(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    first = stream(alpha, status=StreamStatus.CONNECTING)
    await store.save_stream(first)
    later = first.evolve(
        status=StreamStatus.ENDED,
        tm_update=T0 + timedelta(minutes=1),
        tm_start=T0 + timedelta(seconds=1),
        tm_end=T0 + timedelta(minutes=1),
        frames_sent=2950,
        bytes_sent=507_400,
        close_code=1000,
        close_reason="call ended",
    )
    await store.save_stream(later)
    assert await store.get_stream(alpha, first.id) == later
    assert (await store.list_streams(alpha)).result == [later]


async def test_unknown_stream_is_none(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    assert await store.get_stream(alpha, str(uuid.uuid4())) is None


async def test_accounts_never_see_each_others_streams(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    mine = stream(alpha)
    await store.save_stream(mine)
    assert await store.get_stream(beta, mine.id) is None
    for filters in ({}, {"call_id": CALL_ID}):
        page = await store.list_streams(beta, **filters)
        assert page.result == [] and page.next_page_token is None
    with pytest.raises(ConflictError) as caught:
        await store.save_stream(mine.evolve(account_id=beta, status=StreamStatus.ENDED))
    assert str(caught.value) == f"media_streams id {mine.id} belongs to another account"
    assert await store.get_stream(alpha, mine.id) == mine


async def test_filters_by_call_and_conference(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    other_call = str(uuid.uuid4())
    on_call = [stream(alpha, at=T0 + timedelta(seconds=i), stream_id=f"c{i}") for i in range(3)]
    elsewhere = stream(alpha, at=T0 + timedelta(seconds=9), stream_id="x", call_id=other_call)
    on_conference = stream(
        alpha,
        at=T0 + timedelta(seconds=5),
        stream_id="f",
        call_id=None,
        conference_id=CONFERENCE_ID,
    )
    for record in (*on_call, elsewhere, on_conference, stream(beta, stream_id="b")):
        await store.save_stream(record)

    by_call = await store.list_streams(alpha, call_id=CALL_ID)
    assert [r.id for r in by_call.result] == ["c2", "c1", "c0"]
    by_conference = await store.list_streams(alpha, conference_id=CONFERENCE_ID)
    assert by_conference.result == [on_conference]
    everything = await store.list_streams(alpha)
    assert [r.id for r in everything.result] == ["x", "f", "c2", "c1", "c0"]
    both = await store.list_streams(alpha, call_id=CALL_ID, conference_id=CONFERENCE_ID)
    assert both.result == []
    assert (await store.list_streams(alpha, call_id=str(uuid.uuid4()))).result == []


async def test_filtered_pages_newest_first(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    stamps = [T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), T0]
    for i, at in enumerate(stamps):
        await store.save_stream(stream(alpha, at=at, stream_id=f"s{i}"))
        # streams of another call interleave: they never show in the filtered pages
        await store.save_stream(stream(alpha, at=at, stream_id=f"o{i}", call_id="other"))

    first = await store.list_streams(alpha, call_id=CALL_ID, page_size=2)
    assert [r.id for r in first.result] == ["s3", "s2"]
    assert first.next_page_token is not None
    second = await store.list_streams(
        alpha, call_id=CALL_ID, page_size=2, page_token=first.next_page_token
    )
    # a tie on tm_create: id descending
    assert [r.id for r in second.result] == ["s4", "s1"]
    third = await store.list_streams(
        alpha, call_id=CALL_ID, page_size=2, page_token=second.next_page_token
    )
    assert [r.id for r in third.result] == ["s0"]
    assert third.next_page_token is None


async def test_bad_page_token_and_size(store: SqlStore) -> None:
    alpha, _ = await two_accounts(store)
    with pytest.raises(ValueError) as caught:
        await store.list_streams(alpha, page_token="garbage!")
    assert str(caught.value) == "bad page_token"
    with pytest.raises(ValueError) as caught:
        await store.list_streams(alpha, page_size=0)
    assert str(caught.value) == "bad page_size"


async def test_end_live_calls_ends_open_streams(store: SqlStore) -> None:
    alpha, beta = await two_accounts(store)
    live = [
        stream(alpha, status=StreamStatus.CONNECTING),
        stream(alpha, status=StreamStatus.STREAMING).evolve(frames_sent=10, close_code=None),
        stream(beta, status=StreamStatus.STREAMING, call_id=None, conference_id=CONFERENCE_ID),
    ]
    ended = stream(alpha, status=StreamStatus.ENDED).evolve(
        tm_end=T0, close_code=1000, close_reason="call ended"
    )
    failed = full_stream(alpha)
    for record in (*live, ended, failed):
        await store.save_stream(record)
    await store.save_call(
        CallRecord(
            id=CALL_ID,
            account_id=alpha,
            direction="inbound",
            source={"type": "sip", "target": "sip:a@example.com"},
            destination={"type": "sip", "target": "sip:b@example.com"},
            status=CallStatus.PROGRESSING,
            tm_create=T0,
            tm_update=T0,
        )
    )
    before = datetime.now(UTC) - timedelta(seconds=1)

    # the count is of calls, as before streams existed
    assert await store.end_live_calls(HangupReason.GATEWAY_RESTART) == 1

    for record in live:
        loaded = await store.get_stream(record.account_id, record.id)
        assert loaded is not None
        assert loaded.status is StreamStatus.ENDED
        assert loaded.close_reason == "gateway_restart"
        assert loaded.close_code is None
        assert loaded.tm_end is not None and loaded.tm_end >= before
        assert loaded.tm_update == loaded.tm_end
        unchanged = loaded.evolve(
            status=record.status, close_reason=None, tm_end=None, tm_update=record.tm_update
        )
        assert unchanged == record
    assert await store.get_stream(alpha, ended.id) == ended
    assert await store.get_stream(alpha, failed.id) == failed

"""``/v1.0/media_streams``: records read through the call service, filters, pages,
isolation between accounts, 404s, and the record's documented schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callstream.api import OPERATIONS
from callstream.api.openapi import openapi_document
from callstream.store import MediaStreamRecord, StreamDirection, StreamStatus
from tests.api.conftest import Api, error

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
CALL_ID = "1c0e7f4a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_CALL_ID = "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a"
CONFERENCE_ID = "3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d"


def stream(
    account_id: str,
    *,
    seconds: int = 0,
    call_id: str | None = CALL_ID,
    conference_id: str | None = None,
) -> MediaStreamRecord:
    return MediaStreamRecord(
        id=str(uuid.uuid4()),
        account_id=account_id,
        call_id=call_id,
        conference_id=conference_id,
        encapsulation="audiosocket",
        direction=StreamDirection.INBOUND,
        status=StreamStatus.STREAMING,
        tm_create=T0 + timedelta(seconds=seconds),
        tm_update=T0 + timedelta(seconds=seconds),
        tm_start=T0 + timedelta(seconds=seconds, milliseconds=20),
        frames_sent=100,
        bytes_sent=33_100,
        frames_received=7,
        bytes_received=2_261,
        frames_dropped_malformed=1,
    )


async def saved(api: Api, *records: MediaStreamRecord) -> None:
    for record in records:
        await api.store.save_stream(record)


async def test_get_one_stream_as_voipbin_json(api: Api) -> None:
    record = MediaStreamRecord(
        id="0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        account_id=api.account_a.id,
        call_id=CALL_ID,
        encapsulation="rtp",
        format="ulaw",
        direction=StreamDirection.OUTBOUND,
        url="wss://media.example.com/in",
        status=StreamStatus.ENDED,
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=30),
        tm_start=T0 + timedelta(milliseconds=40),
        tm_end=T0 + timedelta(seconds=30),
        frames_sent=1498,
        bytes_sent=257_656,
        frames_received=1500,
        bytes_received=258_000,
        frames_dropped_overflow=2,
        close_code=1000,
        close_reason="call ended",
    )
    await saved(api, record)
    status, body = await api.call("GET", f"/v1.0/media_streams/{record.id}")
    assert status == 200
    assert body == {
        "id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        "account_id": api.account_a.id,
        "call_id": CALL_ID,
        "conference_id": None,
        "encapsulation": "rtp",
        "format": "ulaw",
        "direction": "outbound",
        "url": "wss://media.example.com/in",
        "status": "ended",
        "tm_create": "2025-03-01T12:00:00.250Z",
        "tm_update": "2025-03-01T12:00:30.250Z",
        "tm_start": "2025-03-01T12:00:00.290Z",
        "tm_end": "2025-03-01T12:00:30.250Z",
        "frames_sent": 1498,
        "bytes_sent": 257_656,
        "frames_received": 1500,
        "bytes_received": 258_000,
        "frames_dropped_malformed": 0,
        "frames_dropped_overflow": 2,
        "close_code": 1000,
        "close_reason": "call ended",
        "error": None,
    }
    # read through the call service (which flushes first), never the store directly
    assert ("get_media_stream", record.id) in api.service.requests


async def test_list_newest_first_with_filters(api: Api) -> None:
    alpha = api.account_a.id
    first, second = stream(alpha, seconds=1), stream(alpha, seconds=2)
    other_call = stream(alpha, seconds=3, call_id=OTHER_CALL_ID)
    conference = stream(alpha, seconds=4, call_id=None, conference_id=CONFERENCE_ID)
    await saved(api, first, second, other_call, conference)

    status, page = await api.call("GET", "/v1.0/media_streams")
    assert status == 200
    assert [item["id"] for item in page["result"]] == [
        conference.id,
        other_call.id,
        second.id,
        first.id,
    ]
    assert page["next_page_token"] is None

    _, by_call = await api.call("GET", f"/v1.0/media_streams?call_id={CALL_ID}")
    assert by_call == {"result": [second.to_json(), first.to_json()], "next_page_token": None}
    _, by_conference = await api.call(
        "GET", f"/v1.0/media_streams?conference_id={CONFERENCE_ID.upper()}"
    )
    assert by_conference == {"result": [conference.to_json()], "next_page_token": None}
    assert ("list_media_streams", (alpha, None, CONFERENCE_ID)) in api.service.requests
    _, neither = await api.call(
        "GET", f"/v1.0/media_streams?call_id={CALL_ID}&conference_id={CONFERENCE_ID}"
    )
    assert neither == {"result": [], "next_page_token": None}


async def test_three_pages(api: Api) -> None:
    records = [stream(api.account_a.id, seconds=i) for i in range(5)]
    await saved(api, *records)
    newest_first = [record.id for record in reversed(records)]
    seen: list[str] = []
    path = f"/v1.0/media_streams?call_id={CALL_ID}&page_size=2"
    token: str | None = None
    for expected_length in (2, 2, 1):
        suffix = "" if token is None else f"&page_token={token}"
        status, page = await api.call("GET", path + suffix)
        assert status == 200
        assert len(page["result"]) == expected_length
        seen += [item["id"] for item in page["result"]]
        token = page["next_page_token"]
    assert token is None
    assert seen == newest_first


async def test_another_account_sees_nothing(api: Api) -> None:
    mine = stream(api.account_a.id)
    await saved(api, mine)
    assert await api.call("GET", f"/v1.0/media_streams/{mine.id}", token=api.b) == (
        404,
        error("not_found", f"media stream {mine.id} not found"),
    )
    for query in ("", f"?call_id={CALL_ID}"):
        status, page = await api.call("GET", f"/v1.0/media_streams{query}", token=api.b)
        assert (status, page) == (200, {"result": [], "next_page_token": None})
    _, page = await api.call("GET", "/v1.0/media_streams?page_size=1")
    assert [item["id"] for item in page["result"]] == [mine.id]


async def test_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert await api.call("GET", f"/v1.0/media_streams/{missing}") == (
        404,
        error("not_found", f"media stream {missing} not found"),
    )
    assert await api.call("GET", "/v1.0/media_streams/not-a-uuid") == (
        404,
        error("not_found", "media stream not found: 'not-a-uuid'"),
    )


async def test_bad_queries(api: Api) -> None:
    cases: list[tuple[str, str]] = [
        ("call_id=abc", "call_id: must be a UUID"),
        ("conference_id=", "conference_id: must be a UUID"),
        ("page_size=0", "page_size: must be between 1 and 100"),
        ("page_size=x", "page_size: must be an integer"),
        ("page_token=garbage!", "page_token: not a valid page token"),
    ]
    for query, message in cases:
        assert await api.call("GET", f"/v1.0/media_streams?{query}") == (
            400,
            error("invalid_request", message),
        ), query


async def test_token_required(api: Api) -> None:
    status, body = await api.call("GET", "/v1.0/media_streams", token=None)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_record_matches_its_documented_schema(api: Api) -> None:
    record = stream(api.account_a.id)
    await saved(api, record)
    _, body = await api.call("GET", f"/v1.0/media_streams/{record.id}")
    document = openapi_document(OPERATIONS)
    schema: dict[str, Any] = document["components"]["schemas"]["MediaStream"]
    assert set(body) == set(schema["properties"]) == set(schema["required"])
    properties = schema["properties"]
    assert properties["direction"] == {"type": "string", "enum": ["inbound", "outbound"]}
    assert properties["status"]["enum"] == ["connecting", "streaming", "ended", "failed"]
    assert properties["close_code"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    listing = document["paths"]["/v1.0/media_streams"]["get"]
    assert [p["name"] for p in listing["parameters"]] == [
        "call_id",
        "conference_id",
        "page_size",
        "page_token",
    ]
    assert listing["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    one = document["paths"]["/v1.0/media_streams/{id}"]["get"]
    assert one["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MediaStream"
    }
    assert set(one["responses"]) == {"200", "401", "404", "500", "503"}

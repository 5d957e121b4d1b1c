"""RecordWriter: in order, coalesced, flushed, retried, never raising into the caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from callstream.errors import ConflictError, StoreError
from callstream.store import (
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    MediaStreamRecord,
    RecordWriter,
    Store,
    StreamDirection,
    StreamStatus,
    open_store,
)
from tests.store.conftest import sqlite_url

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def call(call_id: str, version: int) -> CallRecord:
    return CallRecord(
        id=call_id,
        account_id="acct",
        direction="inbound",
        source={"type": "sip", "target": "sip:a@example.com"},
        destination={"type": "sip", "target": "sip:b@example.com"},
        status=CallStatus.PROGRESSING,
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=version),
    )


def conference(conference_id: str, version: int) -> ConferenceRecord:
    return ConferenceRecord(
        id=conference_id,
        account_id="acct",
        name="room",
        detail="",
        status=ConferenceStatus.PROGRESSING,
        call_ids=(),
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=version),
    )


def stream(stream_id: str, version: int) -> MediaStreamRecord:
    return MediaStreamRecord(
        id=stream_id,
        account_id="acct",
        call_id="c1",
        encapsulation="audiosocket",
        direction=StreamDirection.INBOUND,
        status=StreamStatus.STREAMING,
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=version),
        frames_sent=50 * version,
    )


Saved = CallRecord | ConferenceRecord | MediaStreamRecord


def label(record: Saved) -> str:
    return f"{record.id}@{int((record.tm_update - T0).total_seconds())}"


class FakeStore:
    """Records each save; a gate can hold writes; failures can be scheduled per id."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.attempts: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures: dict[str, int] = {}
        self.streams: list[str] = []
        """Labels of the records that reached save_stream (and no other save)."""
        self.refuse = False
        self.batches: list[list[str]] = []
        """Labels of each save_many call."""
        """Fail with a refusal (ConflictError) instead of a database error."""

    async def _save(self, record: Saved) -> None:
        self.attempts.append(label(record))
        await asyncio.sleep(0)  # a real store yields here: let others run mid-write
        await self.gate.wait()
        if self.failures.get(record.id, 0) > 0:
            self.failures[record.id] -= 1
            if self.refuse:
                raise ConflictError(f"call id {record.id} belongs to another account")
            raise StoreError("database write failed: OperationalError: disk I/O error")
        self.written.append(label(record))

    async def save_call(self, record: CallRecord) -> None:
        await self._save(record)

    async def save_conference(self, record: ConferenceRecord) -> None:
        await self._save(record)

    async def save_stream(self, record: MediaStreamRecord) -> None:
        self.streams.append(label(record))
        await self._save(record)

    async def save_many(self, records: Sequence[Saved]) -> None:
        """All or none, like one transaction; a scheduled failure fails the batch
        without using it up (the writer then writes the records one by one)."""
        labels = [label(record) for record in records]
        self.batches.append(labels)
        self.attempts.extend(labels)
        await asyncio.sleep(0)
        await self.gate.wait()
        if any(self.failures.get(record.id, 0) > 0 for record in records):
            raise StoreError("database write failed: OperationalError: disk I/O error")
        self.streams.extend(label(r) for r in records if isinstance(r, MediaStreamRecord))
        self.written.extend(labels)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def writer_for(fake: FakeStore, **options: Any) -> RecordWriter:
    options.setdefault("retry_delays_s", (0, 0, 0))
    return RecordWriter(cast(Store, fake), **options)


async def test_writes_in_submission_order() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    assert writer.save_call(call("a", 1)) is None
    writer.save_conference(conference("room", 1))
    writer.save_call(call("b", 1))
    assert fake.attempts == []  # saving never awaits: nothing was written yet
    await writer.flush()
    assert fake.written == ["a@1", "room@1", "b@1"]
    await writer.close()


async def test_pending_saves_of_one_id_coalesce_into_the_latest() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    fake.gate.clear()
    writer.save_call(call("a", 1))
    await until(lambda: fake.attempts == ["a@1"])  # a@1 is being written, held at the gate
    for version in range(2, 50):
        writer.save_call(call("a", version))
        writer.save_call(call("b", version))
    assert writer.pending_count == 2  # one per id, however many saves
    fake.gate.set()
    await writer.flush()
    # a keeps its place (first pending before b); only the latest of each is written
    assert fake.written == ["a@1", "a@49", "b@49"]
    await writer.close()


async def test_flush_waits_for_what_was_submitted_before_it() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    fake.gate.clear()
    writer.save_call(call("a", 1))
    writer.save_call(call("b", 1))
    flushing = asyncio.create_task(writer.flush())
    await until(lambda: fake.attempts == ["a@1", "b@1"])  # one batch, held at the gate
    assert not flushing.done()
    fake.gate.set()
    await flushing
    assert fake.written == ["a@1", "b@1"]
    assert fake.batches == [["a@1", "b@1"]]
    await writer.close()


async def test_flush_covers_a_superseded_save() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    fake.gate.clear()
    writer.save_call(call("x", 1))
    await until(lambda: fake.attempts == ["x@1"])  # x@1 in flight
    writer.save_call(call("a", 1))
    writer.save_call(call("b", 1))

    async def flush_then_look() -> list[str]:
        await writer.flush()
        return list(fake.written)

    first_flush = asyncio.create_task(flush_then_look())  # must cover a@1 ...
    await asyncio.sleep(0)
    writer.save_call(call("a", 2))  # ... which a@2 replaces in the queue
    fake.gate.set()
    assert await first_flush == ["x@1", "a@2", "b@1"]
    await writer.close()


async def test_flush_with_nothing_pending_returns() -> None:
    writer = writer_for(FakeStore())
    await writer.flush()
    await writer.close()


async def test_failed_write_is_retried_and_logged_with_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStore()
    fake.failures["call-7"] = 2
    writer = writer_for(fake)
    with caplog.at_level(logging.WARNING, logger="callstream.store.writer"):
        writer.save_call(call("call-7", 1))
        await writer.flush()
    assert fake.attempts == ["call-7@1"] * 3
    assert fake.written == ["call-7@1"]
    assert [r.getMessage() for r in caplog.records] == [
        "call call-7: record save failed (database write failed: OperationalError: disk I/O "
        "error); retry 1 in 0.0 s",
        "call call-7: record save failed (database write failed: OperationalError: disk I/O "
        "error); retry 2 in 0.0 s",
    ]
    await writer.close()


async def test_a_database_outage_is_retried_until_it_ends() -> None:
    fake = FakeStore()
    fake.failures["a"] = 7  # more failures than the schedule has delays
    writer = writer_for(fake, retry_delays_s=(0, 0))
    writer.save_call(call("a", 1))
    writer.save_call(call("b", 1))
    await writer.flush()
    # the batch fails, then each record is written on its own with retries
    assert fake.attempts == ["a@1", "b@1"] + ["a@1"] * 8 + ["b@1"]
    assert fake.written == ["a@1", "b@1"]  # nothing lost, order kept
    await writer.close()


async def test_a_refused_write_is_given_up_and_the_writer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStore()
    fake.failures["doomed"] = 100
    fake.refuse = True
    writer = writer_for(fake, retry_delays_s=(0, 0))
    with caplog.at_level(logging.ERROR, logger="callstream.store.writer"):
        writer.save_call(call("doomed", 1))
        writer.save_call(call("fine", 1))
        await writer.flush()
    # one refused record fails the batch; written one by one, only it is given up
    assert fake.attempts == ["doomed@1", "fine@1", "doomed@1", "doomed@1", "doomed@1", "fine@1"]
    assert fake.written == ["fine@1"]
    assert [r.getMessage() for r in caplog.records] == [
        "call doomed: record not saved after 3 attempts: call id doomed belongs to another account"
    ]
    await writer.close()


async def test_a_retry_writes_the_newest_version() -> None:
    fake = FakeStore()
    fake.failures["a"] = 1
    writer = RecordWriter(cast(Store, fake), retry_delays_s=(0.01,))
    writer.save_call(call("a", 1))
    await until(lambda: fake.failures["a"] == 0)  # a@1 failed; the writer waits to retry
    writer.save_call(call("a", 2))
    await writer.flush()
    assert fake.attempts == ["a@1", "a@2"]
    assert fake.written == ["a@2"]
    assert writer.pending_count == 0
    await writer.close()


async def test_close_flushes_then_drops_later_saves(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    writer.save_call(call("a", 1))
    writer.save_conference(conference("room", 1))
    await writer.close()
    assert fake.written == ["a@1", "room@1"]
    with caplog.at_level(logging.WARNING, logger="callstream.store.writer"):
        writer.save_call(call("a", 2))
    assert [r.getMessage() for r in caplog.records] == [
        "call a: record writer closed, state change not saved"
    ]
    await writer.flush()
    assert fake.written == ["a@1", "room@1"]


def test_saves_before_the_loop_runs_are_kept() -> None:
    fake = FakeStore.__new__(FakeStore)
    fake.written, fake.attempts, fake.failures, fake.streams = [], [], {}, []

    async def main() -> None:
        fake.gate = asyncio.Event()
        fake.gate.set()
        await writer.flush()
        await writer.close()

    writer = writer_for(fake)
    writer.save_call(call("early", 1))
    asyncio.run(main())
    assert fake.written == ["early@1"]


async def test_writes_through_to_a_real_store(tmp_path: Path) -> None:
    store = await open_store(sqlite_url(tmp_path / "writer.db"))
    writer = RecordWriter(store)
    for version in range(30):
        for call_id in ("c1", "c2", "c3"):
            writer.save_call(call(call_id, version))
    writer.save_conference(conference("room", 1))
    await writer.flush()
    for call_id in ("c1", "c2", "c3"):
        assert await store.get_call("acct", call_id) == call(call_id, 29)
    assert await store.get_conference("acct", "room") == conference("room", 1)
    await writer.close()
    await store.close()


async def test_streams_are_written_in_order_with_calls_and_coalesce() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    fake.gate.clear()
    writer.save_call(call("c1", 1))
    await until(lambda: fake.attempts == ["c1@1"])
    for version in range(1, 50):  # a counter update per second of audio
        assert writer.save_stream(stream("s1", version)) is None
    writer.save_call(call("c1", 2))
    writer.save_stream(stream("c1", 1))  # same id as the call: a different record
    assert writer.pending_count == 3
    fake.gate.set()
    await writer.flush()
    assert fake.written == ["c1@1", "s1@49", "c1@2", "c1@1"]
    assert fake.streams == ["s1@49", "c1@1"]
    await writer.close()


async def test_failed_stream_write_is_logged_as_a_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStore()
    fake.failures["s9"] = 1
    writer = writer_for(fake)
    with caplog.at_level(logging.WARNING, logger="callstream.store.writer"):
        writer.save_stream(stream("s9", 1))
        await writer.flush()
    assert fake.written == ["s9@1"]
    assert [r.getMessage() for r in caplog.records] == [
        "stream s9: record save failed (database write failed: OperationalError: disk I/O "
        "error); retry 1 in 0.0 s"
    ]
    await writer.close()


async def test_streams_write_through_to_a_real_store(tmp_path: Path) -> None:
    store = await open_store(sqlite_url(tmp_path / "streams.db"))
    writer = RecordWriter(store)
    for version in range(20):
        writer.save_stream(stream("s1", version))
        writer.save_stream(stream("s2", version))
    await writer.flush()
    assert await store.get_stream("acct", "s1") == stream("s1", 19)
    page = await store.list_streams("acct", call_id="c1")
    assert [record.id for record in page.result] == ["s2", "s1"]
    await writer.close()
    await store.close()


async def test_pending_records_go_in_batches_of_at_most_200_in_order() -> None:
    fake = FakeStore()
    writer = writer_for(fake)
    fake.gate.clear()
    writer.save_call(call("first", 1))
    await until(lambda: fake.attempts == ["first@1"])  # alone: written by save_call
    for n in range(250):
        writer.save_call(call(f"c{n}", 1))
    writer.save_stream(stream("s", 1))
    writer.save_call(call("c0", 2))  # coalesces into c0's place
    fake.gate.set()
    await writer.flush()
    expected = ["c0@2"] + [f"c{n}@1" for n in range(1, 250)] + ["s@1"]
    assert fake.batches == [expected[:200], expected[200:]]
    assert fake.written == ["first@1", *expected]
    assert fake.streams == ["s@1"]
    await writer.close()

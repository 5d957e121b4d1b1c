"""``RecordWriter``: call, conference and media stream records written beside the media
path, in order.

The call service reports every state change with ``save_call``, ``save_conference`` and
``save_stream`` from event callbacks, which must not wait on the database (ARCHITECTURE:
a call's media never waits on the database). One background task writes the records in
the order they were first submitted; a record saved again while still pending replaces
the pending one in place, so at most one record per id waits and memory stays bounded
by the live calls and streams.
``flush`` waits until everything submitted before it is durable.

Records are written in batches: all that are pending (up to ``MAX_BATCH_RECORDS``) go to
the database in one transaction (``Store.save_many``), so hundreds of calls changing
state at once cost one commit (one fsync on SQLite) instead of one each. A batch that
fails is written again record by record, with the retries below, so one refused record
does not hold back the others.

A failed write is retried with backoff (each retry takes the newest pending version of
that record) and logged with the record's id; it never raises into the caller. Records
are never lost while the gateway runs: a database failure (``StoreError``) is retried
for as long as it lasts, at the last delay of the schedule, and the records behind it
wait in order (memory stays bounded: one pending record per id). Only a failure that
retrying cannot cure (anything else, e.g. a record the store refuses) is given up after
the schedule, and at ``close`` everything is given up after one more schedule — the
restart then marks the calls that were live ``gateway_restart``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from callstream.errors import StoreError
from callstream.store.base import Store
from callstream.store.records import CallRecord, ConferenceRecord, MediaStreamRecord

logger = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS_S = (0.1, 0.5, 2.0, 5.0)
MAX_BATCH_RECORDS = 200
"""Records written in one transaction at most: bounds how long one commit holds the lock."""

_Kind = Literal["call", "conference", "stream"]
_Key = tuple[_Kind, str]
_Record = CallRecord | ConferenceRecord | MediaStreamRecord


@dataclass(slots=True)
class _Pending:
    first_seq: int  # the submission this entry first answered for: flush waits on it
    record: _Record


class RecordWriter:
    """Writes call, conference and media stream records to ``store`` in the background,
    in order."""

    def __init__(
        self, store: Store, *, retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S
    ) -> None:
        self._store = store
        self._retry_delays_s = tuple(retry_delays_s)
        # insertion order is first-submission order: the order of the writes
        self._pending: dict[_Key, _Pending] = {}
        self._submitted_seq = 0
        self._inflight_seq: int | None = None
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pending_count(self) -> int:
        """Records waiting to be written (not counting one being written)."""
        return len(self._pending)

    def save_call(self, record: CallRecord) -> None:
        """Queue ``record`` for writing; returns at once, never raises."""
        self._submit("call", record)

    def save_conference(self, record: ConferenceRecord) -> None:
        """Queue ``record`` for writing; returns at once, never raises."""
        self._submit("conference", record)

    def save_stream(self, record: MediaStreamRecord) -> None:
        """Queue ``record`` for writing; returns at once, never raises. Safe to call on
        every counter change: a stream's pending record is replaced, not queued again."""
        self._submit("stream", record)

    async def flush(self) -> None:
        """Return when every record submitted before this call is written (or given up
        on and logged: see the module docs). During a database outage this waits until
        the database is back: callers that answer a client bound it with a timeout."""
        target_seq = self._submitted_seq
        self._ensure_worker()
        while self._durable_seq() < target_seq:
            await self._progress.wait()

    async def close(self) -> None:
        """Flush, then stop the background task. Later saves are dropped with a warning."""
        self._closing = True
        self._ensure_worker()
        self._wakeup.set()
        if self._task is not None:
            await self._task

    # -- internals -----------------------------------------------------------------------

    def _submit(self, kind: _Kind, record: _Record) -> None:
        if self._closing:
            logger.warning("%s %s: record writer closed, state change not saved", kind, record.id)
            return
        self._submitted_seq += 1
        key = (kind, record.id)
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = _Pending(self._submitted_seq, record)
        else:
            entry.record = record
        self._wakeup.set()
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first flush (or a save on the loop) starts it
        self._task = loop.create_task(self._run(), name="callstream-record-writer")

    def _durable_seq(self) -> int:
        """Every submission numbered up to this one is written (or given up on)."""
        oldest = self._inflight_seq
        if self._pending:
            first = next(iter(self._pending.values())).first_seq
            oldest = first if oldest is None else min(oldest, first)
        return self._submitted_seq if oldest is None else oldest - 1

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take_batch()
            # first-submission order: the batch's first entry is its oldest submission
            self._inflight_seq = batch[0][1].first_seq
            try:
                if len(batch) == 1:
                    key, entry = batch[0]
                    await self._write(key, entry.record)
                else:
                    await self._write_batch(batch)
            finally:
                self._inflight_seq = None
                progress, self._progress = self._progress, asyncio.Event()
                progress.set()

    def _take_batch(self) -> list[tuple[_Key, _Pending]]:
        pending = self._pending
        batch: list[tuple[_Key, _Pending]] = []
        for key in pending:
            batch.append((key, pending[key]))
            if len(batch) == MAX_BATCH_RECORDS:
                break
        for key, _entry in batch:
            del pending[key]
        return batch

    async def _write_batch(self, batch: list[tuple[_Key, _Pending]]) -> None:
        try:
            await self._store.save_many([entry.record for _key, entry in batch])
            return
        except Exception as exc:  # written again one by one below, with retries
            logger.warning(
                "%d records: batch save failed (%s); writing them one by one", len(batch), exc
            )
        for key, entry in batch:
            # a newer version saved meanwhile is pending again: write that one instead
            newer = self._pending.pop(key, None)
            await self._write(key, entry.record if newer is None else newer.record)

    async def _write(self, key: _Key, record: _Record) -> None:
        kind, record_id = key
        attempt = 0
        while True:
            try:
                if isinstance(record, CallRecord):
                    await self._store.save_call(record)
                elif isinstance(record, ConferenceRecord):
                    await self._store.save_conference(record)
                else:
                    await self._store.save_stream(record)
                return
            except Exception as exc:  # any failure: log it, never raise into the call
                curable = isinstance(exc, StoreError) and not self._closing
                if attempt >= len(self._retry_delays_s) and not curable:
                    logger.error(
                        "%s %s: record not saved after %d attempts: %s",
                        kind,
                        record_id,
                        attempt + 1,
                        exc,
                    )
                    return
                delay_s = self._retry_delays_s[min(attempt, len(self._retry_delays_s) - 1)]
                attempt += 1
                logger.warning(
                    "%s %s: record save failed (%s); retry %d in %.1f s",
                    kind,
                    record_id,
                    exc,
                    attempt,
                    delay_s,
                )
            await asyncio.sleep(delay_s)
            newer = self._pending.pop(key, None)
            if newer is not None:
                record = newer.record

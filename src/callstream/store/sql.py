"""``SqlStore``: the Store on SQLAlchemy 2 async Core, SQLite (aiosqlite) or PostgreSQL (asyncpg).

The schema comes only from the Alembic migrations in ``store/migrations``; the tables
in store/tables.py mirror them for building queries (a test compares the two). ``open_store`` maps
the URL users write, connects, migrates to head and returns the store.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed call record survives a
power cut), foreign keys on, and a busy timeout so the gateway and ``callstream token``
can share one file. Write transactions start with ``BEGIN IMMEDIATE``: they take the
write lock up front and wait for it, instead of failing when a read must turn into a
write (SQLITE_BUSY_SNAPSHOT).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from callstream.errors import ConfigError, ConflictError, StoreError
from callstream.store.base import Page, Store
from callstream.store.records import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    FlowRecord,
    HangupReason,
    MediaStreamRecord,
    RouteRecord,
    StreamDirection,
    StreamStatus,
    TrunkRecord,
    utcnow,
)
from callstream.store.tables import (
    ID_TYPE,
    UtcDateTime,
    accounts,
    calls,
    conferences,
    flows,
    media_streams,
    metadata,
    routes,
    tokens,
    trunks,
)
from callstream.store.tokens import hashes_match, new_token, token_sha256

__all__ = ["SqlStore", "async_url", "metadata", "open_store"]

R = TypeVar("R")

MIGRATIONS_PATH = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 30.0
# Any constant will do: it names the lock that serialises migrations on PostgreSQL.
_PG_MIGRATION_LOCK = 0x63_73_74_72_65_61_6D  # "cstream"
_IMMEDIATE = "callstream_sqlite_immediate"
_WAL_SWITCH_RETRIES = 50
_WAL_SWITCH_RETRY_DELAY_S = 0.02


# -- URLs and engines ----------------------------------------------------------------

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(url: str) -> URL:
    """The SQLAlchemy async URL for a URL as users write it.

    ``sqlite:///callstream.db`` (relative to the working directory),
    ``sqlite:////abs/path.db``, ``postgresql://user@host:5432/db``.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url: cannot parse {url!r}") from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"database_url: unsupported scheme {parsed.drivername!r} "
            "(use sqlite:/// or postgresql://)"
        )
    return parsed.set(drivername=driver)


def _on_sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # The driver's own implicit BEGIN is off so that _on_sqlite_begin decides the mode
    # (and DDL runs inside the migration's transaction).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (user form), configured as the module docstring says."""
    target = async_url(url)
    # hide_parameters: errors must not echo token hashes or trunk passwords into logs
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(
            target,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    return create_async_engine(target, hide_parameters=True, pool_pre_ping=True)


# -- migrations ----------------------------------------------------------------------


def _upgrade_to_head(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def run_migrations(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision; a no-op when it is there already."""
    try:
        connection = await _first_connection(engine)
        try:
            await connection.execution_options(**{_IMMEDIATE: True})
            async with connection.begin():
                await connection.run_sync(_upgrade_to_head)
        finally:
            await connection.close()
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"database migration failed: {_describe(exc)}") from exc


async def _first_connection(engine: AsyncEngine) -> AsyncConnection:
    """A connection, retried while two processes switch a new SQLite file to WAL at once.

    Both hold a shared lock and want an exclusive one, so SQLite answers one of them
    "database is locked" at once, without the busy timeout (it would deadlock). The
    switch takes milliseconds and happens once per file: a short retry is enough.
    """
    attempts = 0
    while True:
        try:
            return await engine.connect().start()
        except OperationalError as exc:
            attempts += 1
            if "database is locked" not in str(exc.orig) or attempts >= _WAL_SWITCH_RETRIES:
                raise
        await asyncio.sleep(_WAL_SWITCH_RETRY_DELAY_S)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    return f"{type(cause).__name__}: {cause}".strip().rstrip(":")


# -- pagination ----------------------------------------------------------------------


def encode_page_token(tm_create: datetime, record_id: str) -> str:
    """The opaque ``next_page_token``: where the next page starts (after this row)."""
    text = f"{tm_create.astimezone(UTC).isoformat()}|{record_id}"
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def decode_page_token(page_token: str) -> tuple[datetime, str]:
    """Inverse of ``encode_page_token``; ValueError("bad page_token") on anything else."""
    try:
        text = base64.urlsafe_b64decode(page_token.encode("ascii")).decode("utf-8")
        stamp, separator, record_id = text.partition("|")
        tm_create = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeError, binascii.Error):
        raise ValueError("bad page_token") from None
    if not separator or not record_id or tm_create.tzinfo is None:
        raise ValueError("bad page_token")
    return tm_create, record_id


# -- rows and records ----------------------------------------------------------------


def _to_row(record: object) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        row[f.name] = value
    return row


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


_CONVERSIONS: dict[type, dict[str, Callable[[Any], Any]]] = {
    Account: {},
    CallRecord: {
        "status": CallStatus,
        "actions": _tuple,
        "hangup_reason": _optional(HangupReason),
    },
    FlowRecord: {"actions": _tuple},
    RouteRecord: {},
    TrunkRecord: {"inbound_addresses": _tuple},
    ConferenceRecord: {"status": ConferenceStatus, "call_ids": _tuple},
    MediaStreamRecord: {"direction": StreamDirection, "status": StreamStatus},
}


def _from_row(record_type: type[R], row: Mapping[Any, Any]) -> R:
    conversions = _CONVERSIONS[record_type]
    values = {
        f.name: conversions[f.name](row[f.name]) if f.name in conversions else row[f.name]
        for f in fields(record_type)  # type: ignore[arg-type]
    }
    return record_type(**values)


# -- the store -----------------------------------------------------------------------


_FINAL_STREAM_STATUSES = [status.value for status in StreamStatus if status.is_final]


class SqlStore(Store):
    """The Store (store/base.py) on an async SQLAlchemy engine; build it with ``open_store``.

    ``save_*`` insert or replace by id within the record's account: a record whose id
    already belongs to another account raises ConflictError and changes nothing.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def _transaction(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as connection:
                if write:
                    await connection.execution_options(**{_IMMEDIATE: True})
                async with connection.begin():
                    yield connection
        except (SQLAlchemyError, OSError) as exc:
            action = "write" if write else "read"
            raise StoreError(f"database {action} failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        await self._engine.dispose()

    # -- accounts and tokens -----------------------------------------------------------

    async def create_token(self, account_name: str) -> tuple[Account, str]:
        token = new_token()
        async with self._transaction(write=True) as connection:
            account = await self._ensure_account(connection, account_name)
            await connection.execute(
                tokens.insert().values(
                    id=str(uuid.uuid4()),
                    account_id=account.id,
                    token_sha256=token_sha256(token),
                    revoked=False,
                    tm_create=utcnow(),
                )
            )
        return account, token

    async def ensure_account(self, name: str) -> Account:
        async with self._transaction(write=True) as connection:
            return await self._ensure_account(connection, name)

    async def _ensure_account(self, connection: AsyncConnection, name: str) -> Account:
        # insert-or-nothing first: two processes creating one name race safely
        await connection.execute(
            self._insert(accounts)
            .values(id=str(uuid.uuid4()), name=name, tm_create=utcnow())
            .on_conflict_do_nothing(index_elements=[accounts.c.name])
        )
        statement = sa.select(accounts).where(accounts.c.name == name)
        row = (await connection.execute(statement)).one()
        return _from_row(Account, row._mapping)

    async def revoke_token(self, token: str) -> bool:
        statement = (
            tokens.update()
            .where(tokens.c.token_sha256 == token_sha256(token), tokens.c.revoked.is_(False))
            .values(revoked=True, tm_revoke=utcnow())
        )
        async with self._transaction(write=True) as connection:
            result = await connection.execute(statement)
        return result.rowcount > 0

    async def account_for_token(self, token: str) -> Account | None:
        statement = (
            sa.select(accounts, tokens.c.token_sha256)
            .join(tokens, tokens.c.account_id == accounts.c.id)
            .where(tokens.c.token_sha256 == token_sha256(token), tokens.c.revoked.is_(False))
        )
        async with self._transaction() as connection:
            row = (await connection.execute(statement)).first()
        if row is None or not hashes_match(row.token_sha256, token):
            return None
        return _from_row(Account, row._mapping)

    async def get_account_by_name(self, name: str) -> Account | None:
        return await self._get_one(Account, accounts, accounts.c.name == name)

    # -- generic record access ---------------------------------------------------------

    async def _save(self, table: sa.Table, record: object) -> None:
        async with self._transaction(write=True) as connection:
            await self._upsert(connection, table, record)

    async def _upsert(self, connection: AsyncConnection, table: sa.Table, record: object) -> None:
        row = _to_row(record)
        statement = self._insert(table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={name: statement.excluded[name] for name in row if name != "id"},
            where=table.c.account_id == statement.excluded.account_id,
        )
        result = await connection.execute(statement)
        if result.rowcount == 0:
            # raised inside the transaction: a batch it belongs to is rolled back whole
            raise ConflictError(f"{table.name} id {row['id']} belongs to another account")

    async def save_many(
        self, records: Sequence[CallRecord | ConferenceRecord | MediaStreamRecord]
    ) -> None:
        """Save the records in order in ONE transaction (one commit, one fsync on
        SQLite); a ConflictError on any of them rolls back all."""
        if not records:
            return
        async with self._transaction(write=True) as connection:
            for record in records:
                if isinstance(record, CallRecord):
                    table = calls
                elif isinstance(record, ConferenceRecord):
                    table = conferences
                else:
                    table = media_streams
                await self._upsert(connection, table, record)

    async def _get_one(
        self, record_type: type[R], table: sa.Table, *conditions: sa.ColumnElement[bool]
    ) -> R | None:
        async with self._transaction() as connection:
            row = (await connection.execute(sa.select(table).where(*conditions))).first()
        return None if row is None else _from_row(record_type, row._mapping)

    async def _get(
        self, record_type: type[R], table: sa.Table, account_id: str, id_: str
    ) -> R | None:
        return await self._get_one(
            record_type, table, table.c.account_id == account_id, table.c.id == id_
        )

    async def _delete(self, table: sa.Table, account_id: str, id_: str) -> bool:
        statement = table.delete().where(table.c.account_id == account_id, table.c.id == id_)
        async with self._transaction(write=True) as connection:
            result = await connection.execute(statement)
        return result.rowcount > 0

    async def _page(
        self,
        record_type: type[R],
        table: sa.Table,
        conditions: list[sa.ColumnElement[bool]],
        page_size: int,
        page_token: str | None,
    ) -> Page[R]:
        if page_size < 1:
            raise ValueError("bad page_size")
        if page_token is not None:
            tm_create, after_id = decode_page_token(page_token)
            conditions.append(
                sa.tuple_(table.c.tm_create, table.c.id)
                < sa.tuple_(sa.literal(tm_create, UtcDateTime()), sa.literal(after_id, ID_TYPE))
            )
        statement = (
            sa.select(table)
            .where(*conditions)
            .order_by(table.c.tm_create.desc(), table.c.id.desc())
            .limit(page_size + 1)  # one more than asked: is there a next page?
        )
        async with self._transaction() as connection:
            rows = (await connection.execute(statement)).all()
        records = [_from_row(record_type, row._mapping) for row in rows[:page_size]]
        next_token = None
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = encode_page_token(last.tm_create, last.id)
        return Page(records, next_token)

    async def _all(self, record_type: type[R], statement: sa.Select[Any]) -> list[R]:
        async with self._transaction() as connection:
            rows = (await connection.execute(statement)).all()
        return [_from_row(record_type, row._mapping) for row in rows]

    # -- calls -------------------------------------------------------------------------

    async def save_call(self, record: CallRecord) -> None:
        await self._save(calls, record)

    async def get_call(self, account_id: str, call_id: str) -> CallRecord | None:
        return await self._get(CallRecord, calls, account_id, call_id)

    async def list_calls(
        self,
        account_id: str,
        *,
        status: CallStatus | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[CallRecord]:
        conditions = [calls.c.account_id == account_id]
        if status is not None:
            conditions.append(calls.c.status == CallStatus(status).value)
        return await self._page(CallRecord, calls, conditions, page_size, page_token)

    async def end_live_calls(self, reason: HangupReason) -> int:
        now = utcnow()
        end_calls = (
            calls.update()
            .where(calls.c.status != CallStatus.HANGUP.value)
            .values(
                status=CallStatus.HANGUP.value,
                hangup_by="local",
                hangup_reason=HangupReason(reason).value,
                tm_hangup=now,
                tm_update=now,
            )
        )
        end_conferences = (
            conferences.update()
            .where(conferences.c.status != ConferenceStatus.TERMINATED.value)
            .values(status=ConferenceStatus.TERMINATED.value, tm_end=now, tm_update=now)
        )
        end_streams = (
            media_streams.update()
            .where(media_streams.c.status.notin_(_FINAL_STREAM_STATUSES))
            .values(
                status=StreamStatus.ENDED.value,
                close_reason=HangupReason(reason).value,
                tm_end=now,
                tm_update=now,
            )
        )
        async with self._transaction(write=True) as connection:
            result = await connection.execute(end_calls)
            await connection.execute(end_conferences)
            await connection.execute(end_streams)
        return result.rowcount

    # -- flows -------------------------------------------------------------------------

    async def save_flow(self, record: FlowRecord) -> None:
        await self._save(flows, record)

    async def get_flow(self, account_id: str, flow_id: str) -> FlowRecord | None:
        return await self._get(FlowRecord, flows, account_id, flow_id)

    async def list_flows(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[FlowRecord]:
        conditions = [flows.c.account_id == account_id]
        return await self._page(FlowRecord, flows, conditions, page_size, page_token)

    async def delete_flow(self, account_id: str, flow_id: str) -> bool:
        return await self._delete(flows, account_id, flow_id)

    # -- inbound routes ----------------------------------------------------------------

    async def save_route(self, record: RouteRecord) -> None:
        await self._save(routes, record)

    async def get_route(self, account_id: str, route_id: str) -> RouteRecord | None:
        return await self._get(RouteRecord, routes, account_id, route_id)

    async def list_routes(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[RouteRecord]:
        conditions = [routes.c.account_id == account_id]
        return await self._page(RouteRecord, routes, conditions, page_size, page_token)

    async def delete_route(self, account_id: str, route_id: str) -> bool:
        return await self._delete(routes, account_id, route_id)

    async def all_routes(self) -> list[RouteRecord]:
        statement = sa.select(routes).order_by(routes.c.priority, routes.c.tm_create, routes.c.id)
        return await self._all(RouteRecord, statement)

    # -- trunks ------------------------------------------------------------------------

    async def save_trunk(self, record: TrunkRecord) -> None:
        await self._save(trunks, record)

    async def get_trunk(self, account_id: str, trunk_id: str) -> TrunkRecord | None:
        return await self._get(TrunkRecord, trunks, account_id, trunk_id)

    async def list_trunks(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[TrunkRecord]:
        conditions = [trunks.c.account_id == account_id]
        return await self._page(TrunkRecord, trunks, conditions, page_size, page_token)

    async def delete_trunk(self, account_id: str, trunk_id: str) -> bool:
        return await self._delete(trunks, account_id, trunk_id)

    async def all_trunks(self) -> list[TrunkRecord]:
        statement = sa.select(trunks).order_by(trunks.c.tm_create, trunks.c.id)
        return await self._all(TrunkRecord, statement)

    # -- conferences -------------------------------------------------------------------

    async def save_conference(self, record: ConferenceRecord) -> None:
        await self._save(conferences, record)

    async def get_conference(self, account_id: str, conference_id: str) -> ConferenceRecord | None:
        return await self._get(ConferenceRecord, conferences, account_id, conference_id)

    async def list_conferences(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[ConferenceRecord]:
        conditions = [conferences.c.account_id == account_id]
        return await self._page(ConferenceRecord, conferences, conditions, page_size, page_token)

    # -- media streams -----------------------------------------------------------------

    async def save_stream(self, record: MediaStreamRecord) -> None:
        await self._save(media_streams, record)

    async def get_stream(self, account_id: str, stream_id: str) -> MediaStreamRecord | None:
        return await self._get(MediaStreamRecord, media_streams, account_id, stream_id)

    async def list_streams(
        self,
        account_id: str,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[MediaStreamRecord]:
        conditions = [media_streams.c.account_id == account_id]
        if call_id is not None:
            conditions.append(media_streams.c.call_id == call_id)
        if conference_id is not None:
            conditions.append(media_streams.c.conference_id == conference_id)
        return await self._page(MediaStreamRecord, media_streams, conditions, page_size, page_token)


async def open_store(url: str) -> SqlStore:
    """Connect to ``url`` (``sqlite:///file.db``, ``postgresql://...``), migrate the
    schema to head, and return the store. ConfigError for a URL of an unknown scheme,
    StoreError when the database cannot be reached or migrated."""
    engine = create_engine(url)
    try:
        await run_migrations(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine)

"""The schema comes from the Alembic migrations: on an empty database, again, concurrently."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from callstream.store import SqlStore, open_store, sql, tables
from callstream.store.sql import MIGRATIONS_PATH, _first_connection, create_engine, metadata

EXPECTED_TABLES = {
    "accounts",
    "alembic_version",
    "calls",
    "conferences",
    "flows",
    "media_streams",
    "routes",
    "tokens",
    "trunks",
}


HEAD_REVISION = "0004"


def _schema_drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _index_names(connection: Connection, table: str) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(connection).get_indexes(table)}


async def test_migrations_build_the_schema_on_an_empty_database(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_table_names) == EXPECTED_TABLES
            version = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
            assert version == HEAD_REVISION
            for table in EXPECTED_TABLES - {"accounts", "alembic_version"}:
                indexes = await connection.run_sync(_index_names, table)
                assert f"ix_{table}_account_id_tm_create" in indexes
            assert await connection.run_sync(_index_names, "media_streams") == {
                "ix_media_streams_account_id_tm_create",
                "ix_media_streams_call_id",
                "ix_media_streams_conference_id",
            }
            # the query tables in sql.py say exactly what the migrations built
            assert await connection.run_sync(_schema_drift) == []
    finally:
        await store.close()


async def test_second_open_is_a_no_op_and_keeps_rows(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    account, token = await store.create_token("acme")
    await store.close()

    store = await open_store(empty_database_url)
    try:
        assert await store.account_for_token(token) == account
        async with store.engine.connect() as connection:
            versions = (await connection.execute(sa.text("SELECT * FROM alembic_version"))).all()
        assert [tuple(row) for row in versions] == [(HEAD_REVISION,)]
    finally:
        await store.close()


async def test_two_stores_opening_one_empty_database_at_once(empty_database_url: str) -> None:
    first, second = await asyncio.gather(
        open_store(empty_database_url), open_store(empty_database_url)
    )
    try:
        account, token = await first.create_token("acme")
        assert await second.account_for_token(token) == account
    finally:
        await first.close()
        await second.close()


async def test_sqlite_connection_settings(tmp_path: Any) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/settings.db")
    try:
        async with store.engine.connect() as connection:
            results = {
                pragma: await connection.scalar(sa.text(f"PRAGMA {pragma}"))
                for pragma in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        await store.close()
    # synchronous 2 is FULL; busy_timeout is in milliseconds
    assert results == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }


async def test_foreign_keys_hold_tokens_to_accounts(tmp_path: Any) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/fk.db")
    try:
        account, token = await store.create_token("acme")
        async with store.engine.begin() as connection:
            await connection.execute(sa.text("DELETE FROM accounts"))
            remaining = await connection.scalar(sa.text("SELECT count(*) FROM tokens"))
        assert remaining == 0  # ON DELETE CASCADE ran: foreign keys are enforced
        assert await store.account_for_token(token) is None
    finally:
        await store.close()


def _upgrade_to(revision: str) -> Callable[[Connection], None]:
    """A ``run_sync`` callable that migrates the connection's database to ``revision``."""

    def upgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_PATH))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


async def test_a_0001_database_upgrades_to_head_keeping_its_rows(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to("0001"))
            assert "media_streams" not in await connection.run_sync(_table_names)
        account, token = await SqlStore(engine).create_token("acme")
    finally:
        await engine.dispose()

    store = await open_store(empty_database_url)
    try:
        assert await store.account_for_token(token) == account
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_table_names) == EXPECTED_TABLES
            version = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
            assert version == HEAD_REVISION
            assert await connection.run_sync(_schema_drift) == []
        assert (await store.list_streams(account.id)).result == []
    finally:
        await store.close()


async def test_many_stores_opening_new_sqlite_files_at_once(tmp_path: Any) -> None:
    # Each round races the switch of a new file to WAL (SQLite answers one side
    # "database is locked" without waiting): every open must still succeed.
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        stores = await asyncio.gather(*(open_store(url) for _ in range(6)))
        try:
            account, token = await stores[0].create_token("acme")
            assert await stores[-1].account_for_token(token) == account
        finally:
            for store in stores:
                await store.close()


class _FlakyEngine:
    """Its connections fail to start with these errors first, then start."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.starts = 0

    def connect(self) -> _FlakyEngine:
        return self

    async def start(self) -> str:
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)
        return "connection"


def _operational(message: str) -> OperationalError:
    return OperationalError("PRAGMA journal_mode=WAL", None, sqlite3.OperationalError(message))


async def test_first_connection_retries_only_a_locked_database() -> None:
    locked = _FlakyEngine(*(_operational("database is locked") for _ in range(3)))
    assert await _first_connection(cast(AsyncEngine, locked)) == "connection"
    assert locked.starts == 4

    other = _FlakyEngine(_operational("disk I/O error"))
    with pytest.raises(OperationalError, match="disk I/O error"):
        await _first_connection(cast(AsyncEngine, other))
    assert other.starts == 1


async def test_first_connection_gives_up_on_a_lasting_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sql, "_WAL_SWITCH_RETRY_DELAY_S", 0)
    stuck = _FlakyEngine(*(_operational("database is locked") for _ in range(100)))
    with pytest.raises(OperationalError, match="database is locked"):
        await _first_connection(cast(AsyncEngine, stuck))
    assert stuck.starts == sql._WAL_SWITCH_RETRIES == 50


TRUNK_ID = "7b0c0bd4-5b8c-4a43-9f55-2d1e2c1f0a01"


async def test_a_trunk_saved_before_0004_upgrades_as_not_registering(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to("0003"))
        store = SqlStore(engine)
        account, _ = await store.create_token("acme")
        now = datetime(2026, 11, 22, tzinfo=UTC)
        old_columns = {  # what a trunk row held at 0003: no register columns
            "id": TRUNK_ID, "account_id": account.id, "name": "old", "proxy": "127.0.0.1:5080",
            "transport": "UDP", "username": "u", "password": None, "inbound_addresses": [],
            "media_stream": None, "tm_create": now, "tm_update": now,
        }  # fmt: skip
        async with engine.begin() as connection:
            await connection.execute(sa.insert(tables.trunks).values(old_columns))
    finally:
        await engine.dispose()

    store = await open_store(empty_database_url)
    try:
        trunk = await store.get_trunk(account.id, TRUNK_ID)
        assert trunk is not None and trunk.name == "old"
        assert (trunk.register, trunk.register_expires) == (False, 600)
        await store.save_trunk(trunk.evolve(register=True, register_expires=120))
        saved = await store.get_trunk(account.id, trunk.id)
        assert saved is not None and (saved.register, saved.register_expires) == (True, 120)
    finally:
        await store.close()

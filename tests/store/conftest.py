"""Fixtures: a store on SQLite (a tmp_path file) and on the PostgreSQL at 127.0.0.1:5432.

The PostgreSQL server is required (CI has it): an unreachable server fails the tests
that need it, it does not skip them. One database ``callstream_test_<random>`` is made
per session on the ``postgres`` database (as user postgres, else root; trust auth) and
dropped at the end; each test starts from empty tables. ``CALLSTREAM_TEST_PG_HOST`` and
``CALLSTREAM_TEST_PG_PORT`` move the server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from callstream.store import SqlStore, open_store

PG_HOST = os.environ.get("CALLSTREAM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CALLSTREAM_TEST_PG_PORT", "5432"))
PG_USERS = ("postgres", "root")
TABLES = (
    "tokens",
    "accounts",
    "calls",
    "flows",
    "routes",
    "trunks",
    "conferences",
    "media_streams",
)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self) -> None:
        self.user = asyncio.run(self._find_user())
        self._created: list[str] = []

    async def _find_user(self) -> str:
        errors = []
        for user in PG_USERS:
            try:
                connection = await asyncpg.connect(
                    host=PG_HOST, port=PG_PORT, user=user, database="postgres"
                )
            except (OSError, asyncpg.PostgresError) as exc:
                errors.append(f"{user}: {exc}")
                continue
            await connection.close()
            return user
        raise RuntimeError(f"PostgreSQL at {PG_HOST}:{PG_PORT} unusable: {'; '.join(errors)}")

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=self.user, database="postgres"
        )
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def create_database(self) -> str:
        """A new empty database; returns its URL as users write it."""
        name = f"callstream_test_{secrets.token_hex(6)}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return f"postgresql://{self.user}@{PG_HOST}:{PG_PORT}/{name}"

    def drop_all(self) -> None:
        for name in self._created:
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """The session's shared database (migrated by the first store opened on it)."""
    return postgres.create_database()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "callstream.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database nothing has touched yet (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "empty.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await open_store(database_url)
    if opened.engine.dialect.name == "postgresql":
        async with opened.engine.begin() as connection:
            await connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    yield opened
    await opened.close()

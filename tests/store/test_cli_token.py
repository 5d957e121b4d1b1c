"""``callstream token create`` / ``revoke`` as subprocesses, on a SQLite file that the
test (standing in for a running gateway) holds open with a read transaction."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from callstream.store import SqlStore, open_store
from tests.store.conftest import sqlite_url

TOKEN = re.compile(r"cs_[A-Za-z0-9_-]{43}\n")


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callstream",
        "token",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, AsyncConnection, str]]:
    """An open store plus a connection inside a read transaction on the same file."""
    url = sqlite_url(tmp_path / "gateway.db")
    store = await open_store(url)
    await store.ensure_account("existing")
    async with store.engine.connect() as reader:
        async with reader.begin():
            await reader.execute(sa.text("SELECT count(*) FROM accounts"))
            yield store, reader, url
    await store.close()


async def test_create_then_revoke_while_the_gateway_holds_the_file(
    gateway: tuple[SqlStore, AsyncConnection, str],
) -> None:
    store, _, url = gateway
    code, stdout, stderr = await cli("create", "--account", "acme", "--database-url", url)
    assert (code, stderr) == (0, "")
    assert TOKEN.fullmatch(stdout)
    token = stdout.strip()
    account = await store.account_for_token(token)
    assert account is not None and account.name == "acme"

    code, stdout, stderr = await cli("revoke", token, "--database-url", url)
    assert (code, stdout, stderr) == (0, "", "")
    assert await store.account_for_token(token) is None

    code, stdout, stderr = await cli("revoke", token, "--database-url", url)
    assert (code, stdout, stderr) == (1, "", "callstream: no such token (or already revoked)\n")


async def test_create_reads_the_url_from_the_config_file(
    gateway: tuple[SqlStore, AsyncConnection, str], tmp_path: Path
) -> None:
    store, _, url = gateway
    config = tmp_path / "callstream.toml"
    config.write_text(f'database_url = "{url}"\n', encoding="utf-8")
    code, stdout, _ = await cli("create", "--account", "existing", "--config", str(config))
    assert code == 0
    account = await store.account_for_token(stdout.strip())
    assert account == await store.get_account_by_name("existing")


async def test_revoke_unknown_token(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "fresh.db")
    code, stdout, stderr = await cli("revoke", "cs_unknown", "--database-url", url)
    assert (code, stdout, stderr) == (1, "", "callstream: no such token (or already revoked)\n")


async def test_bad_database_url_is_reported() -> None:
    code, stdout, stderr = await cli("create", "--account", "a", "--database-url", "mysql://x/y")
    assert (code, stdout) == (2, "")
    assert stderr == (
        "callstream: database_url: unsupported scheme 'mysql' (use sqlite:/// or postgresql://)\n"
    )

"""Alembic's entry point, run by ``command.upgrade`` from store/sql.py.

The caller hands over an open connection, already inside the transaction that holds
the migration lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), in
``config.attributes["connection"]``; so two processes opening one database migrate it
once, one after the other. Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("callstream migrations run only through callstream.store.open_store")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()

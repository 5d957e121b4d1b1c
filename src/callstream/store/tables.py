"""The tables of the store, for building queries; the schema itself comes only from the
Alembic migrations in ``store/migrations`` (tests/store/test_migrations.py compares the
two, so they cannot drift apart).

Record tables carry ``id``, ``account_id``, their columns, ``tm_create``/``tm_update`` and
the listing index (account_id, tm_create, id): VoipBin's newest-first order with the id
as the tie-break.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones: it stores the UTC wall time as text (fixed width, so text
    order is time order); PostgreSQL stores ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: timestamps must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()
ID_TYPE = sa.String(36)


def _record_table(name: str, *columns: sa.Column[Any] | sa.Index) -> sa.Table:
    """A record table: id, account_id, the columns, tm_create/tm_update, listing index."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("account_id", ID_TYPE, nullable=False),
        *columns,
        sa.Column("tm_create", UtcDateTime(), nullable=False),
        sa.Column("tm_update", UtcDateTime(), nullable=False),
        sa.Index(f"ix_{name}_account_id_tm_create", "account_id", "tm_create", "id"),
    )


def _json(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _string(name: str, length: int, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _time(name: str) -> sa.Column[Any]:
    return sa.Column(name, UtcDateTime(), nullable=True)


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", ID_TYPE, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("tm_create", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("name", name="uq_accounts_name"),
)
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", ID_TYPE, primary_key=True),
    sa.Column(
        "account_id",
        ID_TYPE,
        sa.ForeignKey("accounts.id", name="fk_tokens_account_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("revoked", sa.Boolean(), nullable=False),
    sa.Column("tm_create", UtcDateTime(), nullable=False),
    sa.Column("tm_revoke", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("token_sha256", name="uq_tokens_token_sha256"),
    sa.Index("ix_tokens_account_id_tm_create", "account_id", "tm_create", "id"),
)
calls = _record_table(
    "calls",
    _string("direction", 16),
    _json("source"),
    _json("destination"),
    _string("status", 16),
    _json("actions"),
    _string("flow_id", 36, nullable=True),
    _json("current_action", nullable=True),
    _string("hangup_by", 16, nullable=True),
    _string("hangup_reason", 32, nullable=True),
    _text("sip_call_id", nullable=True),
    _string("codec", 32, nullable=True),
    _string("conference_id", 36, nullable=True),
    _time("tm_ringing"),
    _time("tm_progressing"),
    _time("tm_hangup"),
    _text("error", nullable=True),
    sa.Index("ix_calls_status", "status"),
)
flows = _record_table("flows", _text("name"), _text("detail"), _json("actions"))
routes = _record_table(
    "routes",
    _text("match"),
    _string("flow_id", 36),
    sa.Column("priority", sa.Integer(), nullable=False),
)
trunks = _record_table(
    "trunks",
    _text("name"),
    _text("proxy"),
    _string("transport", 8),
    _text("username", nullable=True),
    _text("password", nullable=True),
    _json("inbound_addresses"),
    _json("media_stream", nullable=True),
    sa.Column("register", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("register_expires", sa.Integer(), nullable=False, server_default="600"),
)
conferences = _record_table(
    "conferences",
    _text("name"),
    _text("detail"),
    _string("status", 16),
    _json("call_ids"),
    _time("tm_end"),
    sa.Index("ix_conferences_status", "status"),
)


def _count(name: str) -> sa.Column[Any]:
    # BigInteger: a day of 16 kHz PCM is past 2**31 bytes
    return sa.Column(name, sa.BigInteger(), nullable=False)


media_streams = _record_table(
    "media_streams",
    _string("call_id", 36, nullable=True),
    _string("conference_id", 36, nullable=True),
    _string("encapsulation", 32),
    _string("format", 32, nullable=True),
    _string("direction", 16),
    _text("url", nullable=True),
    _string("status", 16),
    _time("tm_start"),
    _time("tm_end"),
    _count("frames_sent"),
    _count("bytes_sent"),
    _count("frames_received"),
    _count("bytes_received"),
    _count("frames_dropped_malformed"),
    _count("frames_dropped_overflow"),
    sa.Column("close_code", sa.Integer(), nullable=True),
    _text("close_reason", nullable=True),
    _text("error", nullable=True),
    sa.Index("ix_media_streams_call_id", "call_id"),
    sa.Index("ix_media_streams_conference_id", "conference_id"),
)

"""Initial schema: accounts, tokens, calls, flows, routes, trunks, conferences.

Every record row carries ``account_id`` and an index on (account_id, tm_create, id),
the order of VoipBin's newest-first listings with id as the tie-break. Record rows have
no foreign key to accounts: a call must be written even when it came in on a route of
the config file, whatever account it was filed under (records are never lost). Tokens
do: a token without its account means nothing.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(36)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _listing_index(table: str) -> None:
    op.create_index(f"ix_{table}_account_id_tm_create", table, ["account_id", "tm_create", "id"])


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        _timestamp("tm_create"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", ID, primary_key=True),
        sa.Column(
            "account_id",
            ID,
            sa.ForeignKey("accounts.id", name="fk_tokens_account_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _timestamp("tm_create"),
        _timestamp("tm_revoke", nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_tokens_token_sha256"),
    )
    _listing_index("tokens")
    op.create_table(
        "calls",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("destination", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("flow_id", ID, nullable=True),
        sa.Column("current_action", sa.JSON(), nullable=True),
        sa.Column("hangup_by", sa.String(16), nullable=True),
        sa.Column("hangup_reason", sa.String(32), nullable=True),
        sa.Column("sip_call_id", sa.Text(), nullable=True),
        sa.Column("codec", sa.String(32), nullable=True),
        sa.Column("conference_id", ID, nullable=True),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
        _timestamp("tm_ringing", nullable=True),
        _timestamp("tm_progressing", nullable=True),
        _timestamp("tm_hangup", nullable=True),
    )
    _listing_index("calls")
    op.create_index("ix_calls_status", "calls", ["status"])
    op.create_table(
        "flows",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
    )
    _listing_index("flows")
    op.create_table(
        "routes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("match", sa.Text(), nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
    )
    _listing_index("routes")
    op.create_table(
        "trunks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("proxy", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("inbound_addresses", sa.JSON(), nullable=False),
        sa.Column("media_stream", sa.JSON(), nullable=True),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
    )
    _listing_index("trunks")
    op.create_table(
        "conferences",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("call_ids", sa.JSON(), nullable=False),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
        _timestamp("tm_end", nullable=True),
    )
    _listing_index("conferences")
    op.create_index("ix_conferences_status", "conferences", ["status"])


def downgrade() -> None:
    for table in ("conferences", "trunks", "routes", "flows", "calls", "tokens", "accounts"):
        op.drop_table(table)

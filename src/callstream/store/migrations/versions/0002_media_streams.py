"""Media streams (issue 4): one row per WebSocket media stream of a call or conference.

Like the other record rows: no foreign key to accounts, calls or conferences (a stream
record is written even when its call's record is still pending in the writer), and the
listing index (account_id, tm_create, id). ``call_id`` and ``conference_id`` are indexed
for the API's filters. Counters are BIGINT: a day of audio is past 2**31 bytes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(36)
COUNTERS = (
    "frames_sent",
    "bytes_sent",
    "frames_received",
    "bytes_received",
    "frames_dropped_malformed",
    "frames_dropped_overflow",
)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "media_streams",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("call_id", ID, nullable=True),
        sa.Column("conference_id", ID, nullable=True),
        sa.Column("encapsulation", sa.String(32), nullable=False),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _timestamp("tm_start", nullable=True),
        _timestamp("tm_end", nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("close_code", sa.Integer(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("tm_create"),
        _timestamp("tm_update"),
    )
    op.create_index(
        "ix_media_streams_account_id_tm_create",
        "media_streams",
        ["account_id", "tm_create", "id"],
    )
    op.create_index("ix_media_streams_call_id", "media_streams", ["call_id"])
    op.create_index("ix_media_streams_conference_id", "media_streams", ["conference_id"])


def downgrade() -> None:
    op.drop_table("media_streams")

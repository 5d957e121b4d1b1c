"""Trunks may register at their proxy (RFC 3261 §10): ``register`` and the expiry asked.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("trunks") as batch:
        batch.add_column(
            sa.Column("register", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("register_expires", sa.Integer(), nullable=False, server_default="600")
        )


def downgrade() -> None:
    with op.batch_alter_table("trunks") as batch:
        batch.drop_column("register_expires")
        batch.drop_column("register")

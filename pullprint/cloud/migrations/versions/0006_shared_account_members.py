"""Shared accounts name who may charge them (users and groups); none may until an admin says.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``accounts.members`` (null: no member yet)."""
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("members", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("members")

"""Jobs keep the finishing plan the node made for its printer (shown to the user).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``jobs.finishing`` (null until a node reports a plan)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("finishing", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("finishing")

"""Users gain aliases: other names CUPS may know them by (from a directory attribute).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "user_aliases",
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_user_aliases_user", "user_aliases", ["user"])


def downgrade() -> None:
    op.drop_table("user_aliases")

"""Lockout counts in the database, shared by every server process (were in each one's memory).

With several server processes behind one address, each counted wrong PINs on its own: a user was
locked after five wrong tries on one process, i.e. up to five per process in all.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lockout_counts",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.Float, nullable=False),
        sa.Column("last_failure", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lockout_counts")

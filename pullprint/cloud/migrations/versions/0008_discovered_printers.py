"""Printers the nodes found announced with DNS-SD on their networks (for the admin to add).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "discovered_printers",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(1024), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("make_and_model", sa.String(255), nullable=False),
        sa.Column("location", sa.String(255), nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovered_printers")

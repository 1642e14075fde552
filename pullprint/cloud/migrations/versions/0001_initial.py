"""The initial schema: users, printers, jobs, transactions, node events.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the five tables and their indexes."""
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "printers",
        sa.Column("name", sa.String(127), primary_key=True),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("price_micro", sa.BigInteger, nullable=False),
        sa.Column("location", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_printers_node", "printers", ["node"])
    op.create_table(
        "jobs",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("title", sa.String(1024), nullable=False),
        sa.Column("copies", sa.Integer, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("pages", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(127), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("cups_job_id", sa.Integer, nullable=False),
        sa.Column("cups_job_uuid", sa.String(128), nullable=False),
        sa.Column("document_format", sa.String(127), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(1024), nullable=False),
        sa.Column("printer", sa.String(127), nullable=True),
        sa.Column("release_options", sa.JSON, nullable=False),
        sa.Column("price_micro", sa.BigInteger, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("impressions", sa.Integer, nullable=True),
        sa.Column("sheets", sa.Integer, nullable=True),
        sa.Column("document_stored", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "transactions",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "job_uuid", sa.String(36), sa.ForeignKey("jobs.uuid"), nullable=False, unique=True
        ),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pages", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_transactions_user", "transactions", ["user"])
    op.create_table(
        "node_events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job_uuid", sa.String(36), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_node_events_node_id", "node_events", ["node", "id"])


def downgrade() -> None:
    """Drop every table (the data goes with them)."""
    op.drop_table("node_events")
    op.drop_table("transactions")
    op.drop_table("jobs")
    op.drop_table("printers")
    op.drop_table("users")

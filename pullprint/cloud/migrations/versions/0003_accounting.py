"""Accounting: printer price lists, accounts and their journal, transaction details, PaperCut.

Revision ID: 0003
Revises: 0001
Create Date: 2024-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the six accounting tables (see pullprint/cloud/accounting/tables.py)."""
    op.create_table(
        "accounting_printers",
        sa.Column("printer", sa.String(127), primary_key=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("papercut", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "price_entries",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("printer", sa.String(127), nullable=False),
        sa.Column("media", sa.String(32), nullable=False),
        sa.Column("color", sa.String(8), nullable=False),
        sa.Column("sides", sa.String(16), nullable=False),
        sa.Column("price_micro", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("printer", "media", "color", "sides", name="uq_price_entries_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_price_entries_printer", "price_entries", ["printer"])
    op.create_table(
        "accounts",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger, nullable=False),
        sa.Column("enforced", sa.Boolean, nullable=False),
        sa.Column("overdraft_minor", sa.BigInteger, nullable=False),
        sa.Column("quota_pages", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "account_entries",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("account_kind", sa.String(16), nullable=False),
        sa.Column("account_name", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.BigInteger, nullable=True),
        sa.Column("job_uuid", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_account_entries_account", "account_entries", ["account_kind", "account_name", "id"]
    )
    op.create_index("ix_account_entries_transaction_id", "account_entries", ["transaction_id"])
    op.create_table(
        "usage_details",
        sa.Column("transaction_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("job_uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("account_kind", sa.String(16), nullable=False),
        sa.Column("account_name", sa.String(64), nullable=False),
        sa.Column("printer", sa.String(127), nullable=False),
        sa.Column("color", sa.String(8), nullable=False),
        sa.Column("sides", sa.String(16), nullable=False),
        sa.Column("media", sa.String(32), nullable=False),
        sa.Column("copies", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("unit_price_micro", sa.BigInteger, nullable=False),
        sa.Column("price_source", sa.String(16), nullable=False),
        sa.Column("expected_impressions", sa.Integer, nullable=False),
        sa.Column("expected_sheets", sa.Integer, nullable=False),
        sa.Column("printer_impressions", sa.Integer, nullable=True),
        sa.Column("printer_sheets", sa.Integer, nullable=True),
        sa.Column("snmp_delta", sa.Integer, nullable=True),
        sa.Column("counted", sa.Integer, nullable=True),
        sa.Column("count_source", sa.String(16), nullable=False),
        sa.Column("mismatch", sa.Boolean, nullable=False),
        sa.Column("mismatch_reason", sa.String(255), nullable=False),
        sa.Column("estimate_minor", sa.BigInteger, nullable=False),
        sa.Column("held_minor", sa.BigInteger, nullable=False),
        sa.Column("papercut", sa.Boolean, nullable=False),
        sa.Column("papercut_document", sa.String(255), nullable=True),
        sa.Column("external_status", sa.String(64), nullable=False),
        sa.Column("papercut_adjusted", sa.Boolean, nullable=False),
        sa.Column("released_at", sa.Float, nullable=False),
        sa.Column("settled_at", sa.Float, nullable=True),
    )
    op.create_index("ix_usage_details_printer", "usage_details", ["printer"])
    op.create_index("ix_usage_details_papercut_document", "usage_details", ["papercut_document"])
    op.create_table(
        "papercut_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("database_url", sa.String(1024), nullable=False),
        sa.Column("xmlrpc_url", sa.String(1024), nullable=False),
        sa.Column("auth_token", sa.String(255), nullable=False),
        sa.Column("poll_ms", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop the accounting tables (their data goes with them)."""
    for table in (
        "papercut_settings",
        "usage_details",
        "account_entries",
        "accounts",
        "price_entries",
        "accounting_printers",
    ):
        op.drop_table(table)

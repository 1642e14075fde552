"""The accounting tables (SQLAlchemy Core), created by migration ``0003_accounting``.

Kept in their own ``MetaData`` so the core schema (``pullprint.cloud.db``) stays untouched. Money
is integer minor units (``*_minor``), prices integer millionths of a currency unit (``*_micro``),
times seconds since the epoch; no floats hold money anywhere.
"""

from __future__ import annotations

import sqlalchemy as sa

from pullprint.cloud.db import BigId

metadata = sa.MetaData()

# How a printer is charged: by impression or by sheet; whether PaperCut manages it.
accounting_printers = sa.Table(
    "accounting_printers",
    metadata,
    sa.Column("printer", sa.String(127), primary_key=True),
    sa.Column("unit", sa.String(16), nullable=False),  # impression | sheet
    sa.Column("papercut", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# One price per printer, media size ("*" = any), colour mode and sidedness.
price_entries = sa.Table(
    "price_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("printer", sa.String(127), nullable=False, index=True),
    sa.Column("media", sa.String(32), nullable=False),
    sa.Column("color", sa.String(8), nullable=False),  # color | mono
    sa.Column("sides", sa.String(16), nullable=False),  # one-sided | two-sided
    sa.Column("price_micro", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("printer", "media", "color", "sides", name="uq_price_entries_key"),
    sqlite_autoincrement=True,
)

# Personal ("personal", user name) and shared ("shared", account name) accounts.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("enforced", sa.Boolean, nullable=False),  # refuse releases the balance cannot cover
    sa.Column("overdraft_minor", sa.BigInteger, nullable=False),  # how far below zero is allowed
    sa.Column("quota_pages", sa.Integer, nullable=True),  # pages per calendar month (UTC), or None
    sa.Column("updated_at", sa.Float, nullable=False),
    # shared accounts: who may charge them, ["user:alice", "group:physics"] (migration 0006)
    sa.Column("members", sa.JSON, nullable=True),
)

# Every balance change, signed (negative = debit). balance_minor == sum(amount_minor).
account_entries = sa.Table(
    "account_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_kind", sa.String(16), nullable=False),
    sa.Column("account_name", sa.String(64), nullable=False),
    sa.Column("transaction_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("job_uuid", sa.String(36), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # hold | release | charge | adjustment
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("comment", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_account_entries_account", "account_kind", "account_name", "id"),
    sqlite_autoincrement=True,
)

# The accounting detail of one Printer Usage transaction: what was charged, to whom, and why.
usage_details = sa.Table(
    "usage_details",
    metadata,
    sa.Column("transaction_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("job_uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("account_kind", sa.String(16), nullable=False),
    sa.Column("account_name", sa.String(64), nullable=False),
    sa.Column("printer", sa.String(127), nullable=False, index=True),
    sa.Column("color", sa.String(8), nullable=False),
    sa.Column("sides", sa.String(16), nullable=False),
    sa.Column("media", sa.String(32), nullable=False),
    sa.Column("copies", sa.Integer, nullable=False),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("unit_price_micro", sa.BigInteger, nullable=False),
    sa.Column("price_source", sa.String(16), nullable=False),  # price-list | flat | papercut
    sa.Column("expected_impressions", sa.Integer, nullable=False),
    sa.Column("expected_sheets", sa.Integer, nullable=False),
    sa.Column("printer_impressions", sa.Integer, nullable=True),
    sa.Column("printer_sheets", sa.Integer, nullable=True),
    sa.Column("snmp_delta", sa.Integer, nullable=True),
    sa.Column("counted", sa.Integer, nullable=True),  # the count that was charged
    sa.Column("count_source", sa.String(16), nullable=False),  # printer|snmp|papercut|document
    sa.Column("mismatch", sa.Boolean, nullable=False),
    sa.Column("mismatch_reason", sa.String(255), nullable=False),
    sa.Column("estimate_minor", sa.BigInteger, nullable=False),
    sa.Column("held_minor", sa.BigInteger, nullable=False),
    sa.Column("papercut", sa.Boolean, nullable=False),
    sa.Column("papercut_document", sa.String(255), nullable=True, index=True),
    sa.Column("external_status", sa.String(64), nullable=False),
    sa.Column("papercut_adjusted", sa.Boolean, nullable=False),
    sa.Column("released_at", sa.Float, nullable=False),
    sa.Column("settled_at", sa.Float, nullable=True),
)

# How to reach PaperCut (one row, id 1). The auth token is never returned by the API or logged.
papercut_settings = sa.Table(
    "papercut_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("database_url", sa.String(1024), nullable=False),
    sa.Column("xmlrpc_url", sa.String(1024), nullable=False),
    sa.Column("auth_token", sa.String(255), nullable=False),
    sa.Column("poll_ms", sa.Integer, nullable=False),  # how often the print log is read
    sa.Column("updated_at", sa.Float, nullable=False),
)

"""Release and documents: release modes, groups and delegation, per-document keys, used
download nonces, settings; jobs gain storage, released_by and account; transactions gain account.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the new tables and columns (existing rows: cloud storage, personal account)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("storage", sa.String(16), nullable=False, server_default="cloud")
        )
        batch.add_column(
            sa.Column("released_by", sa.String(128), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("account", sa.String(127), nullable=False, server_default=""))
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("account", sa.String(127), nullable=False, server_default=""))
    op.create_table(
        "release_policies",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(127), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("printer", sa.String(127), nullable=True),
        sa.Column("direct_seconds", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "user_groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_name",
            sa.String(64),
            sa.ForeignKey("user_groups.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user", sa.String(64), primary_key=True),
    )
    op.create_index("ix_group_members_user", "group_members", ["user"])
    op.create_table(
        "delegations",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("delegate", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(127), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "document_keys",
        sa.Column("job_uuid", sa.String(36), primary_key=True),
        sa.Column("file_id", sa.String(32), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "download_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("job_uuid", sa.String(36), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
    )
    op.create_index("ix_download_nonces_expires_at", "download_nonces", ["expires_at"])
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
    )


def downgrade() -> None:
    """Drop what 0002 added (document keys go with it: stored documents become unreadable)."""
    op.drop_table("settings")
    op.drop_table("download_nonces")
    op.drop_table("document_keys")
    op.drop_table("delegations")
    op.drop_table("group_members")
    op.drop_table("user_groups")
    op.drop_table("release_policies")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("account")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("account")
        batch.drop_column("released_by")
        batch.drop_column("storage")

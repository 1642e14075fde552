"""Identity: users gain a password, a role, a display name, an e-mail, a source and a disabled
flag (their PIN becomes optional); cards, sessions and terminals get tables. Merges the heads
0002 and 0003.

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: tuple[str, ...] = ("0002", "0003")
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the columns (existing users: local, role user, enabled) and the three tables."""
    with op.batch_alter_table("users") as batch:
        batch.alter_column("pin_hash", existing_type=sa.String(255), nullable=True)
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="user"))
        batch.add_column(
            sa.Column("display_name", sa.String(255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("email", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="local"))
        batch.add_column(
            sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "user_cards",
        sa.Column("card_key", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_user_cards_user", "user_cards", ["user"])
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("terminal", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_user_sessions_user", "user_sessions", ["user"])
    op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])
    op.create_table(
        "terminals",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("printer", sa.String(127), nullable=False),
        sa.Column("methods", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop the tables and columns (users without a PIN get an unusable one)."""
    op.drop_table("terminals")
    op.drop_table("user_sessions")
    op.drop_table("user_cards")
    op.execute("UPDATE users SET pin_hash = '!' WHERE pin_hash IS NULL")
    with op.batch_alter_table("users") as batch:
        for column in ("disabled", "source", "email", "display_name", "role", "password_hash"):
            batch.drop_column(column)
        batch.alter_column("pin_hash", existing_type=sa.String(255), nullable=False)

"""A user's jobs in the order of a listing's pages: (owner, created_at DESC, uuid), and the same
within one state, in place of (owner, state, created_at).

``GET /jobs?user=U`` comes in pages (``limit``, ``after``), newest first, jobs of the same instant
in uuid order. Through ``ix_jobs_owner_state_created`` a page of every state read and sorted all
of the user's jobs: 76 ms for the first 500 of 10,000 jobs on SQLite. With these indexes a page
reads only its own rows, already in order (5 ms); the one of (owner, state) keeps a user's held
jobs (a terminal's sign-in, release-all) to the rows asked for, as in 0009, and SQLite picks it
over the other because it too gives the page's order.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    newest = sa.text("created_at DESC")
    op.create_index("ix_jobs_owner_newest", "jobs", ["owner", newest, "uuid"])
    op.create_index("ix_jobs_owner_state_newest", "jobs", ["owner", "state", newest, "uuid"])
    op.drop_index("ix_jobs_owner_state_created", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_owner_state_created", "jobs", ["owner", "state", "created_at"])
    op.drop_index("ix_jobs_owner_state_newest", table_name="jobs")
    op.drop_index("ix_jobs_owner_newest", table_name="jobs")

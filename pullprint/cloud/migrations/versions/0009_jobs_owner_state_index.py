"""A user's queue in one index: jobs by (owner, state, created_at), in place of jobs by owner.

Listing a user's held jobs (``GET /jobs?user=U&state=held``, a terminal's sign-in, release-all)
read every job of the user through ``ix_jobs_owner`` and dropped those in other states; with
1,000,000 jobs that is 100 rows read for 10 kept. The new index finds only the rows asked for,
and serves the lookups by owner alone (its first column), so ``ix_jobs_owner`` goes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_state_created", "jobs", ["owner", "state", "created_at"])
    op.drop_index("ix_jobs_owner", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.drop_index("ix_jobs_owner_state_created", table_name="jobs")

"""Migration 0002 on a database that already holds 0001 data, on SQLite and PostgreSQL: old jobs
keep working (cloud storage, personal account) and every head is applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from pullprint.cloud import db
from tests.test_cloud_api import DATABASES, database_url


@pytest.mark.parametrize("kind", DATABASES)
def test_upgrade_from_0001_keeps_jobs(tmp_path: Path, kind: str) -> None:
    engine = db.make_engine(database_url(kind, tmp_path))
    try:
        command.upgrade(db.alembic_config(engine), "0001")
        job = {
            "uuid": "123e4567-e89b-12d3-a456-426614174000",
            "owner": "alice",
            "title": "old",
            "copies": 1,
            "options": {},
            "pages": 1,
            "size": 1,
            "sha256": "0" * 64,
            "queue": "PullPrint",
            "origin": "node1",
            "cups_job_id": 1,
            "cups_job_uuid": "",
            "document_format": "application/pdf",
            "state": "held",
            "state_reason": "",
            "printer": None,
            "release_options": {},
            "price_micro": None,
            "claimed_by": None,
            "impressions": None,
            "sheets": None,
            "document_stored": False,
            "created_at": 1.0,
            "updated_at": 1.0,
        }
        json_columns = ("options", "release_options")
        old_jobs = sa.table(
            "jobs", *(sa.column(k, sa.JSON if k in json_columns else None) for k in job)
        )
        with engine.begin() as conn:
            conn.execute(sa.insert(old_jobs).values(**job))
        db.upgrade(engine)
        db.upgrade(engine)  # idempotent
        with engine.connect() as conn:
            row = conn.execute(sa.select(db.jobs)).mappings().one()
            tables = set(sa.inspect(conn).get_table_names())
        assert (row["storage"], row["account"], row["released_by"]) == ("cloud", "", "")
        assert {"document_keys", "download_nonces", "release_policies", "delegations"} <= tables
    finally:
        engine.dispose()

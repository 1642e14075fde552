"""Migration 0002 on a database that already holds 0001 data, on SQLite and PostgreSQL: old jobs
keep working (cloud storage, personal account) and every head is applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.sql.elements import UnaryExpression

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


@pytest.mark.parametrize("kind", DATABASES)
def test_migrations_make_the_indexes_the_code_declares(tmp_path: Path, kind: str) -> None:
    """Every index of ``db.metadata`` (what the queries are written for) is what the migrations
    made, column for column and in its order, on both databases."""
    engine = db.make_engine(database_url(kind, tmp_path))
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in db.metadata.sorted_tables:
                made = {
                    str(ix["name"]): _reflected(conn, ix)
                    for ix in inspector.get_indexes(table.name)
                }
                for index in table.indexes:
                    assert index.name in made, (table.name, index.name, sorted(made))
                    assert made[index.name] == [_column(e) for e in index.expressions], made
    finally:
        engine.dispose()


def _column(expression: object) -> tuple[str, bool]:
    """(column name, descending) of one expression of a declared index."""
    if isinstance(expression, UnaryExpression):  # column.desc()
        return str(expression.element.name), True
    return str(getattr(expression, "name", expression)), False


def _reflected(conn: sa.Connection, index: Any) -> list[tuple[str, bool]]:
    """(column name, descending) of each column of an index in the database. SQLAlchemy reflects
    the order on PostgreSQL only; SQLite says it in ``PRAGMA index_xinfo``."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f'PRAGMA index_xinfo("{index["name"]}")').all()
        return [(str(row[2]), bool(row[3])) for row in rows if row[5]]  # key columns only
    sorting = index.get("column_sorting", {})
    return [(str(c), "desc" in sorting.get(c, ())) for c in index["column_names"]]

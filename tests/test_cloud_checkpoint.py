"""The cloud server's SQLite engine leaves WAL checkpoints to ``db.checkpoint`` (run in the
background by the server) instead of making the commit that fills the WAL do one."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from pullprint.cloud import db

ROWS = 400  # of 20 KiB each: about 2,000 pages of 4 KiB, past SQLite's 1,000-page autocheckpoint


def _write(engine: sa.Engine) -> None:
    """Many small commits, as a busy server makes them."""
    table = sa.Table("blobs", sa.MetaData(), sa.Column("data", sa.LargeBinary))
    with engine.begin() as conn:
        table.create(conn)
    for _ in range(ROWS):
        with engine.begin() as conn:
            conn.execute(sa.insert(table).values(data=b"x" * 20_000))


@pytest.mark.parametrize("background", [True, False])
def test_commits_checkpoint_only_without_background_checkpoints(
    tmp_path: Path, background: bool
) -> None:
    path = tmp_path / "cloud.db"
    engine = db.make_engine(f"sqlite:///{path}", background_checkpoints=background)
    try:
        _write(engine)
        written = ROWS * 20_000
        in_file = path.stat().st_size
        if background:
            assert in_file < written / 10  # the rows are still only in the WAL
            assert db.checkpoint(engine) > 1000  # frames: no commit checkpointed
            assert path.stat().st_size > written  # now they are in the database file
        else:
            assert in_file > written / 2  # SQLite's own checkpoints copied them already
        with engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar_one()
        assert count == ROWS
    finally:
        engine.dispose()

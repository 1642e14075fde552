"""Alembic environment: runs the migrations online, on the engine that ``db.upgrade`` passes in.

Without an engine in ``config.attributes`` (the ``alembic`` command line), one is made from
``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from pullprint.cloud.db import make_engine, metadata


def run_migrations_online() -> None:
    """Apply the pending revisions in one transaction per run."""
    config = context.config
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = make_engine(str(config.get_main_option("sqlalchemy.url")))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("pullprint migrations run online only (pullprint.cloud.db.upgrade)")
run_migrations_online()

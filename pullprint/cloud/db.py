"""The cloud's database: SQLAlchemy Core tables, the engine, and applying the migrations.

The schema is defined here once; ``migrations/versions`` creates it with the same names. Only
portable types are used (no SQLite-only SQL): money is integer minor units (``amount_minor``),
printer prices are integer millionths of a currency unit (``price_micro``), timestamps are
seconds since the epoch as floats, options and event payloads are JSON.
"""

from __future__ import annotations

import logging
import select
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# An id that is a BIGINT on PostgreSQL and an INTEGER PRIMARY KEY (rowid alias) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("pin_hash", sa.String(255), nullable=True),  # None: no PIN login
    sa.Column("created_at", sa.Float, nullable=False),
    # Identity (migration 0004).
    sa.Column("password_hash", sa.String(255), nullable=True),  # None: no password login
    sa.Column("role", sa.String(16), nullable=False, server_default="user"),
    sa.Column("display_name", sa.String(255), nullable=False, server_default=""),
    sa.Column("email", sa.String(255), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False, server_default="local"),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

user_cards = sa.Table(
    "user_cards",
    metadata,
    sa.Column("card_key", sa.String(40), primary_key=True),  # identity.cards.card_key
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),  # local, self, ldap
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

discovered_printers = sa.Table(
    "discovered_printers",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("uri", sa.String(1024), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("make_and_model", sa.String(255), nullable=False),
    sa.Column("location", sa.String(255), nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
)

user_aliases = sa.Table(
    "user_aliases",
    metadata,
    sa.Column("alias", sa.String(64), primary_key=True),  # lower case: a CUPS user name
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),  # ldap
)

user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the bearer token
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # password, sso, terminal
    sa.Column("terminal", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # sha256 of the terminal's secret
    sa.Column("printer", sa.String(127), nullable=False),
    sa.Column("methods", sa.JSON, nullable=False),  # of "card", "pin", "username"
    sa.Column("created_at", sa.Float, nullable=False),
)

printers = sa.Table(
    "printers",
    metadata,
    sa.Column("name", sa.String(127), primary_key=True),
    sa.Column("uri", sa.String(1024), nullable=False),
    sa.Column("node", sa.String(64), nullable=False, index=True),
    sa.Column("price_micro", sa.BigInteger, nullable=False),
    sa.Column("location", sa.String(255), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("title", sa.String(1024), nullable=False),
    sa.Column("copies", sa.Integer, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("pages", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("queue", sa.String(127), nullable=False),
    sa.Column("origin", sa.String(64), nullable=False),
    sa.Column("cups_job_id", sa.Integer, nullable=False),
    sa.Column("cups_job_uuid", sa.String(128), nullable=False),
    sa.Column("document_format", sa.String(127), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("state_reason", sa.String(1024), nullable=False),
    sa.Column("printer", sa.String(127), nullable=True),
    sa.Column("release_options", sa.JSON, nullable=False),
    sa.Column("finishing", sa.JSON, nullable=True),  # the node's plan: [PlanStep.to_json()]
    sa.Column("price_micro", sa.BigInteger, nullable=True),  # the price when released
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("impressions", sa.Integer, nullable=True),
    sa.Column("sheets", sa.Integer, nullable=True),
    sa.Column("document_stored", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # 0002: release and documents
    sa.Column("storage", sa.String(16), nullable=False, server_default="cloud"),
    sa.Column("released_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("account", sa.String(127), nullable=False, server_default=""),
)
# 0010: a user's jobs, of every state and of one, in the order of a listing's pages (newest
# first, then by uuid); they replace 0009's (owner, state, created_at)
sa.Index("ix_jobs_owner_newest", jobs.c.owner, jobs.c.created_at.desc(), jobs.c.uuid)
sa.Index(
    "ix_jobs_owner_state_newest", jobs.c.owner, jobs.c.state, jobs.c.created_at.desc(), jobs.c.uuid
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_uuid", sa.String(36), sa.ForeignKey("jobs.uuid"), nullable=False, unique=True),
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pages", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # 0002: the shared account charged (empty: the owner's personal account)
    sa.Column("account", sa.String(127), nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

node_events = sa.Table(
    "node_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_uuid", sa.String(36), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_node_events_node_id", "node", "id"),
    sqlite_autoincrement=True,  # ids never reused: they are the nodes' cursors
)


# -- 0002: release modes, groups and delegation, document keys, download nonces, settings --------

release_policies = sa.Table(
    "release_policies",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # "queue" or "printer"
    sa.Column("name", sa.String(127), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("printer", sa.String(127), nullable=True),  # automatic: the fixed printer
    sa.Column("direct_seconds", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

user_groups = sa.Table(
    "user_groups",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column(
        "group_name",
        sa.String(64),
        sa.ForeignKey("user_groups.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("user", sa.String(64), primary_key=True, index=True),
)

delegations = sa.Table(
    "delegations",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # "user" or "group"
    sa.Column("delegate", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(127), nullable=False),  # empty: the owner's personal account
    sa.Column("created_at", sa.Float, nullable=False),
)

document_keys = sa.Table(
    "document_keys",
    metadata,
    sa.Column("job_uuid", sa.String(36), primary_key=True),
    sa.Column("file_id", sa.String(32), nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=False),  # AES-256-GCM; deleting it shreds the file
    sa.Column("created_at", sa.Float, nullable=False),
)

download_nonces = sa.Table(
    "download_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("job_uuid", sa.String(36), nullable=False),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("used_at", sa.Float, nullable=False),
)

lockout_counts = sa.Table(
    "lockout_counts",  # wrong PINs, cards and passwords in a row (cloud.lockout)
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),  # "user:NAME" or "terminal:NAME"
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.Float, nullable=False),  # 0: not locked
    sa.Column("last_failure", sa.Float, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(1024), nullable=False),
)


def make_engine(database_url: str, *, background_checkpoints: bool = False) -> Engine:
    """Create the engine for ``database_url``; for a SQLite file, create its folder first.

    SQLite connections get a busy timeout, WAL journaling and memory-mapped reads (connection
    settings only; the SQL sent is portable). With ``background_checkpoints`` its connections
    never checkpoint the WAL themselves (SQLite's default has the commit that fills 1,000 pages
    copy them into the database file and sync it, so one request in about a hundred waited for
    that): the owner calls ``checkpoint`` every second or so instead (the cloud server, from a
    worker thread). Commits are synced to the WAL as before, so nothing committed is less
    durable.

    JSON columns are read with orjson (the standard library's decoder was a fifth of listing
    100 jobs).
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, json_deserializer=orjson.loads)
        event.listen(engine, "connect", _sqlite_on_connect)
        if background_checkpoints:
            event.listen(engine, "connect", _sqlite_no_autocheckpoint)
        return engine
    engine = sa.create_engine(url, json_deserializer=orjson.loads)
    event.listen(engine, "checkout", _closed_by_server)
    return engine


def reader(engine: Engine) -> Engine:
    """``engine`` for reads outside a transaction. On PostgreSQL that saves the BEGIN and
    ROLLBACK round trips and changes nothing a read sees: under read committed each statement
    takes its own snapshot anyway. SQLite's engine as it is: Python's sqlite3 never begins a
    transaction for a SELECT, and SQLAlchemy's autocommit there costs a ``PRAGMA`` at every
    return of a connection to the pool."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled PostgreSQL connection the server has closed (a restart, an admin's
    ``pg_terminate_backend``, an idle timeout); the pool then opens a new one. This is
    ``pool_pre_ping`` without its round trip (2 of the 20 a PIN release made): the server sends
    an idle connection nothing but the notice that ends it, so a socket with something to read,
    or none, is one to drop. (The LISTEN connection of ``notify.PgNotifier`` is not pooled.)"""
    import psycopg  # the driver of this connection: imported already

    if dbapi_connection.broken or dbapi_connection.closed:
        raise sa.exc.DisconnectionError("the pooled connection is closed")
    try:
        fd = dbapi_connection.pgconn.socket
    except psycopg.OperationalError as exc:  # no socket any more
        raise sa.exc.DisconnectionError(f"the pooled connection has no socket: {exc}") from exc
    poller = select.poll()  # not select.select: a busy server's descriptors pass 1,023
    poller.register(fd, select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # data, end of file, an error or a hang-up
        raise sa.exc.DisconnectionError("the server closed the pooled connection")


# Past this many frames (16 MiB of 4 KiB pages) a checkpoint also restarts the WAL: under
# writes without a pause, a passive checkpoint never catches up and the WAL would only grow.
WAL_RESTART_FRAMES = 4000


def checkpoint(engine: Engine) -> int:
    """Copy the SQLite WAL's committed pages into the database file (``PRAGMA
    wal_checkpoint(PASSIVE)``: it waits for no reader or writer); if the WAL has grown past
    ``WAL_RESTART_FRAMES``, a ``RESTART`` checkpoint (it waits for the writer of the moment,
    then has the next one write the WAL from its start). Nothing on other databases.
    Idempotent; changes no data. Returns the frames the WAL held."""
    if engine.dialect.name != "sqlite":
        return 0
    with engine.connect() as conn:
        _busy, frames, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        if frames > WAL_RESTART_FRAMES:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")
    return int(frames)


def _sqlite_no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


SQLITE_MMAP_BYTES = 1 << 30  # address space only: pages are mapped as they are read


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Read pages through a memory map instead of a read() call each (writes are unchanged):
        # 100 jobs of one user lie on about 300 pages apart from each other; listing them took
        # 6.2 ms of SQL with reads, 4.0 ms mapped (1,000,000 jobs, bench.cloud's database).
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    finally:
        cursor.close()


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic configuration for the packaged migrations, bound to ``engine`` (no .ini file)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every migration up to ``head`` on ``engine``'s database (idempotent)."""
    log.info("applying database migrations on %s", engine.url.render_as_string())
    command.upgrade(alembic_config(engine), "heads")

"""The node event stream: what each node learns through the long-poll, ordered by ``id``.

Events are appended in the same database transaction as the state change they announce; the
caller wakes the node's long-polls (``Notifier.notify``) after the commit.

Cursor order on PostgreSQL: ids come from a sequence when the row is inserted, but transactions
commit in any order, so a reader could see id 7 before id 6 commits and move its cursor past 6
for good. To prevent it, a transaction takes a per-node advisory lock
(``pg_advisory_xact_lock``, held until it ends) before it adds the node's event: a node's events
are then inserted and committed one transaction after another, so every id below a visible one
is committed (or rolled back). Locks on several nodes are taken in name order (no deadlock).
SQLite has one writer at a time and needs none of this.

On PostgreSQL one statement takes the lock, inserts the event and (given a ``notify`` channel)
sends the ``NOTIFY`` that wakes the other server processes at the commit: one round trip where
three were (a release makes one event). The lock comes first by the statement's data flow: the
row inserted is read from the CTE that took it, and its id (``nextval``) is drawn for that row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pullprint.cloud.db import node_events
from pullprint.model import EventKind, JobState, NodeEvent, Printer

MAX_BATCH = 100


def append_released(
    conn: Connection,
    job_uuid: str,
    printer: Printer,
    options: dict[str, str],
    notify: str | None = None,
) -> None:
    """Add a ``released`` event for the printer's node (in ``conn``'s transaction); with
    ``notify`` (PostgreSQL: ``Notifier.commit_channel``), NOTIFY that channel with the node's
    name at the commit, in the same statement."""
    payload = {"printer": printer.to_json(), "options": dict(options)}
    _append(conn, printer.node, EventKind.RELEASED, job_uuid, payload, notify)


def append_job_state(
    conn: Connection,
    kind: EventKind,
    node: str,
    job_uuid: str,
    cups_job_id: int,
    cups_job_uuid: str,
    state: JobState,
) -> None:
    """Add a ``canceled`` or ``finished`` event for the job's origin node."""
    payload = {"cups_job_id": cups_job_id, "cups_job_uuid": cups_job_uuid, "state": state.value}
    _append(conn, node, kind, job_uuid, payload)


def lock_nodes(conn: Connection, nodes: Iterable[str]) -> None:
    """On PostgreSQL, take the event locks of ``nodes`` (in name order) until the transaction
    ends; nothing elsewhere. Re-taking a held lock is harmless."""
    if conn.dialect.name != "postgresql":
        return
    for node in sorted(set(nodes)):
        conn.execute(
            _LOCK_SQL,
            {"space": _LOCK_SPACE, "node": node},
        )


_LOCK_SPACE = 0x7070  # "pp": the advisory lock namespace of node event streams
_LOCK_SQL = sa.text(
    "SELECT pg_advisory_xact_lock(CAST(:space AS integer), hashtext(CAST(:node AS text)))"
)


def _append(
    conn: Connection,
    node: str,
    kind: EventKind,
    job_uuid: str,
    payload: dict[str, Any],
    notify: str | None = None,
) -> None:
    row: dict[str, Any] = {"node": node, "kind": kind.value, "job_uuid": job_uuid}
    row.update(payload=payload, created_at=time.time())
    if conn.dialect.name != "postgresql":
        conn.execute(_INSERT, row)
    elif notify is None:
        conn.execute(_APPEND_PG, {**row, "space": _LOCK_SPACE})
    else:
        conn.execute(_APPEND_PG_NOTIFY, {**row, "space": _LOCK_SPACE, "channel": notify})


_INSERT = sa.insert(node_events)  # built once: every release adds an event
# PostgreSQL: the node's lock, then the event inserted from the row that took it (the module's
# docstring), then (_NOTIFY) the NOTIFY of what was inserted; one statement.
_LOCKED_INSERT = """WITH locked AS (
  SELECT pg_advisory_xact_lock(CAST(:space AS integer), hashtext(CAST(:node AS text))) IS NULL
),
added AS (
  INSERT INTO node_events (node, kind, job_uuid, payload, created_at)
  SELECT CAST(:node AS varchar), CAST(:kind AS varchar), CAST(:job_uuid AS varchar),
         CAST(:payload AS json), CAST(:created_at AS double precision)
  FROM locked
  RETURNING id
)
"""
_PAYLOAD = sa.bindparam("payload", type_=node_events.c.payload.type)  # encoded as the column
# (S608: two constant strings joined; every value is a bound parameter)
_APPEND_PG = sa.text(_LOCKED_INSERT + "SELECT id FROM added").bindparams(_PAYLOAD)  # noqa: S608
_APPEND_PG_NOTIFY = sa.text(
    _LOCKED_INSERT + "SELECT pg_notify(CAST(:channel AS text), CAST(:node AS text)) FROM added"  # noqa: S608
).bindparams(_PAYLOAD)


def after(engine: Engine, node: str, cursor: int, limit: int = MAX_BATCH) -> list[NodeEvent]:
    """The node's events with id > ``cursor``, oldest first, at most ``limit``. Changes nothing."""
    query = (
        sa.select(node_events)
        .where(node_events.c.node == node, node_events.c.id > cursor)
        .order_by(node_events.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [from_row(row) for row in rows]


def from_row(row: Mapping[Any, Any]) -> NodeEvent:
    """The model of a ``node_events`` row."""
    data: dict[str, Any] = dict(row["payload"] or {})
    data.update(id=row["id"], kind=row["kind"], job_uuid=row["job_uuid"])
    return NodeEvent.from_json(data)

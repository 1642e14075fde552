"""The node's durable journal: one row per job it delivers, one step at a time (SQLite, WAL).

Steps, in order: ``claimed`` (written before the claim is sent), ``downloaded`` (the document and
its finishing plan are on disk), ``sending`` (written before the first byte goes to the printer),
``sent`` (the printer has the whole document; IPP: its job-id), ``monitoring`` (following the
printer's job to its end), ``done`` (the end state, written before it is reported; ``reported``
turns true once the cloud has it). Every step is committed (``synchronous=FULL``) before the node
acts on it, so after a crash :meth:`Journal.unfinished` says exactly where each job stood.

The test-only hook :func:`fault_point`: with ``PULLPRINT_FAULT=<step>`` in its environment the
node kills itself with SIGKILL right after journaling that step (the fault tests use it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STEPS = ("claimed", "downloaded", "sending", "sent", "monitoring", "done")
FAULT_ENV = "PULLPRINT_FAULT"
JOURNAL_NAME = "node-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    uuid TEXT PRIMARY KEY,
    printer TEXT NOT NULL,
    uri TEXT NOT NULL,
    protocol TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    step TEXT NOT NULL,
    printer_job_id INTEGER,
    counter_before INTEGER,
    plan TEXT NOT NULL DEFAULT '',
    impressions INTEGER,
    sheets INTEGER,
    estimated INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    reported INTEGER NOT NULL DEFAULT 0,
    first_try REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS printers (
    name TEXT PRIMARY KEY,
    protocol TEXT NOT NULL,
    last_job TEXT NOT NULL,
    last_state TEXT NOT NULL,
    last_reason TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


def fault_point(step: str) -> None:
    """Test hook: SIGKILL this process if ``$PULLPRINT_FAULT`` names ``step``. Never in
    production configurations (the variable is unset there)."""
    if os.environ.get(FAULT_ENV) == step:
        log.warning("fault injection: killing the node at step %s", step)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class JournalEntry:
    """One job as the journal last saw it."""

    uuid: str
    printer: str
    uri: str
    protocol: str
    options: dict[str, str]
    step: str
    printer_job_id: int | None
    counter_before: int | None
    plan: str
    impressions: int | None
    sheets: int | None
    estimated: bool
    state: str
    reason: str
    reported: bool
    first_try: float | None
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.step == "done" and self.reported

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["plan"] = json.loads(self.plan) if self.plan else None
        return data


@dataclass(frozen=True)
class PrinterResult:
    """The last result on one printer."""

    name: str
    protocol: str
    last_job: str
    last_state: str
    last_reason: str
    updated: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Journal:
    """The journal file in ``spool_dir``; thread-safe (one connection, one lock)."""

    def __init__(self, spool_dir: Path, clock: Any = time.time) -> None:
        self.path = spool_dir / JOURNAL_NAME
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writing ----------------------------------------------------------------------------
    def begin(
        self, uuid: str, printer: str, uri: str, protocol: str, options: dict[str, str]
    ) -> bool:
        """Write step ``claimed`` for a new job; False (and no change) if the job is known."""
        now = self._clock()
        with self._tx() as db:
            done = db.execute(
                "INSERT OR IGNORE INTO jobs (uuid, printer, uri, protocol, options, step, "
                "created, updated) VALUES (?, ?, ?, ?, ?, 'claimed', ?, ?)",
                (uuid, printer, uri, protocol, json.dumps(options, sort_keys=True), now, now),
            )
            added = done.rowcount == 1
        if added:
            fault_point("claimed")
        return added

    def restart(
        self, uuid: str, printer: str, uri: str, protocol: str, options: dict[str, str]
    ) -> bool:
        """A finished job released again (after FAILED, elsewhere): a fresh ``claimed`` row.
        False (and no change) while the job is unfinished here."""
        entry = self.get(uuid)
        if entry is not None and not entry.finished:
            return False
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE uuid = ? AND reported = 1", (uuid,))
        return self.begin(uuid, printer, uri, protocol, options)

    def step(self, uuid: str, step: str, **fields: Any) -> None:
        """Move the job to ``step`` and set ``fields`` (columns); committed when this returns,
        then :func:`fault_point` runs. Idempotent for the same values."""
        if step not in STEPS:
            raise ValueError(f"unknown journal step {step!r}")
        allowed = {
            "printer_job_id",
            "counter_before",
            "plan",
            "impressions",
            "sheets",
            "estimated",
            "state",
            "reason",
            "reported",
            "first_try",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown journal fields {sorted(bad)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
        with self._tx() as db:
            db.execute(
                # column names come from the fixed set checked above, values are parameters
                f"UPDATE jobs SET step = ?, updated = ?{', ' if sets else ''}{sets} WHERE uuid = ?",  # noqa: S608
                (step, self._clock(), *values, uuid),
            )
        log.debug("journal: job %s %s", uuid, step)
        fault_point(step)

    def update(self, uuid: str, **fields: Any) -> None:
        """Set ``fields`` without changing the step (only ``first_try`` is allowed)."""
        if set(fields) - {"first_try"}:
            raise ValueError(f"journal.update: unknown fields {sorted(fields)}")
        entry = self.get(uuid)
        if entry is not None and fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
            with self._tx() as db:
                db.execute(f"UPDATE jobs SET {sets} WHERE uuid = ?", (*values, uuid))  # noqa: S608

    def finish(self, uuid: str, state: str, reason: str, **fields: Any) -> None:
        """Step ``done`` with the end state (before reporting it)."""
        self.step(uuid, "done", state=state, reason=reason, **fields)

    def reported(self, uuid: str) -> None:
        """The cloud has the end state: the job is finished here; the printer's last result."""
        entry = self.get(uuid)
        if entry is None:
            return
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE jobs SET reported = 1, updated = ? WHERE uuid = ?", (now, uuid))
            db.execute(
                "INSERT OR REPLACE INTO printers VALUES (?, ?, ?, ?, ?, ?)",
                (entry.printer, entry.protocol, uuid, entry.state, entry.reason, now),
            )

    def forget_before(self, cutoff: float) -> int:
        """Delete finished jobs last updated before ``cutoff``; returns how many."""
        with self._tx() as db:
            done = db.execute("DELETE FROM jobs WHERE reported = 1 AND updated < ?", (cutoff,))
            return done.rowcount

    # -- reading ----------------------------------------------------------------------------
    def get(self, uuid: str) -> JournalEntry | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE uuid = ?", (uuid,)).fetchone()
        return None if row is None else _entry(row)

    def entries(self) -> list[JournalEntry]:
        """Every job, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY created DESC").fetchall()
        return [_entry(r) for r in rows]

    def unfinished(self) -> list[JournalEntry]:
        """Jobs not yet reported as ended, oldest first (the order to resume them in)."""
        return [e for e in reversed(self.entries()) if not e.finished]

    def printers(self) -> list[PrinterResult]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM printers ORDER BY name").fetchall()
        return [PrinterResult(**dict(r)) for r in rows]


def _entry(row: sqlite3.Row) -> JournalEntry:
    data = dict(row)
    data["options"] = json.loads(data["options"] or "{}")
    data["estimated"] = bool(data["estimated"])
    data["reported"] = bool(data["reported"])
    return JournalEntry(**data)


def status_report(spool_dir: Path, as_json: bool = False) -> str:
    """``pullprint node status``: each job's step and state, each printer's last result.
    Reads only (a missing journal reads as empty)."""
    if not (spool_dir / JOURNAL_NAME).exists():
        jobs: list[JournalEntry] = []
        printers: list[PrinterResult] = []
    else:
        journal = Journal(spool_dir)
        try:
            jobs, printers = journal.entries(), journal.printers()
        finally:
            journal.close()
    if as_json:
        return json.dumps(
            {"jobs": [j.to_json() for j in jobs], "printers": [p.to_json() for p in printers]},
            indent=2,
        )
    lines = ["jobs:"]
    for j in jobs:
        end = f" {j.state}" if j.state else ""
        note = "" if j.reported or j.step != "done" else " (not reported yet)"
        count = "" if j.impressions is None else f" {j.impressions} impression(s)"
        est = " estimated" if j.estimated else ""
        why = f" - {j.reason}" if j.reason else ""
        lines.append(
            f"  {j.uuid}  {j.printer:<12} {j.protocol:<6} {j.step:<10}{end}{count}{est}{note}{why}"
        )
    lines.append("printers:")
    for p in printers:
        why = f" - {p.last_reason}" if p.last_reason else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.updated))
        lines.append(f"  {p.name:<12} {p.protocol:<6} {p.last_state:<9} {stamp} {p.last_job}{why}")
    return "\n".join(lines)

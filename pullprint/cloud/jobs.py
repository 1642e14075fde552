"""The life of a job in the cloud: register, store its document, release, claim, progress, cancel.

Every state change is one conditional UPDATE (``... WHERE state IN (expected)``) in the same
database transaction as its ledger change and its node event, so concurrent requests are safe:
exactly one wins and the others get Conflict (409). Nodes are woken after the commit; the stored
document is deleted once the job reaches an end state (retention "at once").

Errors are the ``pullprint.errors`` refusals carrying their HTTP status; the API turns them into
``{"detail": ...}`` answers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from pullprint.cloud import events, ledger
from pullprint.cloud import printers as printer_rows
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.db import jobs, printers, transactions
from pullprint.cloud.notify import Notifier
from pullprint.cloud.storage import DocumentStore, Expected
from pullprint.cloud.users import UserDirectory
from pullprint.cloud.validate import CancelRequest, ProgressRequest, ReleaseRequest
from pullprint.errors import Conflict, Forbidden, NotFound
from pullprint.model import (
    FINAL_STATES,
    EventKind,
    Job,
    JobState,
    JobSubmission,
    Transaction,
)

log = logging.getLogger(__name__)

_NOT_FINAL = tuple(s.value for s in JobState if not s.is_final)
# A failed print-out has not printed: its transaction stays pending and its document is kept, so
# the owner can release it at another printer, or cancel it (or retention expires it).
_RELEASABLE = (JobState.HELD.value, JobState.FAILED.value)
_CANCELABLE = (*_NOT_FINAL, JobState.FAILED.value)
_PROGRESS_FROM = {
    JobState.PRINTING: (JobState.CLAIMED.value,),
    JobState.COMPLETED: (JobState.CLAIMED.value, JobState.PRINTING.value),
    JobState.CANCELED: (JobState.CLAIMED.value, JobState.PRINTING.value),
    JobState.FAILED: (JobState.CLAIMED.value, JobState.PRINTING.value),
}


@dataclass(frozen=True)
class UploadPlan:
    """What an upload must match, and whether the document is already stored."""

    expected: Expected
    already_stored: bool


@dataclass(frozen=True)
class Download:
    """An open stored document (the caller closes ``file``)."""

    file: BinaryIO
    size: int
    media_type: str


@dataclass(frozen=True)
class _Row:
    """A job with what the rules need beyond the model."""

    job: Job
    printer_node: str | None
    claimed_by: str | None
    price_micro: int | None
    document_stored: bool


def _select() -> sa.Select[Any]:
    tx = [c.label(f"tx_{c.name}") for c in transactions.c]
    return sa.select(jobs, *tx, printers.c.node.label("printer_node")).select_from(
        jobs.outerjoin(transactions, transactions.c.job_uuid == jobs.c.uuid).outerjoin(
            printers, printers.c.name == jobs.c.printer
        )
    )


def _from_row(row: RowMapping) -> _Row:
    transaction: Transaction | None = None
    if row["tx_id"] is not None:
        transaction = ledger.from_row({k[3:]: v for k, v in row.items() if k.startswith("tx_")})
    job = Job(
        uuid=row["uuid"],
        owner=row["owner"],
        title=row["title"],
        copies=int(row["copies"]),
        options={str(k): str(v) for k, v in dict(row["options"] or {}).items()},
        pages=int(row["pages"]),
        size=int(row["size"]),
        sha256=row["sha256"],
        queue=row["queue"],
        origin=row["origin"],
        cups_job_id=int(row["cups_job_id"]),
        cups_job_uuid=row["cups_job_uuid"],
        document_format=row["document_format"],
        state=JobState(row["state"]),
        state_reason=row["state_reason"],
        printer=row["printer"],
        impressions=row["impressions"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        transaction=transaction,
    )
    return _Row(
        job=job,
        printer_node=row["printer_node"],
        claimed_by=row["claimed_by"],
        price_micro=row["price_micro"],
        document_stored=bool(row["document_stored"]),
    )


class JobBook:
    """Jobs, their ledger entries and the events they cause. Methods are synchronous (run them
    in a worker thread from async code); each says what it changes."""

    def __init__(
        self,
        engine: Engine,
        store: DocumentStore,
        notifier: Notifier,
        users: UserDirectory,
        currency: str,
    ) -> None:
        self._engine = engine
        self._store = store
        self._notifier = notifier
        self._users = users
        self._currency = currency

    # -- reading ---------------------------------------------------------------------------

    def _load(self, conn: Connection, uuid: str) -> _Row:
        row = conn.execute(_select().where(jobs.c.uuid == uuid)).mappings().first()
        if row is None:
            raise NotFound(404, f"no job {uuid}")
        return _from_row(row)

    def _read(self, uuid: str) -> _Row:
        with self._engine.connect() as conn:
            return self._load(conn, uuid)

    def get(self, caller: Principal, uuid: str) -> Job:
        """The job with its transaction. A node sees only jobs it sent or prints."""
        row = self._read(uuid)
        self._check_visible(caller, row)
        return row.job

    def list(self, user: str | None = None, state: JobState | None = None) -> list[Job]:
        """Jobs, newest first, optionally of one owner and/or in one state."""
        query = _select().order_by(jobs.c.created_at.desc(), jobs.c.uuid)
        if user is not None:
            query = query.where(jobs.c.owner == user)
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_from_row(row).job for row in rows]

    @staticmethod
    def _check_visible(caller: Principal, row: _Row) -> None:
        if caller.role is Role.ADMIN:
            return
        if caller.node in (row.job.origin, row.printer_node, row.claimed_by):
            return
        raise Forbidden(
            403, f"job {row.job.uuid} neither came from nor prints on node {caller.node}"
        )

    # -- registration and documents ---------------------------------------------------------

    def register(self, caller: Principal, sub: JobSubmission) -> tuple[Job, bool]:
        """Create the job (held) and its pending transaction; idempotent per uuid.

        Returns (job, created). The same uuid with other content is a Conflict (409).
        """
        if caller.role is Role.NODE and sub.origin != caller.node:
            raise Forbidden(
                403, f"node {caller.node} cannot register jobs for origin node {sub.origin}"
            )
        now = time.time()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(jobs).values(
                        **sub.to_json(),
                        state=JobState.HELD.value,
                        state_reason="",
                        printer=None,
                        release_options={},
                        price_micro=None,
                        claimed_by=None,
                        impressions=None,
                        sheets=None,
                        document_stored=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                ledger.open_pending(conn, sub.uuid, sub.owner, self._currency, now)
        except IntegrityError as exc:
            existing = self._read(sub.uuid)
            same = JobSubmission(
                **{k: getattr(existing.job, k) for k in JobSubmission.__dataclass_fields__}
            )
            if same != sub:
                raise Conflict(
                    409, f"job {sub.uuid} is already registered with different content"
                ) from exc
            return existing.job, False
        log.info("registered job %s of %s from node %s", sub.uuid, sub.owner, sub.origin)
        return self._read(sub.uuid).job, True

    def plan_upload(self, caller: Principal, uuid: str) -> UploadPlan:
        """What an upload of the job's document must match. Changes nothing."""
        row = self._read(uuid)
        if caller.role is Role.NODE and row.job.origin != caller.node:
            raise Forbidden(403, f"job {uuid} was registered by node {row.job.origin}")
        if row.job.state.is_final:
            raise Conflict(409, f"job {uuid} is {row.job.state}; its document is not needed")
        return UploadPlan(Expected(row.job.size, row.job.sha256), row.document_stored)

    def document_stored(self, uuid: str) -> None:
        """Mark the job's document as stored. If the job ended meanwhile, delete the file and
        raise Conflict (409)."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state.in_(_NOT_FINAL))
                .values(document_stored=True)
            )
        if done.rowcount != 1:
            self._store.delete(uuid)
            raise Conflict(409, f"job {uuid} ended while its document arrived; it was not kept")

    def open_document(self, caller: Principal, uuid: str) -> Download:
        """Open the document for the node that claimed the job. Changes nothing."""
        row = self._read(uuid)
        if row.claimed_by != caller.node:
            raise Forbidden(403, f"job {uuid} was not claimed by node {caller.node}")
        if row.job.state not in (JobState.CLAIMED, JobState.PRINTING):
            raise Conflict(409, f"job {uuid} is {row.job.state}; its document is gone")
        try:
            fh = self._store.open(uuid)
        except FileNotFoundError as exc:
            raise NotFound(404, f"the document of job {uuid} has not been uploaded") from exc
        return Download(fh, row.job.size, row.job.document_format)

    # -- release and claim --------------------------------------------------------------------

    def release(self, uuid: str, req: ReleaseRequest) -> Job:
        """Release a held (or failed) job to a printer for its owner, PIN checked: state
        released, the printer's price recorded, a ``released`` event for the printer's node."""
        row = self._read(uuid)
        if req.user != row.job.owner:
            raise Forbidden(403, f"job {uuid} belongs to {row.job.owner}")
        if not self._users.verify(req.user, req.pin):
            raise Forbidden(403, f"wrong PIN for user {req.user}")
        return self._release(row, req.printer, req.options, "")

    def operator_release(self, caller: Principal, uuid: str, printer: str, operator: str) -> Job:
        """An operator released the job in CUPS (its web UI's "Release Job"): the job's origin
        node passes that on, with no PIN (CUPS authenticated the operator)."""
        row = self._read(uuid)
        if caller.role is not Role.ADMIN and caller.node != row.job.origin:
            raise Forbidden(403, f"job {uuid} did not come from node {caller.node}")
        return self._release(row, printer, {}, f"released by operator {operator} in CUPS")

    def _release(self, row: _Row, printer_name: str, options: dict[str, str], note: str) -> Job:
        uuid = row.job.uuid
        with self._engine.connect() as conn:
            printer = printer_rows.get(conn, printer_name)
        if printer is None:
            raise NotFound(404, f"no printer {printer_name}")
        if row.job.state.value not in _RELEASABLE:
            raise Conflict(409, f"job is {row.job.state}, not held")
        if not row.document_stored:
            raise Conflict(
                409, f"the document of job {uuid} has not arrived yet; try again in a moment"
            )
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state.in_(_RELEASABLE))
                .values(
                    state=JobState.RELEASED.value,
                    state_reason=note,
                    printer=printer.name,
                    release_options=options,
                    price_micro=ledger.price_to_micro(printer.price_per_page),
                    updated_at=time.time(),
                )
            )
            if done.rowcount == 1:
                events.append_released(conn, uuid, printer, options)
        if done.rowcount != 1:
            raise Conflict(409, f"job is {self._read(uuid).job.state}, not held")
        self._notifier.notify(printer.node)
        log.info("released job %s to printer %s (node %s)", uuid, printer.name, printer.node)
        return self._read(uuid).job

    def claim(self, caller: Principal, uuid: str) -> Job:
        """The node takes a job released to one of its printers: state claimed. Exactly one
        claim wins; every other is a Conflict (409)."""
        row = self._read(uuid)
        if row.job.state is not JobState.RELEASED:
            raise Conflict(409, f"job {uuid} is {row.job.state}, not released")
        if row.printer_node != caller.node:
            raise Conflict(
                409, f"job {uuid} is released to printer {row.job.printer} of another node"
            )
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(
                    jobs.c.uuid == uuid,
                    jobs.c.state == JobState.RELEASED.value,
                    jobs.c.printer == row.job.printer,
                )
                .values(
                    state=JobState.CLAIMED.value, claimed_by=caller.node, updated_at=time.time()
                )
            )
        if done.rowcount != 1:
            raise Conflict(409, f"job {uuid} is {self._read(uuid).job.state}, not released")
        log.info("node %s claimed job %s", caller.node, uuid)
        return self._read(uuid).job

    # -- progress and cancel ------------------------------------------------------------------

    def progress(self, caller: Principal, uuid: str, req: ProgressRequest) -> Job:
        """Record how printing goes. completed: transaction completed with its cost;
        canceled/failed: transaction canceled at 0. An end state emits ``finished`` to the
        origin node and deletes the document. Repeating the current state is a no-op (200)."""
        row = self._read(uuid)
        if row.claimed_by != caller.node:
            raise Forbidden(403, f"job {uuid} was not claimed by node {caller.node}")
        if row.job.state is req.state:
            if req.reason != row.job.state_reason:  # e.g. printing, waiting: media-empty
                with self._engine.begin() as conn:
                    conn.execute(
                        sa.update(jobs)
                        .where(jobs.c.uuid == uuid, jobs.c.state == req.state.value)
                        .values(state_reason=req.reason, updated_at=time.time())
                    )
                return self._read(uuid).job
            return row.job
        allowed = _PROGRESS_FROM[req.state]
        if row.job.state.value not in allowed:
            raise Conflict(409, f"job {uuid} is {row.job.state}; it cannot become {req.state}")
        final = req.state in FINAL_STATES and req.state is not JobState.FAILED
        values: dict[str, Any] = {
            "state": req.state.value,
            "state_reason": req.reason,
            "updated_at": time.time(),
        }
        if req.impressions is not None:
            values["impressions"] = req.impressions
        if req.sheets is not None:
            values["sheets"] = req.sheets
        if final:
            values["document_stored"] = False
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs).where(jobs.c.uuid == uuid, jobs.c.state.in_(allowed)).values(values)
            )
            if done.rowcount == 1 and final:
                self._settle(conn, row, req)
            if done.rowcount == 1 and req.state is JobState.FAILED:
                conn.execute(sa.update(jobs).where(jobs.c.uuid == uuid).values(claimed_by=None))
        if done.rowcount != 1:
            now = self._read(uuid).job
            if now.state is req.state:
                return now
            raise Conflict(409, f"job {uuid} is {now.state}; it cannot become {req.state}")
        if final:
            self._finished(row.job, EventKind.FINISHED)
        log.info("job %s is %s", uuid, req.state)
        return self._read(uuid).job

    def _settle(self, conn: Connection, row: _Row, req: ProgressRequest) -> None:
        """Close the job's transaction and add the ``finished`` event (inside ``conn``)."""
        job, now = row.job, time.time()
        if req.state is JobState.COMPLETED:
            pages = req.impressions if req.impressions is not None else job.pages * job.copies
            currency = job.transaction.currency if job.transaction else self._currency
            amount = ledger.usage_minor(pages, row.price_micro or 0, currency)
            ledger.complete(conn, job.uuid, pages, amount, now)
        else:
            ledger.cancel(conn, job.uuid, now)
        events.append_job_state(
            conn,
            EventKind.FINISHED,
            job.origin,
            job.uuid,
            job.cups_job_id,
            job.cups_job_uuid,
            req.state,
        )

    def cancel(self, caller: Principal, uuid: str, req: CancelRequest) -> Job:
        """Cancel a job that has not ended: transaction canceled at 0, a ``canceled`` event for
        the origin node, document deleted. Idempotent for a canceled job."""
        row = self._read(uuid)
        self._check_visible(caller, row)
        job = row.job
        if req.user is not None and req.user != job.owner:
            raise Forbidden(403, f"job {uuid} belongs to {job.owner}")
        if job.state is JobState.CANCELED:
            return job
        if job.state.value not in _CANCELABLE:
            raise Conflict(409, f"job {uuid} is already {job.state}")
        who = req.user or caller.describe()
        now = time.time()
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state.in_(_CANCELABLE))
                .values(
                    state=JobState.CANCELED.value,
                    state_reason=req.reason or f"canceled by {who}",
                    document_stored=False,
                    updated_at=now,
                )
            )
            if done.rowcount == 1:
                ledger.cancel(conn, uuid, now)
                for node in self._cancel_targets(row):
                    events.append_job_state(
                        conn,
                        EventKind.CANCELED,
                        node,
                        uuid,
                        job.cups_job_id,
                        job.cups_job_uuid,
                        JobState.CANCELED,
                    )
        if done.rowcount != 1:
            current = self._read(uuid).job
            if current.state is JobState.CANCELED:
                return current
            raise Conflict(409, f"job {uuid} is already {current.state}")
        self._finished(job, EventKind.CANCELED)
        for node in self._cancel_targets(row)[1:]:
            self._notifier.notify(node)
        log.info("job %s canceled by %s", uuid, who)
        return self._read(uuid).job

    @staticmethod
    def _cancel_targets(row: _Row) -> tuple[str, ...]:
        """The origin node (its CUPS job), then the node printing the job (Cancel-Job)."""
        if row.claimed_by and row.claimed_by != row.job.origin:
            return (row.job.origin, row.claimed_by)
        return (row.job.origin,)

    def _finished(self, job: Job, kind: EventKind) -> None:
        """After an end state is committed: delete the document, wake the origin node."""
        self._store.delete(job.uuid)
        self._notifier.notify(job.origin)
        log.debug("sent %s for job %s to node %s", kind, job.uuid, job.origin)

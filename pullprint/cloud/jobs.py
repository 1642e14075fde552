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
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from pullprint.cloud import db, events, groups, ledger, policies
from pullprint.cloud import printers as printer_rows
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.db import document_keys, jobs, printers, transactions
from pullprint.cloud.documents import Documents
from pullprint.cloud.notify import Notifier
from pullprint.cloud.signing import SignedParams, UrlSigner
from pullprint.cloud.storage import Expected, Readable, StoredDocument
from pullprint.cloud.users import UserDirectory
from pullprint.cloud.validate import CancelRequest, Cursor, ProgressRequest, ReleaseRequest
from pullprint.errors import Conflict, Forbidden, NotFound, WrongSecret
from pullprint.model import (
    FINAL_STATES,
    EventKind,
    Job,
    JobState,
    JobSubmission,
    PlanStep,
    Printer,
    ReleaseMode,
    StorageKind,
    Transaction,
    assemble,
)

log = logging.getLogger(__name__)

# A job whose CUPS user is no pullprint user, held for an admin (``cloud.unknown_user = "hold"``):
# no user owns it (no user name is empty), so nobody but an admin or operator sees or acts on it
# until one assigns it (``JobBook.assign``). Its state_reason names the claimed user.
UNASSIGNED = ""
UNASSIGNED_REASON = "held for an admin: the CUPS user is not a pullprint user"
DOCUMENT_WAIT_SECONDS = 5.0  # a release waits this long for a document its node is uploading


def unknown_user_message(name: str) -> str:
    """The refusal of a job whose owner is unknown or disabled: who, and what to do."""
    return (
        f"user {name} is not a pullprint user (unknown or disabled): ask an admin to add "
        f"{name}, or to map the CUPS user name to a pullprint user (node.user_aliases), "
        "then print again"
    )


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
    """An open stored document, decrypted as it is read (the caller closes ``file``)."""

    file: Readable
    size: int
    media_type: str


@dataclass(frozen=True)
class Authentication:
    """What an authentication at a printer did: the mode that applied, the jobs it released,
    and the owner's jobs still held (to pick from, in hold mode)."""

    user: str
    printer: str
    mode: ReleaseMode
    released: list[Job]
    held: list[Job]

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "printer": self.printer,
            "mode": self.mode.value,
            "released": [j.to_json() for j in self.released],
            "held": [j.to_json() for j in self.held],
        }


@dataclass(frozen=True)
class SweepResult:
    """What one retention sweep did."""

    expired: int
    documents_deleted: int
    nonces_pruned: int

    def to_json(self) -> dict[str, int]:
        return {
            "expired": self.expired,
            "documents_deleted": self.documents_deleted,
            "nonces_pruned": self.nonces_pruned,
        }


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


# The statements of the hot paths (a read by uuid, a release), built once: building one costs
# more than running it (SQLAlchemy's construction and cache key; measured on bench.cloud).
_REGISTER = sa.insert(jobs)  # its parameters come at execution
_BY_UUID = _select().where(jobs.c.uuid == sa.bindparam("b_uuid"))
_PRINTER = sa.select(printers).where(printers.c.name == sa.bindparam("b_name"))
# A release's two updates return the rows they leave, so the released job is not read back.
_RELEASE = (
    sa.update(jobs)
    .where(jobs.c.uuid == sa.bindparam("b_uuid"), jobs.c.state.in_(_RELEASABLE))
    .returning(*jobs.c)
)
_TX_ACCOUNT = (
    sa.update(transactions)
    .where(transactions.c.job_uuid == sa.bindparam("b_uuid"))
    .returning(*(c.label(f"tx_{c.name}") for c in transactions.c))
)
_NO_TRANSACTION = {f"tx_{c.name}": None for c in transactions.c}  # the outer join's nulls
# PostgreSQL: both updates in one statement (one round trip): the job's in a CTE, its
# transaction's from what that returns (none when the job was not releasable), the two rows
# outer-joined as a read of the job gives them. SQLite has no UPDATE in WITH: two statements.
# The parameters are named r_<column>: SQLAlchemy makes a parameter named as a column of an
# UPDATE's table a value it sets, in a CTE's UPDATE too (updated_at would be set on both).
_RELEASE_SET = (
    *("state", "state_reason", "printer", "release_options", "price_micro"),
    *("released_by", "account", "finishing", "updated_at"),
)
_RELEASED = _RELEASE.values(
    {name: sa.bindparam(f"r_{name}", type_=jobs.c[name].type) for name in _RELEASE_SET}
).cte("released")
_TX_RELEASED = (
    sa.update(transactions)
    .where(transactions.c.job_uuid == _RELEASED.c.uuid)
    .values(account=sa.bindparam("r_account", type_=transactions.c.account.type))
    .returning(*transactions.c)
    .cte("tx_released")
)
_RELEASE_PG = sa.select(
    *_RELEASED.c, *(c.label(f"tx_{c.name}") for c in _TX_RELEASED.c)
).select_from(_RELEASED.outerjoin(_TX_RELEASED, _TX_RELEASED.c.job_uuid == _RELEASED.c.uuid))


def _mark_released(conn: Connection, uuid: str, values: dict[str, Any]) -> Mapping[Any, Any] | None:
    """Set the release's ``values`` on the job if it is still releasable, and its account on
    the job's transaction; returns both rows as a read of the job gives them (its transaction's
    columns ``tx_``, nulls when it has none), or None when the job was not releasable. One
    statement on PostgreSQL (``_RELEASE_PG``), two on SQLite."""
    if conn.dialect.name == "postgresql":
        params = {f"r_{name}": value for name, value in values.items()}
        return conn.execute(_RELEASE_PG, {"b_uuid": uuid, **params}).mappings().first()
    job_row = conn.execute(_RELEASE, {"b_uuid": uuid, **values}).mappings().first()
    if job_row is None:
        return None
    tx_params = {"b_uuid": uuid, "account": values["account"]}
    tx_row = conn.execute(_TX_ACCOUNT, tx_params).mappings().first()
    return {**job_row, **(tx_row or _NO_TRANSACTION)}


_NEWEST_FIRST = _select().order_by(jobs.c.created_at.desc(), jobs.c.uuid)
_OF_OWNER = jobs.c.owner == sa.bindparam("b_owner")
_OF_OWNERS = jobs.c.owner.in_(sa.bindparam("b_owners", expanding=True))
_IN_STATE = jobs.c.state == sa.bindparam("b_state")


# After the cursor in (created_at DESC, uuid) order; the first term is a range an index reads.
_AFTER_AT = sa.bindparam("b_after_at", type_=sa.Float)
_AFTER = sa.and_(
    jobs.c.created_at <= _AFTER_AT,
    sa.or_(jobs.c.created_at < _AFTER_AT, jobs.c.uuid > sa.bindparam("b_after_uuid")),
)
_LIMIT = sa.bindparam("b_limit", type_=sa.BigInteger)


def _listing(*where: sa.ColumnElement[bool]) -> dict[tuple[bool, bool], sa.Select[Any]]:
    """A listing's statements, by (of one state ``b_state``, after a cursor ``b_after_*``),
    each with at most ``b_limit`` rows."""
    out = {}
    for one_state in (False, True):
        for after in (False, True):
            conditions = [*where, *([_IN_STATE] if one_state else []), *([_AFTER] if after else [])]
            out[(one_state, after)] = _NEWEST_FIRST.where(*conditions).limit(_LIMIT)
    return out


# Listings of: every job, one owner's (``b_owner``), some owners' (``b_owners``)
_LIST_ALL = _listing()
_LIST_OWNER = _listing(_OF_OWNER)
_LIST_OWNERS = _listing(_OF_OWNERS)
_COUNT_OWNERS = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(_OF_OWNERS, jobs.c.state.in_(sa.bindparam("b_states", expanding=True)))
)


def _from_row(row: Mapping[Any, Any]) -> _Row:
    transaction: Transaction | None = None
    if row["tx_id"] is not None:
        transaction = ledger.from_row(row, "tx_", account=True)
    job = assemble(
        Job,
        {
            "uuid": row["uuid"],
            "owner": row["owner"],
            "title": row["title"],
            "copies": int(row["copies"]),
            "options": {str(k): str(v) for k, v in (row["options"] or {}).items()},
            "pages": int(row["pages"]),
            "size": int(row["size"]),
            "sha256": row["sha256"],
            "queue": row["queue"],
            "origin": row["origin"],
            "cups_job_id": int(row["cups_job_id"]),
            "cups_job_uuid": row["cups_job_uuid"],
            "document_format": row["document_format"],
            "state": JobState(row["state"]),
            "state_reason": row["state_reason"],
            "printer": row["printer"],
            "impressions": row["impressions"],
            "created_at": float(row["created_at"]),
            "updated_at": float(row["updated_at"]),
            "transaction": transaction,
            "release_options": {str(k): str(v) for k, v in (row["release_options"] or {}).items()},
            "released_by": str(row["released_by"] or ""),
            "account": str(row["account"] or ""),
            "storage": StorageKind(row["storage"] or StorageKind.CLOUD.value),
            "finishing": tuple(PlanStep.from_json(s) for s in row["finishing"] or ()),
        },
    )
    return assemble(
        _Row,
        {
            "job": job,
            "printer_node": row["printer_node"],
            "claimed_by": row["claimed_by"],
            "price_micro": row["price_micro"],
            "document_stored": bool(row["document_stored"]),
        },
    )


def paged(
    listing: Callable[[int, Cursor | None], list[Job]], limit: int, after: Cursor | None
) -> tuple[list[Job], str | None]:
    """One page of ``listing`` (called with a limit and a cursor): at most ``limit`` jobs after
    ``after``, and the encoded cursor of the next page (None when this one is the last)."""
    found = listing(limit + 1, after)  # one more than the page: whether there is a next one
    if len(found) <= limit:
        return found, None
    last = found[limit - 1]
    return found[:limit], Cursor(last.created_at, last.uuid).encode()


class JobBook:
    """Jobs, their ledger entries and the events they cause. Methods are synchronous (run them
    in a worker thread from async code); each says what it changes."""

    def __init__(
        self,
        engine: Engine,
        documents: Documents,
        notifier: Notifier,
        users: UserDirectory,
        currency: str,
        *,
        signer: UrlSigner,
        clock: Callable[[], float] = time.time,
        storage: StorageKind = StorageKind.CLOUD,
        expire_seconds: int = 3 * 24 * 3600,
        keep_printed_seconds: int = 0,
        unknown_user: str = "refuse",
    ) -> None:
        self._engine = engine
        self._reads = db.reader(engine)
        self._unknown_user = unknown_user
        self._documents = documents
        self._notifier = notifier
        self._users = users
        self._currency = currency
        self._signer = signer
        self._clock = clock
        self._storage = storage
        self._expire_seconds = expire_seconds
        self._keep_printed_seconds = keep_printed_seconds

    # -- reading ---------------------------------------------------------------------------

    def _load(self, conn: Connection, uuid: str) -> _Row:
        row = conn.execute(_BY_UUID, {"b_uuid": uuid}).mappings().first()
        if row is None:
            raise NotFound(404, f"no job {uuid}")
        return _from_row(row)

    def _read(self, uuid: str) -> _Row:
        with self._reads.connect() as conn:
            return self._load(conn, uuid)

    def get(self, caller: Principal, uuid: str) -> Job:
        """The job with its transaction. A node sees only jobs it sent or prints; a user only
        their own and those delegated to them; operators and admins every job."""
        row = self._read(uuid)
        self._check_visible(caller, row)
        return row.job

    def list_for(
        self,
        user: str,
        state: JobState | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
    ) -> list[Job]:
        """The jobs ``user`` may see and release: their own, and those of every owner who
        delegated to them (directly or through a group), newest first: at most ``limit``,
        after ``after``."""
        with self._reads.connect() as conn:
            delegating = groups.owners_delegating_to(conn, user)
            if delegating:
                params: dict[str, Any] = {"b_owners": [user, *delegating]}
                rows = self._rows(conn, _LIST_OWNERS, state, limit, after, params)
            else:
                rows = self._rows(conn, _LIST_OWNER, state, limit, after, {"b_owner": user})
        return [_from_row(row).job for row in rows]

    def count_for(self, user: str, states: Sequence[JobState]) -> int:
        """How many of the jobs ``user`` may see and release (as :meth:`list_for`) are in one
        of ``states``."""
        with self._reads.connect() as conn:
            owners = [user, *groups.owners_delegating_to(conn, user)]
            params = {"b_owners": owners, "b_states": [state.value for state in states]}
            return int(conn.execute(_COUNT_OWNERS, params).scalar_one())

    def list(
        self,
        user: str | None = None,
        state: JobState | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
    ) -> list[Job]:
        """Jobs, newest first, optionally of one owner and/or in one state: at most ``limit``,
        after ``after``."""
        with self._reads.connect() as conn:
            if user is None:
                rows = self._rows(conn, _LIST_ALL, state, limit, after, {})
            else:
                rows = self._rows(conn, _LIST_OWNER, state, limit, after, {"b_owner": user})
        return [_from_row(row).job for row in rows]

    @staticmethod
    def _rows(
        conn: Connection,
        listing: dict[tuple[bool, bool], sa.Select[Any]],
        state: JobState | None,
        limit: int | None,
        after: Cursor | None,
        params: dict[str, Any],
    ) -> Sequence[RowMapping]:
        """The rows of a prebuilt listing (see ``_listing``): of ``state`` if one is given, at
        most ``limit`` (all without), after ``after`` if given."""
        params = {**params, "b_limit": sys.maxsize if limit is None else limit}
        if state is not None:
            params["b_state"] = state.value
        if after is not None:
            params["b_after_at"], params["b_after_uuid"] = after.created_at, after.uuid
        statement = listing[(state is not None, after is not None)]
        return conn.execute(statement, params).mappings().all()

    def _check_visible(self, caller: Principal, row: _Row) -> None:
        if caller.is_staff:
            return
        if caller.role is Role.USER:
            if caller.user == row.job.owner:
                return
            with self._reads.connect() as conn:
                if groups.account_for(conn, row.job.owner, caller.user) is not None:
                    return
            raise Forbidden(403, f"job {row.job.uuid} is not yours and was not delegated to you")
        if caller.role is Role.NODE and caller.node in (
            row.job.origin,
            row.printer_node,
            row.claimed_by,
        ):
            return
        if caller.role is not Role.NODE:
            raise Forbidden(403, f"{caller.describe()} may not see job {row.job.uuid}")
        raise Forbidden(
            403, f"job {row.job.uuid} neither came from nor prints on node {caller.node}"
        )

    # -- registration and documents ---------------------------------------------------------

    def register(self, caller: Principal, sub: JobSubmission) -> tuple[Job, bool]:
        """Create the job (held) and its pending transaction; idempotent per uuid.

        The job's storage is the cloud's ``storage_mode`` at registration. A job of a queue in
        automatic mode is released to the queue's printer once its document is there (at once
        when the document stays on the node). Returns (job, created). The same uuid with other
        content is a Conflict (409).
        """
        if caller.role is Role.NODE and sub.origin != caller.node:
            raise Forbidden(
                403, f"node {caller.node} cannot register jobs for origin node {sub.origin}"
            )
        owner, reason = sub.owner, ""
        known = self._users.resolve(sub.owner)  # the user, or the user it is an alias of
        if known is not None and known != sub.owner:
            log.info("job %s: CUPS user %s is user %s (alias)", sub.uuid, sub.owner, known)
            owner = known
            sub = replace(sub, owner=known)
        if known is None and not self._registered(sub.uuid):
            if self._unknown_user != "hold":
                log.warning(
                    "refused job %s from node %s: %s is not a pullprint user (unknown_user=refuse)",
                    sub.uuid,
                    sub.origin,
                    sub.owner,
                )
                raise Forbidden(403, unknown_user_message(sub.owner))
            owner, reason = UNASSIGNED, f"{UNASSIGNED_REASON}: {sub.owner}"
            log.warning(
                "job %s from node %s held for an admin: %s is not a pullprint user",
                sub.uuid,
                sub.origin,
                sub.owner,
            )
        now = self._clock()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    _REGISTER,
                    {
                        **sub.to_json(),
                        "owner": owner,
                        "state": JobState.HELD.value,
                        "state_reason": reason,
                        "printer": None,
                        "release_options": {},
                        "price_micro": None,
                        "claimed_by": None,
                        "impressions": None,
                        "sheets": None,
                        "document_stored": False,
                        "created_at": now,
                        "updated_at": now,
                        "storage": self._storage.value,
                        "released_by": "",
                        "account": "",
                    },
                )
                ledger.open_pending(conn, sub.uuid, owner, self._currency, now)
        except IntegrityError as exc:
            return self._registered_again(sub, exc), False
        log.info("registered job %s of %s from node %s", sub.uuid, sub.owner, sub.origin)
        row = self._read(sub.uuid)
        if row.job.storage is StorageKind.NODE:
            return self._release_automatic(row), True
        return row.job, True

    def _registered_again(self, sub: JobSubmission, exc: IntegrityError) -> Job:
        """The job of a registration whose uuid is registered already: the same job (a resent
        registration), or the job with the document facts of ``sub`` when only those differ
        and its document is not here yet (cupsd ran the job again after the node crashed
        before holding it, and the filter wrote other bytes). Else a Conflict (409)."""
        existing = self._read(sub.uuid)
        same = JobSubmission(
            **{k: getattr(existing.job, k) for k in JobSubmission.__dataclass_fields__}
        )
        # The owner is the cloud's to decide (held for an admin, then assigned): a resent
        # registration matches on everything else.
        same = replace(same, owner=sub.owner)
        if same == sub:
            return existing.job
        refilled = replace(same, size=sub.size, sha256=sub.sha256, pages=sub.pages)
        if refilled == sub and existing.job.state is JobState.HELD:
            with self._engine.begin() as conn:
                changed = conn.execute(
                    sa.update(jobs)
                    .where(
                        jobs.c.uuid == sub.uuid,
                        jobs.c.state == JobState.HELD.value,
                        jobs.c.document_stored.is_(False),
                    )
                    .values(
                        size=sub.size, sha256=sub.sha256, pages=sub.pages, updated_at=self._clock()
                    )
                ).rowcount
            if changed:
                log.info(
                    "job %s registered again by node %s with another document (%d bytes, %d "
                    "page(s)) before its upload: the job takes it",
                    sub.uuid,
                    sub.origin,
                    sub.size,
                    sub.pages,
                )
                return self._read(sub.uuid).job
        raise Conflict(409, f"job {sub.uuid} is already registered with different content") from exc

    def _registered(self, uuid: str) -> bool:
        with self._reads.connect() as conn:
            found = conn.execute(sa.select(jobs.c.uuid).where(jobs.c.uuid == uuid)).first()
        return found is not None

    def assign(self, caller: Principal, uuid: str, owner: str) -> Job:
        """Give a held job to the enabled user ``owner`` (an admin or operator, not at a
        terminal; a job held for an admin because its CUPS user is no pullprint user, or a job
        given to the wrong user): its owner and its transaction's user change, the reason says
        who assigned it. Then an automatic queue releases it as at registration. Idempotent for
        the same owner."""
        if not caller.is_staff or caller.terminal:
            raise Forbidden(403, f"{caller.describe()} may not assign jobs")
        if not self._users.exists(owner):
            raise NotFound(404, f"no enabled user {owner}")
        row = self._read(uuid)
        if row.job.owner == owner:
            return row.job
        note = f"assigned to {owner} by {caller.describe()}"
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state == JobState.HELD.value)
                .values(owner=owner, state_reason=note, updated_at=self._clock())
            )
            if done.rowcount == 1:
                conn.execute(
                    sa.update(transactions)
                    .where(transactions.c.job_uuid == uuid)
                    .values(user=owner)
                )
        if done.rowcount != 1:
            raise Conflict(409, f"job {uuid} is {self._read(uuid).job.state}, not held")
        log.info("job %s (of %r) %s", uuid, row.job.owner, note)
        row = self._read(uuid)
        if row.document_stored or row.job.storage is StorageKind.NODE:
            return self._release_automatic(row)
        return row.job

    def _release_automatic(self, row: _Row) -> Job:
        """Release the job to its queue's fixed printer if the queue is in automatic mode (not
        a job that waits for an admin to assign it)."""
        if row.job.owner == UNASSIGNED:
            return row.job
        with self._reads.connect() as conn:
            policy = policies.get(conn, policies.Scope.QUEUE, row.job.queue)
        if policy is None or policy.mode is not ReleaseMode.AUTOMATIC or not policy.printer:
            return row.job
        note = f"released automatically by queue {row.job.queue}"
        try:
            return self._release(row, policy.printer, {}, note, f"queue {row.job.queue}", "")
        except (Conflict, NotFound) as exc:
            log.warning(
                "job %s: automatic release to %s failed: %s", row.job.uuid, policy.printer, exc
            )
            return self._read(row.job.uuid).job

    def plan_upload(self, caller: Principal, uuid: str) -> UploadPlan:
        """What an upload of the job's document must match. Changes nothing."""
        row = self._read(uuid)
        if caller.role is Role.NODE and row.job.origin != caller.node:
            raise Forbidden(403, f"job {uuid} was registered by node {row.job.origin}")
        if row.job.storage is StorageKind.NODE:
            raise Conflict(
                409, f"job {uuid} keeps its document on node {row.job.origin}; do not upload it"
            )
        if row.job.state.is_final:
            raise Conflict(409, f"job {uuid} is {row.job.state}; its document is not needed")
        return UploadPlan(Expected(row.job.size, row.job.sha256), row.document_stored)

    def document_stored(self, uuid: str, stored: StoredDocument) -> None:
        """Keep the key of the document just stored and mark the job's document as stored;
        then release it if its queue is automatic. If the job ended meanwhile, or another
        upload was kept first, the new file is deleted (Conflict 409 for an ended job)."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state.in_(_NOT_FINAL))
                .values(document_stored=True)
            )
            kept = done.rowcount == 1 and self._documents.add_key(conn, uuid, stored)
        if not kept:
            self._documents.discard_file(uuid, stored)
        if done.rowcount != 1:
            raise Conflict(409, f"job {uuid} ended while its document arrived; it was not kept")
        row = self._read(uuid)
        if row.job.state is JobState.HELD:
            self._release_automatic(row)

    def download_url(self, caller: Principal, uuid: str) -> str:
        """A fresh signed download URL (path and query) for the node that claimed the job."""
        row = self._read(uuid)
        self._check_download(caller, row)
        return self._signer.sign(uuid, caller.node)

    def _check_download(self, caller: Principal, row: _Row) -> None:
        uuid = row.job.uuid
        if row.claimed_by != caller.node:
            raise Forbidden(403, f"job {uuid} was not claimed by node {caller.node}")
        if row.job.state not in (JobState.CLAIMED, JobState.PRINTING):
            raise Conflict(409, f"job {uuid} is {row.job.state}; its document is gone")
        if row.job.storage is StorageKind.NODE:
            raise Conflict(
                409, f"job {uuid} keeps its document on node {row.job.origin}; use that copy"
            )

    def open_document(
        self, caller: Principal, uuid: str, signed: SignedParams | None = None
    ) -> Download:
        """Open the document, decrypted, for the node that claimed the job, through a signed
        URL (used up here: single use). Changes nothing else."""
        row = self._read(uuid)
        self._signer.check(uuid, caller.node, signed)
        self._check_download(caller, row)
        try:
            fh = self._documents.open(uuid)
        except FileNotFoundError as exc:
            raise NotFound(404, f"the document of job {uuid} has not been uploaded") from exc
        return Download(fh, row.job.size, row.job.document_format)

    # -- release and claim --------------------------------------------------------------------

    def release(self, uuid: str, req: ReleaseRequest, caller: Principal | None = None) -> Job:
        """Release a held (or failed) job to a printer, for its owner or for a user the owner
        delegated to (directly or through a group): state released, the printer's price, who
        released it and the account charged recorded, a ``released`` event for the printer's
        node. The owner may name a shared account; a delegate's release is charged as the
        delegation says.

        Who vouches for ``req.user``: the PIN (with the admin token, e.g. the command line), or
        the caller's session (a signed-in user; at a terminal only to the terminal's printer).
        An operator (or signed-in admin) releases any job without a PIN."""
        session = caller if caller is not None and caller.user else None
        with self._reads.connect() as conn:  # one connection for what the release reads
            row = self._load(conn, uuid)
            if session is not None and session.terminal and req.printer != session.printer:
                raise Forbidden(
                    403, f"terminal {session.terminal} releases only to printer {session.printer}"
                )
            printer = self._printer(conn, req.printer)
            staff = session is not None and session.is_staff and session.user != row.job.owner
            if session is not None and not staff:
                req = replace(req, user=session.user)
            delegated = None
            if not staff and req.user != row.job.owner:
                delegated = groups.account_for(conn, row.job.owner, req.user)
            pin_hash = self._users.pin_hash(conn, req.user) if session is None else None
        if staff and session is not None:
            note = f"released by {session.role.value} {session.user}"
            who = f"{session.role.value} {session.user}"
            return self._release(row, printer, req.options, note, who, "")
        owner = row.job.owner
        account = req.account or ""
        if req.user != owner:
            if delegated is None:
                raise Forbidden(403, f"job {uuid} belongs to {owner}")
            if req.account is not None and req.account != delegated:
                raise Forbidden(
                    403, f"{owner} chose the account a delegate's release is charged to"
                )
            account = delegated
        if session is None and not self._users.verify_hash(pin_hash, req.pin, req.user):
            raise WrongSecret(403, f"wrong PIN for user {req.user}")
        return self._release(row, printer, req.options, "", req.user, account)

    def operator_release(self, caller: Principal, uuid: str, printer: str, operator: str) -> Job:
        """An operator released the job in CUPS (its web UI's "Release Job"): the job's origin
        node passes that on, with no PIN (CUPS authenticated the operator)."""
        with self._reads.connect() as conn:
            row = self._load(conn, uuid)
            found = self._printer(conn, printer)
        if caller.role is not Role.ADMIN and caller.node != row.job.origin:
            raise Forbidden(403, f"job {uuid} did not come from node {caller.node}")
        note = f"released by operator {operator} in CUPS"
        return self._release(row, found, {}, note, f"operator {operator}", "")

    def _await_document(self, row: _Row) -> _Row:
        """The job once its document has arrived. A node holds the CUPS job as soon as the job
        is registered and uploads the document right after (milliseconds), so a release can
        come between: it waits up to DOCUMENT_WAIT_SECONDS, then is refused (409)."""
        uuid = row.job.uuid
        deadline = time.monotonic() + DOCUMENT_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.02)
            row = self._read(uuid)
            if row.document_stored:
                return row
        raise Conflict(
            409,
            f"the document of job {uuid} has not arrived yet (waited "
            f"{DOCUMENT_WAIT_SECONDS:.0f} s for node {row.job.origin} to upload it); try again "
            "in a moment",
        )

    @staticmethod
    def _printer(conn: Connection, name: str) -> Printer | str:
        """The printer called ``name``, or its name when there is none (``_release`` refuses
        it, after the job's own checks)."""
        found = conn.execute(_PRINTER, {"b_name": name}).mappings().first()
        return printer_rows.from_row(found) if found is not None else name

    def _release(
        self,
        row: _Row,
        printer_name: str | Printer,
        options: dict[str, str],
        note: str,
        released_by: str = "",
        account: str = "",
    ) -> Job:
        """The release itself, in one database transaction: the job's row (if it is still
        releasable), its transaction's account, the accounting hold and the node's event; the
        job is read back in it. ``printer_name`` may be the printer already read."""
        uuid = row.job.uuid
        printer: Printer | None
        if isinstance(printer_name, Printer):
            printer = printer_name
        else:
            with self._reads.connect() as conn:
                printer = printer_rows.get(conn, printer_name)
        if printer is None:
            raise NotFound(404, f"no printer {printer_name}")
        if row.job.state.value not in _RELEASABLE:
            raise Conflict(409, f"job is {row.job.state}, not held")
        if row.job.owner == UNASSIGNED:
            raise Conflict(
                409, f"job {uuid} waits for an admin to assign its owner (POST .../assign)"
            )
        on_node = row.job.storage is StorageKind.NODE
        if on_node and printer.node != row.job.origin:
            raise Conflict(
                409,
                f"job {uuid} keeps its document on node {row.job.origin}; release it to a "
                f"printer of that node (printer {printer.name} is on node {printer.node})",
            )
        if not on_node and not row.document_stored:
            row = self._await_document(row)
        released: Job | None = None
        values = {
            "state": JobState.RELEASED.value,
            "state_reason": note,
            "printer": printer.name,
            "release_options": options,
            "price_micro": ledger.price_to_micro(printer.price_per_page),
            "released_by": released_by,
            "account": account,
            "finishing": None,  # the node of the printer makes the plan anew
            "updated_at": self._clock(),
        }
        with self._engine.begin() as conn:
            marked = _mark_released(conn, uuid, values)
            if marked is not None:
                # accounting: hold (or 402); it reads the account choice from the job
                ledger.reserve(conn, replace(row.job, account=account), printer, options)
                channel = self._notifier.commit_channel
                events.append_released(conn, uuid, printer, options, notify=channel)
                released = _from_row({**marked, "printer_node": printer.node}).job
        if released is None:
            raise Conflict(409, f"job is {self._read(uuid).job.state}, not held")
        self._notifier.notify_committed(printer.node)
        log.info("released job %s to printer %s (node %s)", uuid, printer.name, printer.node)
        return released

    def authenticate(
        self, printer_name: str, user: str, pin: str | None, fast: bool = False
    ) -> Authentication:
        """A user authenticated at a printer (card or PIN at its terminal). Per job, the
        printer's release mode applies if it has one, else the job's queue's: direct releases
        the user's held jobs printed within its ``direct_seconds``, fast releases all the
        user's held jobs, each with its own options; hold releases nothing and lists them.
        ``fast`` releases all of them whatever the modes (the terminal's "release all").
        ``pin`` None: the caller already authenticated the user (a terminal's card or
        username sign-in)."""
        if pin is not None and not self._users.verify(user, pin):
            raise WrongSecret(403, f"wrong PIN for user {user}")
        with self._reads.connect() as conn:
            printer = printer_rows.get(conn, printer_name)
            if printer is None:
                raise NotFound(404, f"no printer {printer_name}")
            at_printer = policies.get(conn, policies.Scope.PRINTER, printer_name)
            held = [
                _from_row(r)
                for r in conn.execute(
                    _select()
                    .where(jobs.c.owner == user, jobs.c.state == JobState.HELD.value)
                    .order_by(jobs.c.created_at)
                )
                .mappings()
                .all()
            ]
            queue_policies = {
                q: policies.get(conn, policies.Scope.QUEUE, q) for q in {r.job.queue for r in held}
            }
        now = self._clock()
        released: list[Job] = []
        still_held: list[Job] = []
        for row in held:
            policy = at_printer or queue_policies.get(row.job.queue)
            mode = ReleaseMode.FAST if fast else policy.mode if policy else ReleaseMode.HOLD
            due = mode is ReleaseMode.FAST or (
                mode is ReleaseMode.DIRECT
                and policy is not None
                and now - row.job.created_at <= policy.direct_seconds
            )
            if due:
                note = f"released by {mode} authentication of {user} at printer {printer_name}"
                try:
                    released.append(self._release(row, printer, {}, note, user, ""))
                    continue
                except Conflict as exc:
                    log.info("job %s not released at authentication: %s", row.job.uuid, exc)
            still_held.append(row.job)
        shown = ReleaseMode.FAST if fast else at_printer.mode if at_printer else ReleaseMode.HOLD
        log.info(
            "%s authenticated at printer %s (%s): released %d job(s)",
            user,
            printer_name,
            shown,
            len(released),
        )
        return Authentication(user, printer_name, shown, released, still_held)

    def claim(self, caller: Principal, uuid: str) -> Job:
        """The node takes a job released to one of its printers: state claimed. Exactly one
        claim wins; every other is a Conflict (409). On PostgreSQL the job's row is locked
        with ``FOR UPDATE SKIP LOCKED``: a concurrent claim does not wait, it loses. The answer
        carries a signed ``download_url`` (cloud storage)."""
        row = self._read(uuid)
        if row.job.state is not JobState.RELEASED:
            raise Conflict(409, f"job {uuid} is {row.job.state}, not released")
        if row.printer_node != caller.node:
            raise Conflict(
                409, f"job {uuid} is released to printer {row.job.printer} of another node"
            )
        with self._engine.begin() as conn:
            locked = conn.execute(
                sa.select(jobs.c.uuid)
                .where(
                    jobs.c.uuid == uuid,
                    jobs.c.state == JobState.RELEASED.value,
                    jobs.c.printer == row.job.printer,
                )
                .with_for_update(skip_locked=True)
            ).first()
            done = None
            if locked is not None:
                done = conn.execute(
                    sa.update(jobs)
                    .where(
                        jobs.c.uuid == uuid,
                        jobs.c.state == JobState.RELEASED.value,
                        jobs.c.printer == row.job.printer,
                    )
                    .values(
                        state=JobState.CLAIMED.value,
                        claimed_by=caller.node,
                        updated_at=self._clock(),
                    )
                )
        if done is None or done.rowcount != 1:
            raise Conflict(409, f"job {uuid} is {self._read(uuid).job.state}, not released")
        log.info("node %s claimed job %s", caller.node, uuid)
        job = self._read(uuid).job
        if job.storage is StorageKind.CLOUD:
            job = replace(job, download_url=self._signer.sign(uuid, caller.node))
        return job

    # -- progress and cancel ------------------------------------------------------------------

    def record_plan(self, caller: Principal, uuid: str, steps: tuple[PlanStep, ...]) -> Job:
        """Keep the finishing plan the node that claimed the job made for its printer (shown
        to the user with the job). Replaces an earlier plan (a new release, another printer);
        idempotent."""
        row = self._read(uuid)
        if row.claimed_by != caller.node:
            raise Forbidden(403, f"job {uuid} was not claimed by node {caller.node}")
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid)
                .values(finishing=[s.to_json() for s in steps], updated_at=self._clock())
            )
        return self._read(uuid).job

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
                        .values(state_reason=req.reason, updated_at=self._clock())
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
            "updated_at": self._clock(),
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
                ledger.release_hold(conn, uuid, self._clock())  # accounting: give the hold back
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
        job, now = row.job, self._clock()
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
        the origin node, document deleted. Idempotent for a canceled job. A signed-in user
        cancels only their own jobs (a delegate may release, not cancel); operators any."""
        row = self._read(uuid)
        self._check_visible(caller, row)
        if caller.role is Role.USER:
            req = replace(req, user=caller.user)
        job = row.job
        if req.user is not None and req.user != job.owner:
            raise Forbidden(403, f"job {uuid} belongs to {job.owner}")
        if job.state is JobState.CANCELED:
            return job
        if job.state.value not in _CANCELABLE:
            raise Conflict(409, f"job {uuid} is already {job.state}")
        who = req.user or caller.describe()
        now = self._clock()
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
                events.lock_nodes(conn, self._cancel_targets(row))
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
        """After an end state is committed: delete the document (a printed one only when
        ``keep_printed_seconds`` is 0; the retention sweep deletes it later otherwise), wake
        the origin node."""
        if kind is not EventKind.FINISHED or self._keep_printed_seconds <= 0:
            self._documents.shred(job.uuid)
        self._notifier.notify(job.origin)
        log.debug("sent %s for job %s to node %s", kind, job.uuid, job.origin)

    # -- retention ----------------------------------------------------------------------------

    def expire(self, uuid: str) -> bool:
        """Expire one unprinted job (held, released and not claimed, or failed): state expired,
        transaction canceled, a ``canceled`` event (state expired) to its origin node so the
        node cancels the CUPS job, document and key deleted. False if it was not expirable."""
        row = self._read(uuid)
        job = row.job
        expirable = (*_RELEASABLE, JobState.RELEASED.value)
        now = self._clock()
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.uuid == uuid, jobs.c.state.in_(expirable))
                .values(
                    state=JobState.EXPIRED.value,
                    state_reason="expired unprinted (retention)",
                    document_stored=False,
                    updated_at=now,
                )
            )
            if done.rowcount == 1:
                ledger.cancel(conn, uuid, now)
                events.append_job_state(
                    conn,
                    EventKind.CANCELED,
                    job.origin,
                    uuid,
                    job.cups_job_id,
                    job.cups_job_uuid,
                    JobState.EXPIRED,
                )
        if done.rowcount != 1:
            return False
        self._finished(job, EventKind.CANCELED)
        log.info("job %s of %s expired unprinted", uuid, job.owner)
        return True

    def sweep(self, now: float | None = None) -> SweepResult:
        """One retention pass: expire unprinted jobs older than ``expire_seconds``, delete
        printed documents older than ``keep_printed_seconds``, forget used download nonces
        that have expired. Idempotent; safe to run in several server processes at once."""
        now = self._clock() if now is None else now
        unprinted = (*_RELEASABLE, JobState.RELEASED.value)
        final = tuple(s.value for s in FINAL_STATES)
        with self._reads.connect() as conn:
            old = conn.execute(
                sa.select(jobs.c.uuid).where(
                    jobs.c.state.in_(unprinted), jobs.c.created_at < now - self._expire_seconds
                )
            ).all()
            ended = conn.execute(
                sa.select(jobs.c.uuid)
                .select_from(jobs.join(document_keys, document_keys.c.job_uuid == jobs.c.uuid))
                .where(
                    jobs.c.state.in_(final),
                    jobs.c.updated_at <= now - self._keep_printed_seconds,
                )
            ).all()
        expired = sum(1 for r in old if self.expire(str(r.uuid)))
        deleted = sum(1 for r in ended if self._documents.shred(str(r.uuid)))
        pruned = self._signer.prune(now)
        if expired or deleted:
            log.info("retention: %d job(s) expired, %d document(s) deleted", expired, deleted)
        return SweepResult(expired, deleted, pruned)

"""What the ``pullprint`` backend does with one CUPS job.

First run: receive the document whole (or not at all), register it with the cloud through the
durable outbox, and hold the CUPS job (exit 3). Later runs happen when the CUPS job is released:
by the node after a finished print (exit 0, the CUPS job completes), after a cancel in the cloud
(exit 5, the CUPS job is canceled), or by an operator in the CUPS web UI (held again, with an INFO
line that says how to release it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pullprint.backend.spool import CupsJobRecord, Spool, own_like_parent
from pullprint.cloudsync.outbox import Claim, Outbox, OutboxEntry, Registrar
from pullprint.config import NodeConfig
from pullprint.cups.protocol import BackendExit, CancelFlag, JobArgs, StatusWriter, Terminated
from pullprint.errors import CloudError, CloudRefused, CloudUnavailable, DocumentError
from pullprint.filters.document import inspect_pdf
from pullprint.identity.names import map_user_name, rules_from
from pullprint.model import Job, JobState, JobSubmission

log = logging.getLogger(__name__)

CHUNK = 1 << 16


class Cloud(Registrar, Protocol):
    def get_job(self, uuid: str) -> Job: ...

    def operator_release(self, uuid: str, printer: str, operator: str) -> Job: ...


UploadLater = Callable[[Outbox, Claim, OutboxEntry], None]


@dataclass(frozen=True)
class BackendContext:
    """``upload_later``: given, a first run registers the job, holds it and hands its claimed
    outbox entry to this to upload the document after the exit (submitd); None: the run
    uploads before it exits."""

    config: NodeConfig
    queue: str
    status: StatusWriter
    cancel: CancelFlag
    cloud: Cloud
    upload_later: UploadLater | None = None


class _Recorder:
    """The cloud for one outbox send, keeping the job the registration answered; ``ahead``:
    the registration was sent already (:func:`first_run`), its answer is the first one."""

    def __init__(self, cloud: Cloud, ahead: Future[Job] | None = None) -> None:
        self.cloud = cloud
        self.job: Job | None = None
        self._ahead = ahead

    def register(self, submission: JobSubmission) -> Job:
        ahead, self._ahead = self._ahead, None
        self.job = self.cloud.register(submission) if ahead is None else ahead.result()
        return self.job

    def upload_document(self, uuid: str, path: Path) -> None:
        self.cloud.upload_document(uuid, path)


def cups_job_uuid(args: JobArgs, queue: str) -> str:
    """The CUPS job's own uuid (from argv[5]), or a key made from what CUPS gives when absent."""
    value = args.options.get("job-uuid")
    if value:
        return value
    created = args.options.get("time-at-creation", "0")
    return f"{queue}-{args.job_id}-{created}"


@dataclass
class Received:
    """A document written beside its place in the spool (``part``), not yet durable: the caller
    :meth:`keep` s it (fsync, then rename to ``dest``) or :meth:`discard` s it."""

    part: Path
    dest: Path
    size: int
    sha256: str
    _file: BinaryIO | None

    def keep(self) -> None:
        """Make the document durable under its name (fsync, owner, rename). Idempotent."""
        if self._file is None:
            return
        with self._file:
            os.fsync(self._file.fileno())
        self._file = None
        own_like_parent(self.part)
        self.part.replace(self.dest)

    def discard(self) -> None:
        """Remove the written document (idempotent; a kept one stays)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.part.unlink(missing_ok=True)


def receive(source: BinaryIO, dest: Path, limit: int, cancel: CancelFlag) -> Received:
    """Copy ``source`` whole into a temp file beside ``dest``; returns it, not yet durable.

    On SIGTERM (``cancel``) or a document over ``limit`` bytes the temp file is removed and
    Terminated or DocumentError raised.
    """
    part = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    size = 0
    out = part.open("wb")
    try:
        while True:
            with cancel.interruptible():
                chunk = source.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise DocumentError(
                    f"document larger than the limit of {limit} bytes (node.max_document_bytes)"
                )
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        if cancel.is_set():
            raise Terminated
    except BaseException:
        out.close()
        part.unlink(missing_ok=True)
        raise
    return Received(part, dest, size, digest.hexdigest(), out)


def drain(source: BinaryIO) -> None:
    """Read and drop the rest of the input (a re-run must consume what CUPS sends)."""
    while source.read(CHUNK):
        pass


def run_job(
    ctx: BackendContext, args: JobArgs, source: BinaryIO, *, resume: bool = False
) -> BackendExit:
    """Handle one run of the backend for a job; returns the exit code for cupsd.

    ``resume``: this run is a first run that submitd took over and did not finish (it died
    before answering): a record already "held" was made by that first run, not by an earlier
    one, so its registration is finished (:func:`finish_first_run`), never taken for a release.
    """
    spool = Spool(ctx.config.spool_dir).ensure()
    key = cups_job_uuid(args, ctx.queue)
    record = spool.load_record(key)
    if record is not None and record.stage == "held":
        drain(source)
        if resume:
            return finish_first_run(ctx, spool, record, args)
        return rerun(ctx, spool, record)
    # One worker beside this thread: it writes the job's first record while the document comes
    # in, then sends the registration while this thread makes the job durable (first_run).
    with ThreadPoolExecutor(1, thread_name_prefix="pullprint-register") as worker:
        noted = None
        if record is None:
            record = CupsJobRecord(str(uuidlib.uuid4()), args.job_id, key, ctx.queue, "receiving")
            noted = worker.submit(spool.save_record, record)
        return first_run(ctx, spool, record, args, source, worker, noted)


def first_run(
    ctx: BackendContext,
    spool: Spool,
    record: CupsJobRecord,
    args: JobArgs,
    source: BinaryIO,
    worker: Executor,
    noted: Future[None] | None,
) -> BackendExit:
    """Receive the document, then register the job (on ``worker``, after ``noted``, the first
    record, is on disk) while the document, the outbox entry and the "held" record are made
    durable here; hold the job once both are done.

    The cloud never has a job the spool has no record of: a crash after the registration leaves
    the "receiving" record, so cupsd's re-run registers the same uuid again (the cloud takes
    the re-run's document size, hash and pages until the document is uploaded: the filter's
    output differs in its /ID) or the node cancels it when CUPS drops the job."""
    status = ctx.status

    def refuse(say: Callable[[str], None], message: str) -> BackendExit:
        if noted is not None:
            noted.result()  # on disk before it is removed
        spool.record_path(record.cups_job_uuid).unlink(missing_ok=True)
        say(message)
        return BackendExit.FAILED

    document = spool.document_path(record.uuid)
    try:
        received = receive(source, document, ctx.config.max_document_bytes, ctx.cancel)
    except Terminated:
        return refuse(status.info, "pullprint: stopped while receiving; nothing was registered")
    except DocumentError as exc:
        return refuse(status.error, f"pullprint: job refused: {exc}")
    try:
        try:
            pages = inspect_pdf(received.part).pages
        except DocumentError as exc:
            return refuse(status.error, f"pullprint: job refused: {exc}")
        options = {
            k: v
            for k, v in args.options.items()
            if k not in ("job-uuid", "time-at-creation", "time-at-processing", "job-password")
        }
        submission = JobSubmission(
            uuid=record.uuid,
            owner=map_user_name(args.user, rules_from(ctx.config)),
            title=args.title,
            copies=args.copies,
            options=options,
            pages=pages,
            size=received.size,
            sha256=received.sha256,
            queue=ctx.queue,
            origin=ctx.config.name,
            cups_job_id=args.job_id,
            cups_job_uuid=record.cups_job_uuid,
        )
        ahead = worker.submit(_register_after, noted, ctx.cloud, submission)
        received.keep()
        outbox = Outbox(spool.outbox, spool.kept)
        claim = outbox.put(submission, document)
        try:
            if noted is not None:
                noted.result()  # the first record is written before the one that replaces it
            spool.save_record(
                CupsJobRecord(record.uuid, args.job_id, record.cups_job_uuid, ctx.queue, "held")
            )
        except BaseException:
            claim.release()  # else a long-lived submitd would keep the entry from everyone
            raise
    finally:
        received.discard()  # unless kept: a refused or failed run leaves no document behind
    entry = OutboxEntry(submission, document)
    return send_first_run(ctx, spool, record, args, outbox, claim, entry, ahead)


def finish_first_run(
    ctx: BackendContext, spool: Spool, record: CupsJobRecord, args: JobArgs
) -> BackendExit:
    """Finish a first run that stopped after the job was put in the outbox (submitd died): send
    its outbox entry if it is still there (registration and upload are idempotent), else the
    job was sent already: hold it. Registers the job at most once in the cloud."""
    outbox = Outbox(spool.outbox, spool.kept)
    entry_path = outbox.folder / f"{record.uuid}.json"
    for path, entry in outbox.entries():
        claim = outbox.claim(path) if path == entry_path else None
        if claim is not None:  # else not this job's, or the node's outbox loop is sending it
            return send_first_run(ctx, spool, record, args, outbox, claim, entry)
    ctx.status.info(f"pullprint: held; release it at a printer (job {record.uuid})")
    return BackendExit.HOLD


def _register_after(noted: Future[None] | None, cloud: Cloud, submission: JobSubmission) -> Job:
    """Register ``submission`` once ``noted`` (the job's first record) is on disk."""
    if noted is not None:
        noted.result()
    return cloud.register(submission)


def send_first_run(
    ctx: BackendContext,
    spool: Spool,
    record: CupsJobRecord,
    args: JobArgs,
    outbox: Outbox,
    claim: Claim,
    entry: OutboxEntry,
    ahead: Future[Job] | None = None,
) -> BackendExit:
    """Send a first run's claimed outbox entry to the cloud and say how the job is held (exit
    3), or that the cloud refused it (exit 1, the job and its spool files are dropped). With
    ``ctx.upload_later`` the document's upload is handed to it, with the claim. ``ahead``: the
    registration, sent already; its answer is taken as the send's."""
    status = ctx.status
    submission = entry.submission
    pages, owner = submission.pages, submission.owner
    who = f"CUPS user '{args.user}'" + (f" (pullprint user {owner})" if owner != args.user else "")
    sent = _Recorder(ctx.cloud, ahead)
    later = ctx.upload_later
    handed = False
    try:
        if outbox.send(claim.path, entry, sent, upload=later is None) and later is not None:
            later(outbox, claim, entry)  # it releases the claim
            handed = True
    except CloudUnavailable as exc:
        log.info("cloud unavailable for job %s: %s", record.uuid, exc)
        status.info(
            f"pullprint: held ({pages} page(s)); the release service is unreachable, the job "
            "waits in the outbox and is registered when it answers"
        )
        return BackendExit.HOLD
    except CloudRefused as exc:
        # One line, shown by CUPS as the job's reason; the job is aborted (abort-job policy).
        status.error(f"pullprint: job of {who} refused by the release service: {exc.message}")
        spool.forget(record)
        return BackendExit.FAILED
    finally:
        if not handed:
            claim.release()
    if sent.job is not None and sent.job.owner == "":
        # A WARNING: cupsd keeps it in its error_log (an INFO is gone once the job is held).
        status.warning(
            f"pullprint: held for an admin ({pages} page(s)): {who} is not a pullprint user; "
            f"an admin assigns the job to a user (job {record.uuid})"
        )
        return BackendExit.HOLD
    status.info(f"pullprint: held ({pages} page(s)); release it at a printer (job {record.uuid})")
    status.attr(job_impressions=pages * submission.copies)
    return BackendExit.HOLD


def rerun(ctx: BackendContext, spool: Spool, record: CupsJobRecord) -> BackendExit:
    """The CUPS job was released again: finish it, cancel it, or hold it again."""
    status = ctx.status
    done = spool.load_done(record.uuid)
    if done is None:
        try:
            job = ctx.cloud.get_job(record.uuid)
        except CloudError as exc:
            status.info(f"pullprint: held; cannot ask the release service now ({exc})")
            return BackendExit.HOLD
        state, impressions = job.state, job.impressions
    else:
        state, impressions = done.state, done.impressions
    if state is JobState.COMPLETED:
        if impressions:
            status.pages(impressions)
        status.info(f"pullprint: printed ({impressions or 0} impression(s))")
        spool.forget(record)
        return BackendExit.OK
    if state is JobState.FAILED:
        status.error("pullprint: printing failed; see the job in pullprint for the reason")
        spool.forget(record)
        return BackendExit.FAILED
    if state in (JobState.CANCELED, JobState.EXPIRED):
        status.info(f"pullprint: job {state.value} in the release service")
        spool.forget(record)
        return BackendExit.CANCEL
    if state is JobState.HELD:
        return operator_release(ctx, record)
    status.info(f"pullprint: held; the job is {state.value} in the release service")
    return BackendExit.HOLD


def operator_release(ctx: BackendContext, record: CupsJobRecord) -> BackendExit:
    """An operator pressed "Release Job" in CUPS on a held job: release it to the queue's
    release printer when one is set (the job prints there and the node then completes the CUPS
    job), else hold it again with a message that says how to release it."""
    printer = ctx.config.release_printer
    if not printer:
        how = (
            f"pullprint: job {record.uuid} held again; release it with: pullprint release "
            f"{record.uuid} --printer NAME, or at a printer (Release Job in CUPS needs "
            "node.release_printer, which is not set)"
        )
        ctx.status.info(how)  # shown while the backend runs
        ctx.status.warning(how)  # kept in cupsd's error_log once the job is held again
        return BackendExit.HOLD
    try:
        ctx.cloud.operator_release(record.uuid, printer, "cups")
    except CloudError as exc:
        ctx.status.info(f"pullprint: held again; release to {printer} failed: {exc}")
        return BackendExit.HOLD
    ctx.status.info(f"pullprint: released by an operator to {printer}")
    return BackendExit.HOLD

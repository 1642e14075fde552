"""The node: pulls released jobs from the cloud, prints them, and keeps CUPS in step.

Three loops, each a thread, each with a one-pass method for tests (the arq "burst" idea):
- events: long-poll the cloud (no fixed sleep); ``released`` -> deliver, ``canceled`` -> cancel the
  CUPS job (and a delivery in progress), ``finished`` -> finish the CUPS job through the backend.
- cups: follow the queue's job events in cupsd; a job canceled there is canceled in the cloud.
- outbox: registrations the backend could not send are sent whenever the cloud answers.
Deliveries run in a pool, one at a time per printer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from pullprint.backend.spool import Spool
from pullprint.cloudsync.client import CloudClient
from pullprint.cloudsync.outbox import Outbox
from pullprint.config import NodeConfig
from pullprint.cups.jobs import CupsJobs, CupsJobState, CupsUnavailable
from pullprint.daemon.ticket import TicketError, build_ticket
from pullprint.errors import CloudError, CloudUnavailable, Conflict, IPPError, NotFound
from pullprint.model import EventKind, JobState, NodeEvent, PrintResult

log = logging.getLogger(__name__)

MAX_BACKOFF = 2.0  # seconds between tries while the cloud or cupsd does not answer


class Deliver(Protocol):
    def __call__(
        self,
        uri: str,
        document: Path,
        *,
        job_name: str,
        user: str,
        job_attributes: dict[str, str | int],
        cancel: threading.Event | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> PrintResult: ...


def default_deliver() -> Deliver:
    from pullprint.daemon.ipp_delivery import deliver_ipp

    return deliver_ipp


class Node:
    def __init__(
        self,
        config: NodeConfig,
        cloud: CloudClient,
        cups: CupsJobs | None = None,
        deliver: Deliver | None = None,
        workers: int = 8,
    ) -> None:
        self.config = config
        self.cloud = cloud
        self.cups = cups
        self.deliver = deliver or default_deliver()
        self.spool = Spool(config.spool_dir).ensure()
        self.work = config.spool_dir / "print"
        self.work.mkdir(mode=0o700, exist_ok=True)
        self.outbox = Outbox(self.spool.outbox)
        self.cursor_path = config.spool_dir / "node-cursor"
        self.cursor = self._load_cursor()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self.printer_locks: dict[str, threading.Lock] = {}
        self.active: dict[str, threading.Event] = {}
        self.futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self._cups_sub: int | None = None
        self._cups_seq = 0

    # -- the events loop ------------------------------------------------------------------
    def _load_cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _save_cursor(self, cursor: int) -> None:
        tmp = self.cursor_path.with_name(".node-cursor.tmp")
        tmp.write_text(str(cursor))
        tmp.replace(self.cursor_path)
        self.cursor = cursor

    def poll_once(self, timeout: float | None = None) -> int:
        """One long-poll and the dispatch of what it brought; returns the number of events."""
        wait = self.config.poll_timeout if timeout is None else timeout
        events, cursor = self.cloud.events(self.cursor, wait)
        for event in events:
            self.handle(event)
        if cursor != self.cursor:
            self._save_cursor(cursor)
        return len(events)

    def handle(self, event: NodeEvent) -> None:
        if event.kind is EventKind.RELEASED:
            future = self.pool.submit(self.deliver_job, event)
            with self._lock:
                self.futures.add(future)
            future.add_done_callback(self._forget_future)
        elif event.kind is EventKind.CANCELED:
            self.cancel_local(event)
        elif event.kind is EventKind.FINISHED:
            self.finish_cups_job(event)

    def _forget_future(self, future: Future[None]) -> None:
        with self._lock:
            self.futures.discard(future)
        exc = future.exception()
        if exc is not None:
            log.error("delivery failed unexpectedly: %r", exc)

    # -- delivery -------------------------------------------------------------------------
    def _printer_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self.printer_locks.setdefault(name, threading.Lock())

    def deliver_job(self, event: NodeEvent) -> None:
        """Claim, download, print, follow to the end state, report. Loses nothing on errors."""
        printer = event.printer
        if printer is None:
            log.error("release event %s without a printer", event.id)
            return
        uuid = event.job_uuid
        with self._printer_lock(printer.name):
            try:
                job = self.cloud.claim(uuid)
            except (Conflict, NotFound) as exc:
                log.info("job %s not claimed: %s", uuid, exc)
                return
            cancel = threading.Event()
            with self._lock:
                self.active[uuid] = cancel
            path = self.work / f"{uuid}.pdf"
            reported: set[str] = set()

            def on_state(state: str) -> None:
                # Printing is reported once the printer has the job, not before: no round trip
                # to the cloud stands between the release and the printer's first byte.
                if state == "processing" and not reported:
                    reported.add(state)
                    try:
                        self.cloud.progress(uuid, JobState.PRINTING)
                    except CloudError as exc:
                        log.info("job %s: printing not reported: %s", uuid, exc)

            try:
                ticket = build_ticket(job.options, job.copies, event.options)
                self.cloud.download(uuid, path)
                log.info("job %s: printing on %s (%s)", uuid, printer.name, printer.uri)
                result = self.deliver(
                    printer.uri,
                    path,
                    job_name=f"pullprint-{uuid}",
                    user=job.owner,
                    job_attributes=ticket,
                    cancel=cancel,
                    on_state=on_state,
                )
            except TicketError as exc:
                result = PrintResult(JobState.FAILED, None, reason=str(exc))
            except IPPError as exc:
                result = PrintResult(JobState.FAILED, None, reason=f"printer: {exc}")
            finally:
                path.unlink(missing_ok=True)
                with self._lock:
                    self.active.pop(uuid, None)
            log.info("job %s: %s (%s impressions)", uuid, result.state.value, result.impressions)
            self._report(uuid, result)

    def _report(self, uuid: str, result: PrintResult) -> None:
        """Tell the cloud how the print ended, retrying while it is unavailable."""
        delay = 0.2
        while True:
            try:
                self.cloud.progress(
                    uuid, result.state, result.impressions, result.sheets, result.reason
                )
                return
            except CloudUnavailable as exc:
                if self.stop_event.wait(delay):
                    log.error("job %s: end state %s not reported: %s", uuid, result.state, exc)
                    return
                delay = min(delay * 2, 10.0)
            except CloudError as exc:
                log.error("job %s: cloud refused the end state: %s", uuid, exc)
                return

    # -- CUPS in step ---------------------------------------------------------------------
    def cancel_local(self, event: NodeEvent) -> None:
        """The job was canceled in the cloud: stop its delivery and cancel its CUPS job."""
        with self._lock:
            active = self.active.get(event.job_uuid)
        if active is not None:
            active.set()
        record = self.spool.find_by_uuid(event.job_uuid)
        if record is None or self.cups is None:
            return
        self.spool.mark_done(record.uuid, JobState.CANCELED, None)
        try:
            self.cups.cancel(record.cups_job_id)
        except CupsUnavailable as exc:
            log.warning(
                "job %s: CUPS job %d not canceled: %s", record.uuid, record.cups_job_id, exc
            )
            return
        self.spool.forget(record)

    def finish_cups_job(self, event: NodeEvent) -> None:
        """The job ended in the cloud: let the backend finish the CUPS job (completed/aborted)."""
        record = self.spool.find_by_uuid(event.job_uuid)
        if record is None or self.cups is None:
            return
        state = event.state or JobState.COMPLETED
        if state in (JobState.CANCELED, JobState.EXPIRED):
            self.cancel_local(event)
            return
        impressions = None
        try:
            impressions = self.cloud.get_job(event.job_uuid).impressions
        except CloudError as exc:
            log.info("job %s: impressions unknown: %s", event.job_uuid, exc)
        self.spool.mark_done(record.uuid, state, impressions)
        try:
            self.cups.release(record.cups_job_id)
        except CupsUnavailable as exc:
            log.warning(
                "job %s: CUPS job %d not released: %s", record.uuid, record.cups_job_id, exc
            )

    def cups_once(self) -> int:
        """Read the queue's job events from cupsd (resubscribing and resyncing after a restart);
        cancel in the cloud what was canceled in CUPS. Returns the number of events seen."""
        if self.cups is None:
            return 0
        if self._cups_sub is None:
            self._cups_sub = self.cups.subscribe()
            self._cups_seq = 0
            self.resync()
        try:
            events, self._cups_seq = self.cups.notifications(self._cups_sub, self._cups_seq)
        except CupsUnavailable:
            self._cups_sub = None
            raise
        for job_id, state in events:
            if state in (CupsJobState.CANCELED, CupsJobState.ABORTED):
                self.cups_job_ended(job_id)
        return len(events)

    def resync(self) -> None:
        """Compare every job the spool knows with cupsd's Get-Jobs (events may have been lost)."""
        if self.cups is None:
            return
        by_uuid = {j.uuid: j for j in self.cups.jobs()}
        for record in self.spool.records():
            job = by_uuid.get(record.cups_job_uuid)
            if job is not None and job.state in (CupsJobState.CANCELED, CupsJobState.ABORTED):
                self.cups_job_ended(job.job_id)

    def cups_job_ended(self, cups_job_id: int) -> None:
        """A CUPS job of ours was canceled or aborted in CUPS: cancel it in the cloud."""
        record = next((r for r in self.spool.records() if r.cups_job_id == cups_job_id), None)
        if record is None:
            return
        done = self.spool.load_done(record.uuid)
        if done is None or done.state not in (JobState.CANCELED, JobState.EXPIRED):
            try:
                self.cloud.cancel(record.uuid, reason="canceled in CUPS")
            except Conflict:
                pass
            except NotFound:
                log.info("job %s: canceled in CUPS before it was registered", record.uuid)
                self._drop_outbox(record.uuid)
            except CloudUnavailable as exc:
                log.info("job %s: cancel not sent yet (cloud unavailable): %s", record.uuid, exc)
                return
        log.info("job %s: canceled in CUPS (job %d)", record.uuid, cups_job_id)
        self.spool.forget(record)

    def _drop_outbox(self, uuid: str) -> None:
        for path, entry in self.outbox.entries():
            if entry.submission.uuid == uuid:
                path.unlink(missing_ok=True)
                entry.document.unlink(missing_ok=True)

    # -- outbox ---------------------------------------------------------------------------
    def outbox_once(self) -> int:
        """Send waiting registrations; returns how many are still waiting."""
        if not len(self.outbox):
            return 0
        return self.outbox.flush(self.cloud).waiting

    # -- running --------------------------------------------------------------------------
    def _loop(self, name: str, step: Callable[[], object], idle: float) -> None:
        backoff = idle
        while not self.stop_event.is_set():
            try:
                step()
                backoff = idle
            except (CloudError, CupsUnavailable) as exc:
                log.warning("%s: %s (retrying in %.1f s)", name, exc, backoff)
                backoff = min(max(backoff, 0.1) * 2, MAX_BACKOFF)
            except Exception:
                log.exception("%s: unexpected error", name)
                backoff = min(max(backoff, 0.1) * 2, MAX_BACKOFF)
            self.stop_event.wait(backoff)

    def run(self, drain_timeout: float = 30.0) -> None:
        """Run until :meth:`stop`; then stop claiming and let running deliveries finish."""
        threads = [
            threading.Thread(
                target=self._loop, args=("events", self.poll_once, 0.0), name="events", daemon=True
            ),
            threading.Thread(
                target=self._loop,
                args=("outbox", self.outbox_once, self.config.outbox_retry_seconds),
                name="outbox",
                daemon=True,
            ),
        ]
        if self.cups is not None:
            threads.append(
                threading.Thread(
                    target=self._loop, args=("cups", self.cups_once, 0.25), name="cups", daemon=True
                )
            )
        for thread in threads:
            thread.start()
        log.info("node %s running (cloud %s)", self.config.name, self.config.cloud_url)
        self.stop_event.wait()
        deadline = time.monotonic() + drain_timeout
        with self._lock:
            pending = list(self.futures)
        for future in pending:
            future.exception(timeout=max(0.0, deadline - time.monotonic()))
        self.pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self.stop_event.set()

"""The node: pulls released jobs from the cloud, prints them, and keeps CUPS in step.

Three loops, each a thread, each with a one-pass method for tests (the arq "burst" idea):
- events: long-poll the cloud (no fixed sleep); ``released`` -> deliver, ``canceled`` -> cancel the
  CUPS job (and a delivery in progress), ``finished`` -> finish the CUPS job through the backend.
- cups: follow the queue's job events in cupsd; a job canceled there is canceled in the cloud.
- outbox: registrations the backend could not send are sent whenever the cloud answers.
Deliveries run in a pool, one at a time per printer.

Delivery is journaled (:mod:`pullprint.daemon.journal`): claimed -> downloaded -> sending -> sent
-> monitoring -> done, each step committed before it is acted on. On start every unfinished job
resumes where it stood. A job that may already be at the printer is never sent blindly again:
over IPP the printer is asked (Get-Jobs, the job name carries the job's UUID) and the job is
followed or sent (exactly once); over LPR and raw 9100 nothing can be asked, so a job that died
while sending is reported FAILED "unknown whether it printed" (at most once).
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path

from pullprint.backend.spool import Spool
from pullprint.cloudsync.client import CloudClient
from pullprint.cloudsync.outbox import Outbox
from pullprint.config import NodeConfig
from pullprint.cups.jobs import CupsJobs, CupsJobState, CupsUnavailable
from pullprint.daemon import discovery, tls
from pullprint.daemon.delivery import (
    download_document,
    ipp_capabilities,
    protocol_of,
    raw_printer_capabilities,
)
from pullprint.daemon.ipp_delivery import (
    DeliveryAbandoned,
    deliver_ipp,
    find_job_by_name,
    follow_ipp,
)
from pullprint.daemon.jetdirect import send_socket
from pullprint.daemon.journal import Journal, JournalEntry
from pullprint.daemon.lpd import LpdError, send_lpd
from pullprint.daemon.metrics import Metrics, serve
from pullprint.daemon.snmp import SnmpError, read_counter, wait_settled
from pullprint.errors import (
    CloudError,
    CloudUnavailable,
    Conflict,
    IPPError,
    NotFound,
    PrinterUnavailable,
    PullprintError,
)
from pullprint.filters.capabilities import PrinterCapabilities
from pullprint.filters.engine import FinishedDocument, apply_plan
from pullprint.filters.options import FinishingOptions
from pullprint.filters.plan import FinishingPlan, make_plan
from pullprint.ipp.errors import IppPrinterBusy
from pullprint.model import (
    EventKind,
    Job,
    JobState,
    NodeEvent,
    PlanStep,
    PrintResult,
    StorageKind,
)

log = logging.getLogger(__name__)

MAX_BACKOFF = 2.0  # seconds between tries while the cloud or cupsd does not answer
UNKNOWN = "unknown whether it printed"
CAPABILITIES_SECONDS = 60.0  # a printer's Get-Printer-Attributes answer is reused this long
_ACTIVE_CLOUD_STATES = (JobState.CLAIMED, JobState.PRINTING)


def _stored_result(entry: JournalEntry) -> PrintResult:
    """The end state journaled before a crash, to report again. Pure."""
    return PrintResult(
        JobState(entry.state), entry.impressions, entry.sheets, entry.printer_job_id, entry.reason
    )


def job_name_for(uuid: str) -> str:
    """The job name the printer sees: carries the UUID so a restarted node can find it."""
    return f"pullprint-{uuid}"


class Node:
    def __init__(
        self,
        config: NodeConfig,
        cloud: CloudClient,
        cups: CupsJobs | None = None,
        workers: int = 8,
    ) -> None:
        self.config = config
        self.cloud = cloud
        self.cups = cups
        self.spool = Spool(config.spool_dir).ensure()
        self.work = config.spool_dir / "print"
        self.work.mkdir(mode=0o700, exist_ok=True)
        self.outbox = Outbox(self.spool.outbox, self.spool.kept)
        self.journal = Journal(config.spool_dir)
        self.metrics = Metrics(lambda: len(self.outbox))
        self.cursor_path = config.spool_dir / "node-cursor"
        self.cursor = self._load_cursor()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self.printer_locks: dict[str, threading.Lock] = {}
        self.active: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self.futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self.abandon = threading.Event()  # set when the drain timeout is over
        self._cups_sub: int | None = None
        self._cups_seq = 0
        self._metrics_server: ThreadingHTTPServer | None = None
        self._capabilities: dict[tuple[str, str], tuple[float, PrinterCapabilities]] = {}
        self._discovery_warned = False

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
        """One long-poll and the dispatch of what it brought; returns the number of events.
        Once the node is stopping, what arrives is left for the next start (cursor kept)."""
        wait = self.config.poll_timeout if timeout is None else timeout
        events, cursor = self.cloud.events(self.cursor, wait)
        self.metrics.cloud_answered()
        if self.stop_event.is_set():
            return 0
        for event in events:
            self.handle(event)
        if cursor != self.cursor:
            self._save_cursor(cursor)
        return len(events)

    def handle(self, event: NodeEvent) -> None:
        if event.kind is EventKind.RELEASED:
            printer = event.printer
            if printer is None:
                log.error("event=released job=%s error=no-printer", event.job_uuid)
                return
            try:
                protocol: str = protocol_of(printer.uri)
            except IPPError:
                protocol = "unknown"
            # journaled before the cursor moves on: a crash now resumes the job on start
            args = (event.job_uuid, printer.name, printer.uri, protocol, dict(event.options))
            if not self.journal.begin(*args):
                self.journal.restart(*args)  # released again after it failed here
            self.submit(event.job_uuid)
        elif event.kind is EventKind.CANCELED:
            self.cancel_local(event)
        elif event.kind is EventKind.FINISHED:
            self.finish_cups_job(event)

    def submit(self, uuid: str) -> None:
        """Run the job's delivery in the pool (a job already running is not run twice)."""
        future = self.pool.submit(self.run_job, uuid)
        with self._lock:
            self.futures.add(future)
        future.add_done_callback(self._forget_future)

    def resume_all(self) -> int:
        """Resume every job the journal has not seen to its end; returns how many."""
        entries = self.journal.unfinished()
        for entry in entries:
            log.info("job=%s resume step=%s printer=%s", entry.uuid, entry.step, entry.printer)
            self.submit(entry.uuid)
        return len(entries)

    def _forget_future(self, future: Future[None]) -> None:
        with self._lock:
            self.futures.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("delivery failed unexpectedly: %r", exc, exc_info=exc)

    # -- delivery -------------------------------------------------------------------------
    def _printer_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self.printer_locks.setdefault(name, threading.Lock())

    def run_job(self, uuid: str) -> None:
        """Take the job from its journaled step to reported, one job at a time per printer.
        Idempotent: a job already running or finished is left alone."""
        entry = self.journal.get(uuid)
        if entry is None or entry.finished:
            return
        with self._lock:
            if uuid in self.running:
                return
            self.running.add(uuid)
        lock = self._printer_lock(entry.printer)
        try:
            while not lock.acquire(timeout=0.2):
                if self.stop_event.is_set():
                    return  # resumed on the next start
            try:
                self._run(uuid)
            finally:
                lock.release()
        finally:
            with self._lock:
                self.running.discard(uuid)

    def _run(self, uuid: str) -> None:
        started = time.monotonic()
        cancel = threading.Event()
        with self._lock:
            self.active[uuid] = cancel
        self.metrics.delivery_started()
        try:
            result = self._advance(uuid, cancel)
        except DeliveryAbandoned as exc:
            log.info("job=%s abandoned for now (node stopping): %s", uuid, exc)
            return
        finally:
            self.metrics.delivery_ended()
            with self._lock:
                self.active.pop(uuid, None)
        if result is None:
            return
        entry = self.journal.get(uuid)
        assert entry is not None
        log.info(
            "job=%s printer=%s protocol=%s result=%s impressions=%s reason=%r",
            uuid,
            entry.printer,
            entry.protocol,
            result.state.value,
            result.impressions,
            result.reason,
        )
        if self._report(uuid, result):
            self.journal.reported(uuid)
            self.metrics.job_done(
                entry.printer, entry.protocol, result.state.value, time.monotonic() - started
            )
            for leftover in self.work.glob(f"{uuid}.*"):
                leftover.unlink(missing_ok=True)

    def _cloud(self, what: str, call: Callable[[], Job]) -> Job:
        """A cloud call retried while the cloud does not answer; abandoned when stopping."""
        delay = 0.2
        while True:
            try:
                answer = call()
                self.metrics.cloud_answered()
                return answer
            except CloudUnavailable as exc:
                log.warning("%s: cloud unavailable: %s", what, exc)
                if self.stop_event.wait(delay):
                    raise DeliveryAbandoned(f"{what}: node stopping") from exc
                delay = min(delay * 2, 10.0)

    def _advance(self, uuid: str, cancel: threading.Event) -> PrintResult | None:
        """Carry the job on from its journaled step; returns its end (None: nothing to report)."""
        entry = self.journal.get(uuid)
        assert entry is not None
        if entry.step == "done":
            return _stored_result(entry)
        if entry.step == "claimed":
            try:
                job = self._cloud(f"claim {uuid}", lambda: self.cloud.claim(uuid))
            except (Conflict, NotFound) as exc:
                current = self._current(uuid)
                if current is None or current.state not in _ACTIVE_CLOUD_STATES:
                    log.info("job=%s not claimed: %s", uuid, exc)
                    self.journal.finish(uuid, "skipped", f"not claimed: {exc}")
                    self.journal.reported(uuid)
                    return None
                job = current  # claimed by us before a crash
        else:
            job = self._cloud(f"job {uuid}", lambda: self.cloud.get_job(uuid))
            if job.state.is_final:
                # ended in the cloud (canceled, expired) while we were down: nothing to report
                self.journal.finish(uuid, job.state.value, "ended in the cloud")
                self.journal.reported(uuid)
                return None
        if entry.protocol == "unknown":
            return PrintResult(JobState.FAILED, None, reason=f"no delivery for {entry.uri}")
        if entry.step in ("claimed", "downloaded"):
            return self._download_and_send(entry, job, cancel)
        if entry.step == "sending":
            if entry.protocol != "ipp":
                result = PrintResult(
                    JobState.FAILED,
                    None,
                    reason=f"{UNKNOWN}: the node stopped while sending over {entry.protocol}",
                )
                self.journal.finish(uuid, result.state.value, result.reason)
                return result
            try:
                found = self._ask_printer(entry, job, keep_trying=True)
            except PrinterUnavailable as exc:
                result = PrintResult(JobState.FAILED, None, reason=f"{UNKNOWN}: {exc}")
                self.journal.finish(uuid, result.state.value, result.reason)
                return result
            if found is None:
                log.info("job=%s not at the printer after a restart: sending it", uuid)
                return self._download_and_send(entry, job, cancel)
            self.journal.step(uuid, "sent", printer_job_id=found)
            entry = self.journal.get(uuid) or entry
        if entry.step == "sent":
            self.journal.step(uuid, "monitoring")
        return self._monitor(uuid, job, cancel)

    def _current(self, uuid: str) -> Job | None:
        try:
            return self._cloud(f"job {uuid}", lambda: self.cloud.get_job(uuid))
        except NotFound:
            return None

    def _ask_printer(self, entry: JournalEntry, job: Job, *, keep_trying: bool) -> int | None:
        """The printer's job-id of this job if the printer has it (Get-Jobs), None if not. Never
        guesses: raises PrinterUnavailable when the printer does not answer (at once, or, with
        ``keep_trying``, once the retry window counted from the first try is over)."""
        delay = 0.5
        first = entry.first_try or time.time()
        while True:
            session, verify = tls.session_for(self.config, entry.printer, entry.uri)
            try:
                with session:
                    found = find_job_by_name(
                        entry.uri,
                        job_name_for(entry.uuid),
                        verify=verify,
                        session=session,
                        user=job.owner,
                    )
                return None if found is None else found.job_id
            except PrinterUnavailable as exc:
                if not keep_trying or time.time() - first >= self.config.retry_window_seconds:
                    raise
                self._waiting(entry.uuid, f"printer {entry.printer} unreachable: {exc}")
                if self.stop_event.wait(delay):
                    raise DeliveryAbandoned(f"job {entry.uuid}: node stopping") from exc
                delay = min(delay * 2, self.config.retry_max_backoff)

    def _report_plan(self, uuid: str, plan: FinishingPlan) -> None:
        """Keep the plan with the job in the cloud, for the user to see (best effort: the job
        prints even when the cloud does not answer now)."""
        steps = [PlanStep(s.option, s.value, s.where.value, s.how) for s in plan.steps]
        try:
            self.cloud.report_plan(uuid, steps)
            self.metrics.cloud_answered()
        except CloudError as exc:
            log.info("job=%s finishing plan not reported: %s", uuid, exc)

    def _waiting(self, uuid: str, why: str) -> None:
        """Show the job as printing-but-waiting, with the reason, in the cloud (best effort)."""
        try:
            self.cloud.progress(uuid, JobState.PRINTING, reason=f"waiting: {why}")
            self.metrics.cloud_answered()
        except CloudError as exc:
            log.info("job=%s waiting reason not reported: %s", uuid, exc)

    def _download_and_send(
        self, entry: JournalEntry, job: Job, cancel: threading.Event
    ) -> PrintResult:
        uuid = entry.uuid
        source = self.work / f"{uuid}.pdf"
        if not source.exists() and job.storage is StorageKind.NODE:
            kept = self.spool.kept_path(uuid)
            if not kept.exists():
                result = PrintResult(
                    JobState.FAILED,
                    None,
                    reason=f"the document of job {uuid} is kept on node {job.origin}, "
                    f"but node {self.config.name} does not have it",
                )
                self.journal.finish(uuid, result.state.value, result.reason)
                return result
            shutil.copyfile(kept, source)  # the kept copy stays until the CUPS job ends
        if not source.exists():
            fresh = entry.step != "claimed"
            try:
                self._cloud(
                    f"download {uuid}",
                    lambda: (download_document(self.cloud, job, source, fresh=fresh), job)[1],
                )
            except CloudError as exc:
                result = PrintResult(JobState.FAILED, None, reason=f"download refused: {exc}")
                self.journal.finish(uuid, result.state.value, result.reason)
                return result
        self.journal.step(uuid, "downloaded")
        entry = self.journal.get(uuid) or entry
        first = entry.first_try or time.time()
        if entry.first_try is None:
            self.journal.update(uuid, first_try=first)
        window = self.config.retry_window_seconds
        delay = 0.5
        retried = entry.step != "downloaded" or entry.first_try is not None
        while True:
            if cancel.is_set():
                result = PrintResult(JobState.CANCELED, 0, 0, reason="canceled before sending")
                break
            try:
                result = self._send_once(entry, job, source, cancel, ask_first=retried)
                break
            except (PrinterUnavailable, IppPrinterBusy, LpdError) as exc:
                # nothing (complete) reached the printer: back to "downloaded"
                self.journal.step(uuid, "downloaded")
                retried = True
                waited = time.time() - first
                if waited >= window:
                    result = PrintResult(
                        JobState.FAILED,
                        None,
                        reason=f"printer {entry.printer} unreachable or refusing for "
                        f"{waited:.0f} s: {exc}",
                    )
                    break
                log.warning(
                    "job=%s printer=%s waiting retry_in=%.1f error=%r",
                    uuid,
                    entry.printer,
                    delay,
                    str(exc),
                )
                self._waiting(uuid, f"printer {entry.printer} unreachable or refusing: {exc}")
                if self.stop_event.wait(min(delay, max(0.0, window - waited))):
                    raise DeliveryAbandoned(f"job {uuid}: node stopping") from exc
                delay = min(delay * 2, self.config.retry_max_backoff)
            except PullprintError as exc:  # plan, finishing, a refusal by the printer
                result = PrintResult(JobState.FAILED, None, reason=str(exc))
                break
        latest = self.journal.get(uuid)
        if latest is not None and latest.step != "done":
            self.journal.finish(
                uuid,
                result.state.value,
                result.reason,
                impressions=result.impressions,
                sheets=result.sheets,
            )
        return result

    def _ipp_capabilities(self, entry: JournalEntry) -> PrinterCapabilities:
        """The printer's Get-Printer-Attributes answer, asked at most every CAPABILITIES_SECONDS
        per printer and URI (a release need not wait for it each time)."""
        key = (entry.printer, entry.uri)
        now = time.monotonic()
        with self._lock:
            cached = self._capabilities.get(key)
        if cached is not None and now - cached[0] < CAPABILITIES_SECONDS:
            return cached[1]
        session, verify = tls.session_for(self.config, entry.printer, entry.uri)
        with session:
            caps = ipp_capabilities(entry.uri, entry.printer, session, verify)
        with self._lock:
            self._capabilities[key] = (now, caps)
        return caps

    def _plan(self, entry: JournalEntry, job: Job) -> FinishingPlan:
        """The finishing plan for this job on this printer (asks an IPP printer what it can)."""
        if entry.protocol == "ipp":
            caps = self._ipp_capabilities(entry)
        else:
            caps = raw_printer_capabilities(self.config.raw_profiles, entry.printer)
        transport = "ipp" if entry.protocol == "ipp" else entry.protocol
        return make_plan(
            FinishingOptions.from_cups(job.options, copies=job.copies),
            entry.options,
            caps,
            transport,  # type: ignore[arg-type]
            job_name=job_name_for(entry.uuid),
        )

    def _send_once(
        self,
        entry: JournalEntry,
        job: Job,
        source: Path,
        cancel: threading.Event,
        *,
        ask_first: bool,
    ) -> PrintResult:
        uuid = entry.uuid
        if entry.protocol == "ipp" and ask_first:
            found = self._ask_printer(entry, job, keep_trying=False)
            if found is not None:
                self.journal.step(uuid, "sent", printer_job_id=found)
                self.journal.step(uuid, "monitoring")
                return self._monitor(uuid, job, cancel)
        plan = self._plan(entry, job)
        finished_path = self.work / f"{uuid}.out"
        finished = apply_plan(plan, source, finished_path)
        log.info("job=%s plan=%s", uuid, plan.dumps())
        self.pool.submit(self._report_plan, uuid, plan)  # off the way to the printer's first byte
        before = self._read_counter(entry.printer) if entry.protocol != "ipp" else None
        self.journal.step(
            uuid,
            "sending",
            plan=plan.dumps(),
            impressions=finished.impressions,
            sheets=finished.sheets,
            counter_before=before,
        )
        name = job_name_for(uuid)
        if entry.protocol == "ipp":
            return self._send_ipp(entry, job, plan, finished_path, cancel)
        try:
            if entry.protocol == "lpr":
                send_lpd(
                    entry.uri,
                    finished_path,
                    job_name=name,
                    user=job.owner,
                    job_number=int(time.time()) % 1000,
                    cancel=cancel,
                )
            else:
                send_socket(entry.uri, finished_path, cancel=cancel)
        except (PrinterUnavailable, LpdError):
            raise
        except IPPError as exc:
            if cancel.is_set():
                return PrintResult(JobState.CANCELED, None, reason="canceled while sending")
            return PrintResult(JobState.FAILED, None, reason=f"{UNKNOWN}: {exc}")
        self.journal.step(uuid, "sent")
        self.journal.step(uuid, "monitoring")
        return self._count_raw(uuid, finished)

    def _send_ipp(
        self,
        entry: JournalEntry,
        job: Job,
        plan: FinishingPlan,
        document: Path,
        cancel: threading.Event,
    ) -> PrintResult:
        uuid = entry.uuid

        def submitted(printer_job_id: int) -> None:
            self.journal.step(uuid, "sent", printer_job_id=printer_job_id)
            self.journal.step(uuid, "monitoring")

        session, verify = tls.session_for(self.config, entry.printer, entry.uri)
        with session:
            return deliver_ipp(
                entry.uri,
                document,
                job_name=job_name_for(uuid),
                user=job.owner,
                job_attributes=plan.ipp_attributes(),
                document_format=plan.document_format,
                cancel=cancel,
                verify=verify,
                session=session,
                on_state=self._on_state(uuid),
                on_submitted=submitted,
                on_reasons=self._on_reasons(uuid),
                abandon=self.abandon,
            )

    def _on_state(self, uuid: str) -> Callable[[str], None]:
        reported: set[str] = set()

        def on_state(state: str) -> None:
            # Printing is reported once the printer has the job, not before: no round trip
            # to the cloud stands between the release and the printer's first byte.
            if state == "processing" and not reported:
                reported.add(state)
                try:
                    self.cloud.progress(uuid, JobState.PRINTING)
                except CloudError as exc:
                    log.info("job=%s printing not reported: %s", uuid, exc)

        return on_state

    def _on_reasons(self, uuid: str) -> Callable[[list[str]], None]:
        def on_reasons(reasons: list[str]) -> None:
            why = ", ".join(reasons)
            log.info("job=%s printer-state-reasons=%s", uuid, why or "none")
            try:
                self.cloud.progress(
                    uuid, JobState.PRINTING, reason=f"waiting: {why}" if why else ""
                )
            except CloudError as exc:
                log.info("job=%s printer reasons not reported: %s", uuid, exc)

        return on_reasons

    def _monitor(self, uuid: str, job: Job, cancel: threading.Event) -> PrintResult:
        """Follow a job the printer has (step monitoring) to its end; journal the end."""
        entry = self.journal.get(uuid)
        assert entry is not None
        if entry.protocol == "ipp":
            if entry.printer_job_id is None:
                result = PrintResult(JobState.FAILED, None, reason=f"{UNKNOWN}: no printer job")
            else:
                session, verify = tls.session_for(self.config, entry.printer, entry.uri)
                with session:
                    result = follow_ipp(
                        entry.uri,
                        entry.printer_job_id,
                        job_name=job_name_for(uuid),
                        user=job.owner,
                        cancel=cancel,
                        verify=verify,
                        session=session,
                        on_state=self._on_state(uuid),
                        on_reasons=self._on_reasons(uuid),
                        abandon=self.abandon,
                    )
        else:
            estimate = FinishedDocument(
                pages=entry.impressions or 0,
                impressions=entry.impressions or 0,
                sheets=entry.sheets or 0,
                document_format="",
            )
            result = self._count_raw(uuid, estimate)
            return result
        self.journal.finish(
            uuid,
            result.state.value,
            result.reason,
            impressions=result.impressions,
            sheets=result.sheets,
        )
        return result

    def _read_counter(self, printer: str) -> int | None:
        target = self.config.snmp.get(printer)
        if not target:
            return None
        try:
            return read_counter(target, self.config.snmp_community)
        except SnmpError as exc:
            log.info("printer=%s page counter unreadable: %s", printer, exc)
            return None

    def _count_raw(self, uuid: str, finished: FinishedDocument) -> PrintResult:
        """LPR and raw: sent is not printed. A real count from the page counter read before
        and after, else the finished document's count, said to be an estimate."""
        entry = self.journal.get(uuid)
        assert entry is not None
        target = self.config.snmp.get(entry.printer)
        pages: int | None = None
        if target and entry.counter_before is not None:
            pages = wait_settled(
                lambda: read_counter(target, self.config.snmp_community),
                entry.counter_before,
                settle=self.config.snmp_settle_seconds,
                wait=self.config.snmp_wait_seconds,
                stop=self.abandon.is_set,
            )
            if pages is None and self.abandon.is_set():
                raise DeliveryAbandoned(f"job {uuid}: node stopping")
        if pages is not None:
            sheets = finished.sheets
            if finished.impressions and pages != finished.impressions:
                sheets = math.ceil(pages * finished.sheets / finished.impressions)
            result = PrintResult(
                JobState.COMPLETED,
                pages,
                sheets,
                reason=f"counted by the printer's page counter (SNMP) over {entry.protocol}",
            )
            estimated = False
        else:
            result = PrintResult(
                JobState.COMPLETED,
                finished.impressions,
                finished.sheets,
                reason=f"estimated: sent over {entry.protocol}, not confirmed by the printer",
            )
            estimated = True
        self.journal.finish(
            uuid,
            result.state.value,
            result.reason,
            impressions=result.impressions,
            sheets=result.sheets,
            estimated=estimated,
        )
        return result

    def _report(self, uuid: str, result: PrintResult) -> bool:
        """Tell the cloud how the print ended, retrying while it is unavailable. True once the
        cloud has it (or refuses it for good: it holds another end state)."""
        delay = 0.2
        while True:
            try:
                self.cloud.progress(
                    uuid, result.state, result.impressions, result.sheets, result.reason
                )
                self.metrics.cloud_answered()
                return True
            except CloudUnavailable as exc:
                if self.stop_event.wait(delay):
                    log.error("job=%s end state %s not reported: %s", uuid, result.state, exc)
                    return False
                delay = min(delay * 2, 10.0)
            except CloudError as exc:
                log.error("job=%s cloud refused the end state: %s", uuid, exc)
                return True

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
            if job is None:
                # Get-Jobs leaves out the jobs of classes (a pool of PullPrint queues): ask
                # for the job itself, and take it only if it is the same job (ids come back).
                job = self.cups.job(record.cups_job_id)
                if job is not None and job.uuid != record.cups_job_uuid:
                    job = None
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
        done = self.outbox.flush(self.cloud)
        for refusal in done.refused:
            self._refused_later(refusal.uuid, refusal.message)
        return done.waiting

    def _refused_later(self, uuid: str, why: str) -> None:
        """The cloud refused a registration the outbox sent after an outage (the backend had
        held the CUPS job): cancel the CUPS job, saying why in the log, so it does not stay held
        for nobody."""
        record = self.spool.find_by_uuid(uuid)
        log.warning("job %s refused by the release service: %s; canceling its CUPS job", uuid, why)
        if record is None or self.cups is None:
            return
        self.spool.mark_done(uuid, JobState.CANCELED, None)
        try:
            self.cups.cancel(record.cups_job_id)
        except CupsUnavailable as exc:
            log.warning("job %s: CUPS job %d not canceled: %s", uuid, record.cups_job_id, exc)
            return
        self.spool.forget(record)

    # -- DNS-SD ---------------------------------------------------------------------------
    def discover_once(self) -> int:
        """Browse DNS-SD for IPP printers on this node's network and report them to the cloud
        (the admin's printers page offers them); returns how many. Without Avahi here it
        reports nothing and says so once."""
        try:
            found = discovery.browse()
        except discovery.DiscoveryUnavailable as exc:
            if not self._discovery_warned:
                log.warning("DNS-SD discovery off: %s", exc)
                self._discovery_warned = True
            return 0
        self.cloud.report_discovered(found)
        return len(found)

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

    def run(self, drain_timeout: float | None = None) -> bool:
        """Run until :meth:`stop`; then stop claiming, let printing jobs finish within
        ``drain_timeout`` (node.drain_seconds), abandon the rest (resumed on the next start).
        Returns True if everything finished in time."""
        drain = self.config.drain_seconds if drain_timeout is None else drain_timeout
        if self.config.metrics_port:
            self._metrics_server = serve(self.metrics, self.config.metrics_port)
        self.resume_all()
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
        if self.config.discovery_seconds:
            threads.append(
                threading.Thread(
                    target=self._loop,
                    args=("discovery", self.discover_once, float(self.config.discovery_seconds)),
                    name="discovery",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        log.info("node %s running (cloud %s)", self.config.name, self.config.cloud_url)
        self.stop_event.wait()
        log.info("node %s stopping: draining for up to %.0f s", self.config.name, drain)
        deadline = time.monotonic() + drain
        drained = True
        while True:
            with self._lock:
                pending = [f for f in self.futures if not f.done()]
            if not pending:
                break
            if time.monotonic() > deadline:
                drained = False
                log.warning("node stopping: %d delivery(ies) abandoned for now", len(pending))
                self.abandon.set()
                break
            time.sleep(0.05)
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.journal.close()
        return drained

    def stop(self) -> None:
        """Stop claiming (idempotent); :meth:`run` then drains and returns."""
        self.stop_event.set()

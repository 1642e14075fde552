"""Deliver a released job to a printer over IPP or IPPS and follow it to its end state.

:func:`deliver_ipp` sends Print-Job (the document streamed from disk), then polls
Get-Job-Attributes until the printer's job is completed, canceled or aborted, and returns a
:class:`~pullprint.model.PrintResult` with the printer's own impression and sheet counts. A set
``cancel`` event stops the upload or sends Cancel-Job. :func:`find_job_by_name` finds a job again
after a crash (Get-Jobs, which-jobs=all), so a restarted node does not print a job twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from pullprint.errors import IPPError, PrinterUnavailable
from pullprint.ipp.client import IppClient, IppJobState, JobStatus
from pullprint.ipp.errors import IppCanceled, IppStatusError
from pullprint.model import JobState, PrintResult

log = logging.getLogger(__name__)

FIRST_POLL = 0.02  # seconds before the first Get-Job-Attributes: small jobs are often done by then
CANCEL_SETTLE = 5.0  # seconds to wait for the printer's final state after Cancel-Job
REQUEST_TIMEOUT = 30.0

END_STATES = {
    IppJobState.COMPLETED: JobState.COMPLETED,
    IppJobState.CANCELED: JobState.CANCELED,
    IppJobState.ABORTED: JobState.FAILED,
}


def _reasons(values: tuple[str, ...]) -> list[str]:
    return [value for value in values if value and value != "none"]


def _result(client: IppClient, status: JobStatus, state: JobState | None = None) -> PrintResult:
    """The PrintResult for a job in a final state (``state`` overrides the mapping)."""
    final = state or END_STATES.get(IppJobState(status.job_state), JobState.FAILED)
    reasons = _reasons(status.job_state_reasons)
    if status.job_state_message:
        reasons.append(status.job_state_message)
    if final is JobState.FAILED:
        try:
            printer = client.get_printer_attributes(["printer-state-reasons", "printer-state"])
            reasons += [f"printer: {r}" for r in _reasons(printer.printer_state_reasons)]
        except (IppStatusError, PrinterUnavailable) as exc:
            log.debug("printer-state-reasons of %s unavailable: %s", client.uri, exc)
    return PrintResult(
        state=final,
        impressions=status.impressions_completed,
        sheets=status.media_sheets_completed,
        printer_job_id=status.job_id,
        reason="; ".join(reasons),
    )


def _wait(cancel: threading.Event | None, seconds: float) -> None:
    if cancel is not None:
        cancel.wait(seconds)
    else:
        time.sleep(seconds)


def _cancel(client: IppClient, job_id: int, user: str) -> PrintResult:
    """Cancel-Job, then wait briefly for the printer's final state. If the job completed before
    the cancel arrived, the result says COMPLETED (it was printed and must be accounted)."""
    try:
        client.cancel_job(job_id, user=user)
    except IppStatusError as exc:
        log.info("Cancel-Job %d on %s refused: %s", job_id, client.uri, exc)
    deadline = time.monotonic() + CANCEL_SETTLE
    last: JobStatus | None = None
    while time.monotonic() < deadline:
        try:
            last = client.get_job_attributes(job_id)
        except (IppStatusError, PrinterUnavailable) as exc:
            log.info("job %d on %s after cancel: %s", job_id, client.uri, exc)
            break
        if last.is_final:
            break
        time.sleep(0.05)
    if last is not None and last.job_state == IppJobState.COMPLETED:
        return _result(client, last)
    if last is None:
        return PrintResult(JobState.CANCELED, None, None, job_id, "canceled")
    return _result(client, last, JobState.CANCELED)


class DeliveryAbandoned(IPPError):
    """The node is stopping: it stopped following the printer's job (resumed on next start)."""


PRINTER_REASONS_EVERY = 2.0  # seconds between printer-state-reasons reads while a job waits


def deliver_ipp(
    uri: str,
    document: Path,
    *,
    job_name: str,
    user: str,
    job_attributes: dict[str, str | int],
    document_format: str = "application/pdf",
    cancel: threading.Event | None = None,
    poll_interval: float = 0.1,
    timeout: float = 600,
    verify: bool | str = True,
    on_state: Callable[[str], None] | None = None,
    session: requests.Session | None = None,
    on_submitted: Callable[[int], None] | None = None,
    on_reasons: Callable[[list[str]], None] | None = None,
    abandon: threading.Event | None = None,
) -> PrintResult:
    """Print ``document`` on the printer at ``uri`` and follow the job to its end state.

    Changes: creates one job at the printer (not idempotent: use :func:`find_job_by_name` first
    when retrying after a crash). ``on_submitted`` is called with the printer's job-id as soon as
    the printer has the whole document; ``on_state`` with each new job-state keyword
    (``pending``, ``processing``, ``completed``...); ``on_reasons`` with the printer's
    printer-state-reasons (``media-empty``...) whenever they change while the job is not done.
    Returns COMPLETED, CANCELED (``cancel`` was set, or the job was canceled at the printer) or
    FAILED (aborted by the printer, or not done within ``timeout`` seconds, in which case the
    printer's job is canceled). Raises PrinterUnavailable when Print-Job gets no answer and
    IppStatusError when the printer refuses it: nothing was printed then. Raises
    DeliveryAbandoned when ``abandon`` is set while following the job.
    """
    if cancel is not None and cancel.is_set():
        return PrintResult(JobState.CANCELED, 0, 0, None, "canceled before sending")
    with IppClient(
        uri, session=session, verify=verify, timeout=REQUEST_TIMEOUT, user=user
    ) as client:
        try:
            job_id = client.print_job(
                document,
                job_attributes=job_attributes,
                document_format=document_format,
                job_name=job_name,
                user=user,
                cancel=cancel,
            )
        except IppCanceled:
            log.info("%s: upload to %s canceled", job_name, uri)
            return PrintResult(JobState.CANCELED, 0, 0, None, "canceled while sending")
        log.info("%s: printer %s job %d", job_name, uri, job_id)
        if on_submitted is not None:
            on_submitted(job_id)
        return _follow(
            client,
            job_id,
            job_name=job_name,
            user=user,
            cancel=cancel,
            poll_interval=poll_interval,
            timeout=timeout,
            on_state=on_state,
            on_reasons=on_reasons,
            abandon=abandon,
        )


def follow_ipp(
    uri: str,
    job_id: int,
    *,
    job_name: str,
    user: str,
    cancel: threading.Event | None = None,
    poll_interval: float = 0.1,
    timeout: float = 600,
    verify: bool | str = True,
    on_state: Callable[[str], None] | None = None,
    on_reasons: Callable[[list[str]], None] | None = None,
    abandon: threading.Event | None = None,
    session: requests.Session | None = None,
) -> PrintResult:
    """Follow a job the printer already has (after a restart) to its end state, as
    :func:`deliver_ipp` does after Print-Job. Creates nothing."""
    with IppClient(
        uri, session=session, verify=verify, timeout=REQUEST_TIMEOUT, user=user
    ) as client:
        return _follow(
            client,
            job_id,
            job_name=job_name,
            user=user,
            cancel=cancel,
            poll_interval=poll_interval,
            timeout=timeout,
            on_state=on_state,
            on_reasons=on_reasons,
            abandon=abandon,
        )


def _follow(
    client: IppClient,
    job_id: int,
    *,
    job_name: str,
    user: str,
    cancel: threading.Event | None,
    poll_interval: float,
    timeout: float,
    on_state: Callable[[str], None] | None,
    on_reasons: Callable[[list[str]], None] | None,
    abandon: threading.Event | None,
) -> PrintResult:
    deadline = time.monotonic() + timeout
    delay = min(FIRST_POLL, poll_interval)
    last_state = ""
    last_reasons: list[str] | None = None
    next_reasons = time.monotonic() + PRINTER_REASONS_EVERY / 4
    while True:
        _wait(cancel, delay)
        delay = poll_interval
        if cancel is not None and cancel.is_set():
            log.info("%s: canceling printer job %d", job_name, job_id)
            return _cancel(client, job_id, user)
        if abandon is not None and abandon.is_set():
            raise DeliveryAbandoned(f"{job_name}: stopped following printer job {job_id}")
        try:
            status = client.get_job_attributes(job_id)
        except PrinterUnavailable as exc:  # the job is at the printer: keep asking
            log.warning("%s: job %d status unavailable: %s", job_name, job_id, exc)
            status = None
        except IppStatusError as exc:
            return PrintResult(JobState.FAILED, None, None, job_id, f"printer: {exc}")
        if status is not None:
            if status.state_name != last_state:
                last_state = status.state_name
                log.debug("%s: job %d is %s", job_name, job_id, last_state)
                if on_state is not None:
                    on_state(last_state)
            if status.is_final:
                return _result(client, status)
        if on_reasons is not None and time.monotonic() >= next_reasons:
            next_reasons = time.monotonic() + PRINTER_REASONS_EVERY
            try:
                printer = client.get_printer_attributes(["printer-state-reasons"])
            except (IppStatusError, PrinterUnavailable) as exc:
                reasons = [f"printer unreachable: {exc}"]
            else:
                reasons = [
                    r for r in _reasons(printer.printer_state_reasons) if not r.endswith("-report")
                ]
            if reasons != last_reasons:
                last_reasons = reasons
                on_reasons(reasons)
        if time.monotonic() > deadline:
            log.error("%s: job %d not done after %s s; canceling", job_name, job_id, timeout)
            result = _cancel(client, job_id, user)
            if result.state is JobState.COMPLETED:
                return result
            return PrintResult(
                JobState.FAILED,
                result.impressions,
                result.sheets,
                job_id,
                f"printer job {job_id} did not finish within {timeout} s",
            )


def find_job_by_name(
    uri: str,
    job_name: str,
    *,
    verify: bool | str = True,
    session: requests.Session | None = None,
    user: str = "pullprint",
) -> JobStatus | None:
    """The newest job called ``job_name`` on the printer, in any state (Get-Jobs which-jobs=all),
    or None. Changes nothing. Raises PrinterUnavailable when the printer does not answer."""
    with IppClient(uri, session=session, verify=verify, user=user) as client:
        jobs = client.get_jobs("all")
    matching = [job for job in jobs if job.job_name == job_name]
    return max(matching, key=lambda job: job.job_id) if matching else None

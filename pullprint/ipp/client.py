"""A small IPP/1.1 client over HTTP(S): Print-Job (streamed), Get-Job-Attributes, Get-Jobs,
Cancel-Job and Get-Printer-Attributes.

The transport is a ``requests.Session`` the caller may inject (it is then left open); a session made
here is closed by :meth:`IppClient.close`. Documents are streamed: the request body is a generator
that yields the encoded IPP header and then the file in 64 KiB chunks, sent with chunked transfer
encoding, so memory does not grow with the document. Errors: a printer that does not answer raises
:class:`~pullprint.errors.PrinterUnavailable`; a non-successful IPP status raises
:class:`~pullprint.ipp.errors.IppStatusError` (its message names the status and the printer's
status-message); malformed answers raise :class:`~pullprint.ipp.errors.IppDecodeError`.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import requests

from pullprint.errors import IPPError, PrinterUnavailable
from pullprint.ipp.encoding import (
    RETRY_STATUSES,
    GroupTag,
    IppAttribute,
    IppMessage,
    IppRange,
    JobValue,
    Operation,
    decode_message,
    encode_request,
    is_successful,
    job_attributes,
    status_name,
)
from pullprint.ipp.errors import IppCanceled, IppDecodeError, IppPrinterBusy, IppStatusError

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # an IPP answer larger than this is refused
DEFAULT_PORT = 631
CONTENT_TYPE = "application/ipp"

JOB_STATUS_ATTRIBUTES = (
    "job-id",
    "job-name",
    "job-state",
    "job-state-reasons",
    "job-state-message",
    "job-impressions-completed",
    "job-media-sheets-completed",
)
PRINTER_STATUS_ATTRIBUTES = (
    "printer-name",
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-is-accepting-jobs",
    "document-format-supported",
    "print-color-mode-supported",
    "sides-supported",
    "copies-supported",
    "media-supported",
    "page-ranges-supported",
)


class IppJobState(enum.IntEnum):
    """``job-state`` (RFC 8011 5.3.7)."""

    PENDING = 3
    PENDING_HELD = 4
    PROCESSING = 5
    PROCESSING_STOPPED = 6
    CANCELED = 7
    ABORTED = 8
    COMPLETED = 9

    @property
    def keyword(self) -> str:
        return self.name.lower().replace("_", "-")


FINAL_JOB_STATES = frozenset({IppJobState.CANCELED, IppJobState.ABORTED, IppJobState.COMPLETED})


class PrinterState(enum.IntEnum):
    """``printer-state`` (RFC 8011 5.4.11)."""

    IDLE = 3
    PROCESSING = 4
    STOPPED = 5


def _strings(message_or_attrs: IppAttribute | None) -> tuple[str, ...]:
    if message_or_attrs is None:
        return ()
    return tuple(str(value) for value in message_or_attrs.values if value is not None)


def _int_or_none(attribute: IppAttribute | None) -> int | None:
    if attribute is None:
        return None
    value = attribute.value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class JobStatus:
    """What a printer says about one of its jobs (Get-Job-Attributes or one entry of Get-Jobs)."""

    job_id: int
    job_state: int
    job_state_reasons: tuple[str, ...] = ()
    job_name: str = ""
    impressions_completed: int | None = None
    media_sheets_completed: int | None = None
    job_state_message: str = ""

    @property
    def state_name(self) -> str:
        """The ``job-state`` keyword, e.g. ``completed`` (``unknown-N`` for odd values)."""
        try:
            return IppJobState(self.job_state).keyword
        except ValueError:
            return f"unknown-{self.job_state}"

    @property
    def is_final(self) -> bool:
        """True once the job is completed, canceled or aborted."""
        return self.job_state in FINAL_JOB_STATES

    @classmethod
    def from_attributes(cls, attributes: Sequence[IppAttribute]) -> JobStatus:
        """Build from one job group. Raises IppDecodeError if job-id or job-state is missing."""
        by_name = {attribute.name: attribute for attribute in attributes}
        job_id = _int_or_none(by_name.get("job-id"))
        state = _int_or_none(by_name.get("job-state"))
        if job_id is None or state is None:
            raise IppDecodeError("job attributes without an integer job-id and job-state")
        name = by_name.get("job-name")
        message = by_name.get("job-state-message")
        return cls(
            job_id=job_id,
            job_state=state,
            job_state_reasons=_strings(by_name.get("job-state-reasons")),
            job_name=str(name.value) if name and name.value is not None else "",
            impressions_completed=_int_or_none(by_name.get("job-impressions-completed")),
            media_sheets_completed=_int_or_none(by_name.get("job-media-sheets-completed")),
            job_state_message=str(message.value) if message and message.value is not None else "",
        )


@dataclass(frozen=True)
class PrinterAttributes:
    """A typed view of a Get-Printer-Attributes answer; ``message`` keeps everything else."""

    printer_name: str
    printer_state: int
    printer_state_reasons: tuple[str, ...]
    printer_state_message: str
    is_accepting_jobs: bool | None
    document_format_supported: tuple[str, ...]
    print_color_mode_supported: tuple[str, ...]
    sides_supported: tuple[str, ...]
    copies_supported: IppRange | None
    message: IppMessage

    @classmethod
    def from_message(cls, message: IppMessage) -> PrinterAttributes:
        """Build from the answer's printer group (missing attributes give empty values)."""

        def get(name: str) -> IppAttribute | None:
            return message.get(GroupTag.PRINTER, name)

        name = get("printer-name")
        state_message = get("printer-state-message")
        accepting = get("printer-is-accepting-jobs")
        copies = get("copies-supported")
        return cls(
            printer_name=str(name.value) if name and name.value is not None else "",
            printer_state=_int_or_none(get("printer-state")) or 0,
            printer_state_reasons=_strings(get("printer-state-reasons")),
            printer_state_message=(
                str(state_message.value) if state_message and state_message.value else ""
            ),
            is_accepting_jobs=(
                accepting.value if accepting and isinstance(accepting.value, bool) else None
            ),
            document_format_supported=_strings(get("document-format-supported")),
            print_color_mode_supported=_strings(get("print-color-mode-supported")),
            sides_supported=_strings(get("sides-supported")),
            copies_supported=(
                copies.value if copies and isinstance(copies.value, IppRange) else None
            ),
            message=message,
        )


def http_url(uri: str) -> str:
    """The HTTP(S) URL an ``ipp://`` / ``ipps://`` printer URI is served at. Pure.

    ipp -> http, ipps -> https, default port 631, default path ``/``; http(s) URLs pass unchanged.
    Raises IPPError for other schemes or a URI without a host.
    """
    parts = urlsplit(uri)
    schemes = {"ipp": "http", "ipps": "https", "http": "http", "https": "https"}
    scheme = schemes.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise IPPError(f"not an ipp:// or ipps:// printer URI: {uri!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise IPPError(f"bad port in printer URI {uri!r}") from exc
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return f"{scheme}://{host}:{port}{path}"


class IppClient:
    """An IPP client for one printer URI; use as a context manager or call :meth:`close`.

    Thread-safe as far as ``requests.Session`` is (one client per delivery thread is the norm).
    """

    def __init__(
        self,
        uri: str,
        *,
        session: requests.Session | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        user: str = "pullprint",
    ) -> None:
        self.uri = uri
        self.url = http_url(uri)
        self.verify = verify
        self.timeout = timeout
        self.user = user
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the session if this client made it (an injected session stays open)."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> IppClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IppClient({self.uri!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _operation_attributes(self, user: str | None = None) -> list[IppAttribute]:
        return [
            IppAttribute.uri("printer-uri", self.uri),
            IppAttribute.name_("requesting-user-name", user or self.user),
        ]

    def request(
        self,
        operation: int,
        operation_attributes: Sequence[IppAttribute] = (),
        job_attrs: Sequence[IppAttribute] = (),
    ) -> IppMessage:
        """Send one request without document data and return the successful answer.

        ``printer-uri`` and ``requesting-user-name`` are added first. Raises IppStatusError on a
        non-successful status, PrinterUnavailable when the printer does not answer.
        """
        request_id = self._next_id()
        body = encode_request(
            operation,
            request_id,
            [*self._operation_attributes(), *operation_attributes],
            job_attrs,
        )
        return self._exchange(operation, request_id, body)

    def _exchange(
        self, operation: int, request_id: int, body: bytes | Iterator[bytes]
    ) -> IppMessage:
        """POST ``body`` and decode the answer; raises as the module docstring says."""
        op_name = _operation_name(operation)
        try:
            response = self.session.post(
                self.url,
                data=body,
                headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
                timeout=self.timeout,
                verify=self.verify,
                stream=True,
            )
        except requests.exceptions.SSLError as exc:
            raise IPPError(f"{op_name} to {self.uri}: TLS failed: {exc}") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PrinterUnavailable(
                f"{op_name} to {self.uri}: printer unavailable: {exc}"
            ) from exc
        except requests.RequestException as exc:
            raise IPPError(f"{op_name} to {self.uri} failed: {exc}") from exc
        with response:
            if response.status_code != 200:
                text = f"{op_name} to {self.uri}: HTTP {response.status_code} {response.reason}"
                if response.status_code in (502, 503, 504):
                    raise PrinterUnavailable(text)
                raise IPPError(text)
            data = self._read_limited(response, op_name)
        message = decode_message(data)
        if message.request_id != request_id:
            log.warning(
                "%s to %s: answer has request-id %d, sent %d",
                op_name,
                self.uri,
                message.request_id,
                request_id,
            )
        if not is_successful(message.code):
            error = IppPrinterBusy if message.code in RETRY_STATUSES else IppStatusError
            raise error(message.code, status_name(message.code), message.status_message)
        if message.code != 0:
            log.debug("%s to %s: %s", op_name, self.uri, status_name(message.code))
        return message

    def _read_limited(self, response: requests.Response, op_name: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise IppDecodeError(
                        f"{op_name} answer from {self.uri} exceeds {MAX_RESPONSE_BYTES} bytes"
                    )
                chunks.append(chunk)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PrinterUnavailable(f"{op_name} to {self.uri}: answer cut off: {exc}") from exc
        except requests.RequestException as exc:
            raise IPPError(f"{op_name} to {self.uri}: reading the answer failed: {exc}") from exc
        return b"".join(chunks)

    # -- operations --------------------------------------------------------------------------
    def get_printer_attributes(self, requested: Sequence[str] | None = None) -> PrinterAttributes:
        """Get-Printer-Attributes; ``requested=None`` asks for ``all``. Changes nothing."""
        names = list(requested) if requested else ["all"]
        message = self.request(
            Operation.GET_PRINTER_ATTRIBUTES,
            [IppAttribute.keyword("requested-attributes", *names)],
        )
        return PrinterAttributes.from_message(message)

    def print_job(
        self,
        document: Path,
        *,
        job_attributes: Mapping[str, JobValue | Sequence[JobValue]] | Sequence[IppAttribute] = (),
        document_format: str = "application/pdf",
        job_name: str = "",
        user: str | None = None,
        cancel: threading.Event | None = None,
    ) -> int:
        """Print-Job, streaming ``document`` from disk; returns the printer's job-id.

        ``job_attributes`` go in the job group (a mapping is typed by
        :func:`~pullprint.ipp.encoding.job_attribute`). Memory use does not depend on the file
        size. If ``cancel`` is set while the file is being sent, the upload is aborted and
        IppCanceled is raised (the printer then aborts the partial job). Not idempotent: every
        call creates a job at the printer.
        """
        attrs = (
            job_attributes_list(job_attributes)
            if isinstance(job_attributes, Mapping)
            else list(job_attributes)
        )
        operation_attrs = self._operation_attributes(user)
        if job_name:
            operation_attrs.append(IppAttribute.name_("job-name", job_name))
        operation_attrs.append(IppAttribute.mime("document-format", document_format))
        request_id = self._next_id()
        header = encode_request(Operation.PRINT_JOB, request_id, operation_attrs, attrs)
        if not document.is_file():
            raise IPPError(f"Print-Job: {document} is not a readable file")
        body = stream_body(header, document, cancel)
        try:
            message = self._exchange(Operation.PRINT_JOB, request_id, body)
        finally:
            body.close()  # closes the file now, even when the upload was cut off
        job_id = message.get(GroupTag.JOB, "job-id")
        value = job_id.value if job_id else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise IppDecodeError(f"Print-Job answer from {self.uri} has no job-id")
        log.info("printed %s to %s as job %d", document.name, self.uri, value)
        return value

    def get_job_attributes(
        self, job_id: int, requested: Sequence[str] = JOB_STATUS_ATTRIBUTES
    ) -> JobStatus:
        """Get-Job-Attributes for ``job_id``. Changes nothing."""
        message = self.request(
            Operation.GET_JOB_ATTRIBUTES,
            [
                IppAttribute.integer("job-id", job_id),
                IppAttribute.keyword("requested-attributes", *_with_ids(requested)),
            ],
        )
        return JobStatus.from_attributes(message.group(GroupTag.JOB))

    def get_jobs(
        self,
        which: str = "not-completed",
        requested: Sequence[str] = JOB_STATUS_ATTRIBUTES,
        *,
        limit: int | None = None,
        my_jobs: bool = False,
        first_job_id: int | None = None,
    ) -> list[JobStatus]:
        """Get-Jobs (``which`` is ``not-completed``, ``completed`` or ``all``), from job
        ``first_job_id`` on when given (cupsd answers at most 500 jobs at once). Changes
        nothing."""
        attrs = [
            IppAttribute.keyword("which-jobs", which),
            IppAttribute.keyword("requested-attributes", *_with_ids(requested)),
        ]
        if limit is not None:
            attrs.append(IppAttribute.integer("limit", limit))
        if first_job_id is not None:
            attrs.append(IppAttribute.integer("first-job-id", first_job_id))
        if my_jobs:
            attrs.append(IppAttribute.boolean("my-jobs", True))
        message = self.request(Operation.GET_JOBS, attrs)
        return [JobStatus.from_attributes(group) for group in message.groups_of(GroupTag.JOB)]

    def cancel_job(self, job_id: int, *, user: str | None = None) -> None:
        """Cancel-Job. Changes the job's state to canceled; a second call raises IppStatusError
        (``client-error-not-possible``) since the job is no longer cancelable."""
        request_id = self._next_id()
        body = encode_request(
            Operation.CANCEL_JOB,
            request_id,
            [*self._operation_attributes(user), IppAttribute.integer("job-id", job_id)],
        )
        self._exchange(Operation.CANCEL_JOB, request_id, body)
        log.info("canceled job %d on %s", job_id, self.uri)


def job_attributes_list(values: Mapping[str, JobValue | Sequence[JobValue]]) -> list[IppAttribute]:
    """Typed job-group attributes from plain values (see encoding.job_attribute). Pure."""
    return job_attributes(values)


def stream_body(
    header: bytes, document: Path, cancel: threading.Event | None = None
) -> Generator[bytes, None, None]:
    """Yield ``header``, then ``document`` in CHUNK_SIZE pieces; the file is open only while
    iterating. Raises IppCanceled between chunks once ``cancel`` is set."""
    yield header
    with document.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            if cancel is not None and cancel.is_set():
                raise IppCanceled(f"upload of {document.name} canceled")
            yield chunk


def _with_ids(requested: Sequence[str]) -> list[str]:
    names = list(requested)
    for needed in ("job-id", "job-state"):
        if needed not in names and "all" not in names:
            names.append(needed)
    return names


def _operation_name(operation: int) -> str:
    try:
        return Operation(operation).name.replace("_", "-").title()
    except ValueError:
        return f"operation 0x{operation:04x}"

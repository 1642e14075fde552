"""An RFC 1179 (LPR/LPD) client: one print job, a data file and a control file naming its job
name and user. Pure encoders (:func:`control_file`, :func:`subcommand`) and one I/O function
(:func:`send_lpd`). Not idempotent: every call queues a job at the server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pullprint.errors import IPPError, PrinterUnavailable

log = logging.getLogger(__name__)

DEFAULT_PORT = 515
CHUNK = 64 * 1024
MAX_FIELD = 31  # RFC 1179: host and user names up to 31 octets


class LpdError(IPPError):
    """The LPD server refused a step (the message names it). Nothing printed."""


class LpdCanceled(IPPError):
    """The upload was canceled; the server was told to abort the job."""


@dataclass(frozen=True)
class LpdTarget:
    host: str
    port: int
    queue: str


def parse_lpd_uri(uri: str) -> LpdTarget:
    """``lpd://host[:port]/queue`` -> target. Pure; raises IPPError for a bad URI."""
    parts = urlsplit(uri)
    queue = unquote(parts.path.lstrip("/"))
    if parts.scheme != "lpd" or not parts.hostname or not queue:
        raise IPPError(f"not an lpd://host[:port]/queue URI: {uri!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise IPPError(f"bad port in {uri!r}") from exc
    return LpdTarget(parts.hostname, port, queue)


def _clean(text: str, limit: int = 99) -> str:
    """Printable ASCII only (no newlines: one control-file line per field). Pure."""
    out = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return out[:limit] or "-"


def control_file(
    *, host: str, user: str, job_name: str, data_name: str, binary: bool = True
) -> bytes:
    """The control file: host, user, job name (J, N) and one print line. Pure.

    ``binary``: the ``l`` print command (print as is, control characters included: PDF, PJL).
    """
    lines = [
        f"H{_clean(host, MAX_FIELD)}",
        f"P{_clean(user, MAX_FIELD)}",
        f"J{_clean(job_name)}",
        f"N{_clean(job_name)}",
        f"L{_clean(user, MAX_FIELD)}",
        f"{'l' if binary else 'f'}{data_name}",
        f"U{data_name}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def subcommand(code: int, size: int, name: str) -> bytes:
    """A "receive job" subcommand line (2: control file, 3: data file). Pure."""
    return bytes([code]) + f"{size} {name}\n".encode("ascii")


def _ack(sock: socket.socket, what: str) -> None:
    answer = sock.recv(1)
    if answer != b"\x00":
        raise LpdError(f"LPD server refused {what} (answer {answer!r})")


def send_lpd(
    uri: str,
    document: Path,
    *,
    job_name: str,
    user: str,
    job_number: int,
    cancel: threading.Event | None = None,
    timeout: float = 30.0,
) -> int:
    """Queue ``document`` at the LPD server of ``uri``; returns the bytes sent.

    Raises PrinterUnavailable when the server cannot be reached (nothing printed), LpdError when
    it refuses (nothing printed), LpdCanceled when ``cancel`` was set during the upload.
    """
    target = parse_lpd_uri(uri)
    host = _clean(socket.gethostname(), MAX_FIELD).replace(" ", "")
    number = job_number % 1000
    data_name = f"dfA{number:03d}{host}"
    control = control_file(host=host, user=user, job_name=job_name, data_name=data_name)
    size = os.stat(document).st_size
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as exc:
        raise PrinterUnavailable(f"LPD {target.host}:{target.port}: {exc}") from exc
    with sock:
        try:
            sock.sendall(b"\x02" + target.queue.encode("ascii", "replace") + b"\n")
            _ack(sock, f"queue {target.queue!r}")
            sock.sendall(subcommand(3, size, data_name))
            _ack(sock, "the data file")
            with document.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    if cancel is not None and cancel.is_set():
                        sock.sendall(b"\x01\n")  # abort job
                        raise LpdCanceled(f"upload of {document.name} canceled")
                    sock.sendall(chunk)
            sock.sendall(b"\x00")
            _ack(sock, "the data file's content")
            sock.sendall(subcommand(2, len(control), f"cfA{number:03d}{host}"))
            _ack(sock, "the control file")
            sock.sendall(control + b"\x00")
            _ack(sock, "the control file's content")
        except (ConnectionError, TimeoutError) as exc:
            raise LpdError(f"LPD {target.host}:{target.port}: connection broke: {exc}") from exc
    log.info("lpd: %s sent to %s (%d bytes)", job_name, uri, size)
    return size

"""Raw port 9100 ("JetDirect", ``socket://host[:port]``): the document, PJL-wrapped by the
finishing plan when the printer speaks PJL, is streamed over one TCP connection. A raw printer
says nothing back: "sent" is not "printed" (see :mod:`pullprint.daemon.snmp`).
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from pullprint.errors import IPPError, PrinterUnavailable

log = logging.getLogger(__name__)

DEFAULT_PORT = 9100
CHUNK = 64 * 1024


class SocketCanceled(IPPError):
    """The upload was canceled; the connection was reset (the printer drops the partial job)."""


class SocketBroken(IPPError):
    """The connection broke during the upload: part of the job may have printed."""


def parse_socket_uri(uri: str) -> tuple[str, int]:
    """``socket://host[:port]`` -> (host, port). Pure; raises IPPError for a bad URI."""
    parts = urlsplit(uri)
    if parts.scheme != "socket" or not parts.hostname:
        raise IPPError(f"not a socket://host[:port] URI: {uri!r}")
    try:
        return parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise IPPError(f"bad port in {uri!r}") from exc


def send_socket(
    uri: str,
    document: Path,
    *,
    cancel: threading.Event | None = None,
    timeout: float = 30.0,
) -> int:
    """Stream ``document`` to the printer at ``uri``; returns the bytes sent. Not idempotent.

    Raises PrinterUnavailable when the printer cannot be reached (nothing sent), SocketBroken
    when the connection broke after the first byte, SocketCanceled when ``cancel`` was set.
    """
    host, port = parse_socket_uri(uri)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise PrinterUnavailable(f"socket {host}:{port}: {exc}") from exc
    sent = 0
    with sock:
        try:
            with document.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise SocketCanceled(f"upload of {document.name} canceled")
                    sock.sendall(chunk)
                    sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)
            # wait for the printer to close its side: it has read everything
            while sock.recv(CHUNK):
                pass
        except OSError as exc:
            raise SocketBroken(f"socket {host}:{port}: broke after {sent} bytes: {exc}") from exc
    log.info("socket: %s sent to %s (%d bytes)", document.name, uri, sent)
    return sent

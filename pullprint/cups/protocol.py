"""The CUPS filter and backend contract: exit codes, status lines on stderr, the cancel flag.

Status lines use only the prefixes cupsd understands; each is written and flushed at once
(stderr is the channel cupsd reads while the process runs).
"""

from __future__ import annotations

import enum
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO


class BackendExit(enum.IntEnum):
    """Backend exit codes (cups/backend.h)."""

    OK = 0
    FAILED = 1  # the job failed; the error policy decides
    AUTH_REQUIRED = 2
    HOLD = 3  # hold the job (job-hold-until=indefinite)
    STOP = 4  # stop the queue
    CANCEL = 5  # cancel the job
    RETRY = 6
    RETRY_CURRENT = 7


class FilterExit(enum.IntEnum):
    """Filters exit 0 or 1 only."""

    OK = 0
    FAILED = 1


PREFIXES = frozenset({"INFO", "ERROR", "WARNING", "DEBUG", "STATE", "ATTR", "PAGE", "JOBSTATE"})


class StatusWriter:
    """Writes status lines for cupsd; never more than one line per message."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr

    def _write(self, prefix: str, text: str) -> None:
        assert prefix in PREFIXES
        line = " ".join(text.split())  # one line, whatever the message held
        self._stream.write(f"{prefix}: {line}\n")
        self._stream.flush()

    def info(self, text: str) -> None:
        self._write("INFO", text)

    def error(self, text: str) -> None:
        self._write("ERROR", text)

    def warning(self, text: str) -> None:
        self._write("WARNING", text)

    def debug(self, text: str) -> None:
        self._write("DEBUG", text)

    def attr(self, **values: str | int) -> None:
        self._write("ATTR", " ".join(f"{k.replace('_', '-')}={v}" for k, v in values.items()))

    def pages(self, total: int) -> None:
        self._write("PAGE", f"total {total}")


@dataclass(frozen=True)
class JobArgs:
    """argv[1..6] of a CUPS filter or backend."""

    job_id: int
    user: str
    title: str
    copies: int
    options: dict[str, str]
    file: str | None


def parse_options(text: str) -> dict[str, str]:
    """Parse the argv[5] option string (``a=b c='d e' f``) the way cupsParseOptions does."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        name = text[start:i]
        if not name:  # "=value" with no name: skip the whole word
            while i < n and not text[i].isspace():
                i += 1
            continue
        if i < n and text[i] == "=":
            i += 1
            value: list[str] = []
            while i < n and not text[i].isspace():
                ch = text[i]
                if ch in "'\"":
                    end = text.find(ch, i + 1)
                    end = n if end < 0 else end
                    value.append(text[i + 1 : end])
                    i = end + 1
                elif ch == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                else:
                    value.append(ch)
                    i += 1
            out[name] = "".join(value)
        else:
            out[name] = "true"
    return out


def queue_of(env: Mapping[str, str]) -> str:
    """The queue a job was printed to, from the backend's environment: the class (``CLASS``,
    set by cupsd for a job sent to a class of queues, run on one member) or else the queue
    (``PRINTER``). A pool of PullPrint queues in a class is one queue to the user and the cloud."""
    return env.get("CLASS") or env.get("PRINTER") or "PullPrint"


def parse_job_args(argv: list[str]) -> JobArgs:
    """Parse argv (argv[0] included) of a filter or backend run for a job (6 or 7 items)."""
    if len(argv) not in (6, 7):
        raise ValueError(
            f"expected 5 or 6 arguments (job user title copies options [file]), got {len(argv) - 1}"
        )
    try:
        job_id = int(argv[1])
        copies = int(argv[4])
    except ValueError as exc:
        raise ValueError(f"job-id and copies must be integers: {exc}") from exc
    return JobArgs(
        job_id=job_id,
        user=argv[2],
        title=argv[3],
        copies=max(1, copies),
        options=parse_options(argv[5]),
        file=argv[6] if len(argv) == 7 else None,
    )


class Terminated(Exception):
    """SIGTERM arrived while the main thread was in an interruptible wait (e.g. reading stdin)."""


class CancelFlag:
    """Set by the first SIGTERM; library code checks it between chunks of work.

    A blocking read is not woken by a flag (Python retries it after the handler), so code that
    waits on input wraps the wait in :meth:`interruptible`, where SIGTERM raises Terminated.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._interruptible = False

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def _on_signal(self, _sig: int, _frame: object) -> None:
        self.set()
        if self._interruptible:
            self._interruptible = False
            raise Terminated

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within this block SIGTERM raises Terminated at once (also if it came before)."""
        if self.is_set():
            raise Terminated
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    @contextmanager
    def on_sigterm(self) -> Iterator[CancelFlag]:
        """Install a SIGTERM handler that sets this flag, restoring the previous one after."""
        previous = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

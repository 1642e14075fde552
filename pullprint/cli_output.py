"""What the ``pullprint`` command line prints: aligned tables, JSON, one-line errors and progress
bars. Tables and JSON go to stdout (what scripts read); progress bars and errors go to stderr, and
a progress bar is drawn only when stderr is a terminal (tqdm), so piped output stays clean.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from tqdm import tqdm


def emit_json(data: Any, out: IO[str] | None = None) -> None:
    """Write ``data`` as indented JSON and a newline to ``out`` (stdout)."""
    print(json.dumps(data, indent=2, sort_keys=False), file=out or sys.stdout)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    empty: str = "",
    out: IO[str] | None = None,
) -> None:
    """Write ``rows`` under ``headers`` as left-aligned columns two spaces apart (stdout);
    ``empty`` is printed instead when there are no rows. The last column is not padded."""
    target = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    if not cells:
        if empty:
            print(empty, file=target)
        return
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    for row in [list(headers), *cells]:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        print("  ".join([*padded, row[-1]]).rstrip(), file=target)


def listing(
    as_json: bool,
    data: Any,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    empty: str = "",
) -> None:
    """Print a listing: ``data`` as JSON (what the API answered) when ``as_json``, else ``rows``
    as a :func:`table` under ``headers`` (``empty`` when there are none)."""
    if as_json:
        emit_json(data)
    else:
        table(headers, rows, empty=empty)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def error(message: str) -> None:
    """Write ``pullprint: MESSAGE`` as one line on stderr."""
    print(f"pullprint: {' '.join(message.split())}", file=sys.stderr)


def progress(total: int, what: str) -> tqdm[Any]:
    """A byte-counting progress bar on stderr, drawn only when stderr is a terminal. The caller
    closes it (it is a context manager)."""
    return tqdm(
        total=total,
        desc=what,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not _is_tty(sys.stderr),
        leave=False,
    )


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (ValueError, io.UnsupportedOperation):
        return False


class ProgressReader(io.RawIOBase):
    """A read-only file of ``size`` bytes that reads from ``fh`` and advances ``bar`` by what
    was read: pass it as a request body to show an upload's progress (its length is ``size``,
    so the body is sent with a Content-Length). Closing it does not close ``fh``."""

    def __init__(self, fh: IO[bytes], bar: tqdm[Any], size: int) -> None:
        super().__init__()
        self._fh = fh
        self._bar = bar
        self._size = size
        self._read = 0

    def __len__(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fh.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._advance(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._advance(len(data))
        return data

    def _advance(self, n: int) -> None:
        self._read += n
        self._bar.update(n)


@contextmanager
def reading_with_progress(fh: IO[bytes], total: int, what: str) -> Iterator[ProgressReader]:
    """``fh`` wrapped so that reading it draws a progress bar of ``total`` bytes (see
    :func:`progress`); the bar is removed at the end."""
    with progress(total, what) as bar:
        yield ProgressReader(fh, bar, total)

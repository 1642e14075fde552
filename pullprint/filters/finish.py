"""The CUPS filter ``pullprint-finish``: sanitise the PDF, apply its layout, count its pages.

CUPS runs it with ``job user title copies options [file]``; non-PDF jobs (text, images,
PostScript) reach it as PDF through CUPS's own filters (the PPD's ``*cupsFilter2``). It writes the
prepared PDF to stdout, status lines to stderr, and exits 0 or 1; a document it cannot read or an
option value it does not accept gives ONE ``ERROR:`` line and exit 1 (the queue's abort-job policy
drops the job, the queue goes on). The work is
:func:`pullprint.filters.submission.prepare_submission`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from pullprint.cups.protocol import FilterExit, JobArgs, StatusWriter, parse_job_args
from pullprint.errors import DocumentError, PullprintError
from pullprint.filters.options import FinishingOptions, OptionError
from pullprint.filters.sanitize import Output

CHUNK = 1 << 16


def main(argv: list[str] | None = None) -> int:
    """Run the filter; returns the exit code (0 or 1). Writes the document to stdout."""
    argv = list(sys.argv if argv is None else argv)
    tmpdir = os.environ.get("TMPDIR") or None
    return run(argv, sys.stdin.buffer, sys.stdout.buffer, StatusWriter(), tmpdir)


def run(
    argv: list[str],
    stdin: BinaryIO,
    stdout: BinaryIO,
    status: StatusWriter,
    tmpdir: str | None,
    *,
    opened: bool = False,
    direct: bool = False,
) -> FilterExit:
    """One run of the filter for ``argv`` (argv[0] included): the document is the file argv[6],
    else ``stdin``; the prepared PDF goes to ``stdout``, status lines to ``status``; work files
    in ``tmpdir``. ``opened``: argv[6] was opened by the caller and is read from ``stdin``
    (submitd, which gets the open file from the filter executable); messages name it all the
    same. ``direct``: ``stdout`` is a file the caller discards unless the run exits 0 (submitd
    again): the prepared PDF is written straight into it (a job without layout options makes
    no work file at all). Used by :func:`main` and by submitd (the hand-off)."""
    try:
        args = parse_job_args(argv)
    except ValueError as exc:
        status.error(f"pullprint-finish: {exc}")
        return FilterExit.FAILED
    try:
        options = FinishingOptions.from_cups(args.options, copies=args.copies)
    except OptionError as exc:
        status.error(f"pullprint-finish: job {args.job_id} rejected: {exc}")
        return FilterExit.FAILED
    with _document(args, stdin, opened, tmpdir) as source:
        if direct:
            return _prepare(args, source, stdout, stdout, options, status, tmpdir)
        # Into a work file first: a failed run must leave nothing in stdout (the backend's input).
        with tempfile.TemporaryDirectory(prefix="pullprint-finish-", dir=tmpdir) as work:
            prepared = Path(work) / "prepared.pdf"
            return _prepare(args, source, prepared, stdout, options, status, tmpdir)


def _prepare(
    args: JobArgs,
    source: Path,
    prepared: Output,
    stdout: BinaryIO,
    options: FinishingOptions,
    status: StatusWriter,
    tmpdir: str | None,
) -> FilterExit:
    """Prepare ``source`` into ``prepared`` (stdout itself, or a work file copied to it once the
    document is ready; a layout's work files in ``tmpdir``) and say what was done."""
    from pullprint.filters.submission import prepare_submission

    try:
        result = prepare_submission(source, prepared, options, work_dir=tmpdir)
    except DocumentError as exc:
        why = str(exc).replace(str(source), args.file or "stdin")  # not a work file's name
        status.error(f"pullprint-finish: job {args.job_id} rejected: {why}")
        return FilterExit.FAILED
    except PullprintError as exc:
        status.error(f"pullprint-finish: job {args.job_id} failed: {exc}")
        return FilterExit.FAILED
    if result.removed:
        status.info(f"pullprint-finish: removed {', '.join(result.removed)}")
    if result.applied:
        status.info(f"pullprint-finish: applied {result.applied}")
    status.info(f"pullprint-finish: {result.pages} page(s)")
    status.attr(job_impressions=result.pages * options.copies)
    if isinstance(prepared, Path):
        with prepared.open("rb") as fh:
            shutil.copyfileobj(fh, stdout, CHUNK)
    stdout.flush()
    return FilterExit.OK


PROC_FD = Path("/proc/self/fd")


@contextlib.contextmanager
def _document(args: JobArgs, stdin: BinaryIO, opened: bool, tmpdir: str | None) -> Iterator[Path]:
    """The job's document as a path pikepdf can open: argv[6] itself; the file ``stdin`` has
    open (``opened``) through /proc/self/fd when this process may open it (submitd as root);
    else a copy of ``stdin`` in an unnamed temp file in ``tmpdir`` (submitd as the pullprint
    user, who may not read CUPS's spool file: the filter executable opened it), named the same
    way. Changes nothing; the copy is gone after."""
    if args.file and not opened:
        yield Path(args.file)
        return
    own = _reopenable(stdin) if opened else None
    if own is not None:
        yield own
        return
    with tempfile.TemporaryFile(dir=tmpdir) as copy:
        _copy(stdin, copy)
        yield PROC_FD / str(copy.fileno())


def _fd_of(file: BinaryIO) -> int | None:
    """The descriptor under ``file`` when it is a regular file, else None."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _reopenable(file: BinaryIO) -> Path | None:
    """/proc/self/fd/N for the regular file ``file`` when this process may open it, else None."""
    fd = _fd_of(file)
    if fd is None:
        return None
    path = PROC_FD / str(fd)
    try:
        with path.open("rb"):
            pass
    except OSError:  # not ours to read
        return None
    return path


def _copy(source: BinaryIO, dest: IO[bytes]) -> None:
    """Copy ``source`` from where it stands to its end into ``dest``: in the kernel
    (``sendfile``) when ``source`` is a regular file, else through a buffer."""
    fd = _fd_of(source)
    if fd is None:
        shutil.copyfileobj(source, dest, CHUNK)
    else:
        dest.flush()
        offset, size = source.tell(), os.fstat(fd).st_size
        while offset < size:
            sent = os.sendfile(dest.fileno(), fd, offset, size - offset)
            if sent == 0:
                break
            offset += sent
    dest.flush()

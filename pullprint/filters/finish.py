"""The CUPS filter ``pullprint-finish``: sanitise the PDF, apply its layout, count its pages.

CUPS runs it with ``job user title copies options [file]``; non-PDF jobs (text, images,
PostScript) reach it as PDF through CUPS's own filters (the PPD's ``*cupsFilter2``). It writes the
prepared PDF to stdout, status lines to stderr, and exits 0 or 1; a document it cannot read or an
option value it does not accept gives ONE ``ERROR:`` line and exit 1 (the queue's abort-job policy
drops the job, the queue goes on). The work is
:func:`pullprint.filters.submission.prepare_submission`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from pullprint.cups.protocol import FilterExit, StatusWriter, parse_job_args
from pullprint.errors import DocumentError, PullprintError
from pullprint.filters.options import FinishingOptions, OptionError

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
) -> FilterExit:
    """One run of the filter for ``argv`` (argv[0] included): the document is the file argv[6],
    else ``stdin``; the prepared PDF goes to ``stdout``, status lines to ``status``; work files
    in a temp folder under ``tmpdir``. ``opened``: argv[6] was opened by the caller and is read
    from ``stdin`` (submitd, which gets the open file from the filter executable); messages
    name it all the same. Used by :func:`main` and by submitd (the hand-off)."""
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
    from pullprint.filters.submission import prepare_submission

    with tempfile.TemporaryDirectory(prefix="pullprint-finish-", dir=tmpdir) as work:
        if args.file and not opened:
            source = Path(args.file)
        else:
            source = Path(work) / "input.pdf"
            with source.open("wb") as out:
                shutil.copyfileobj(stdin, out, CHUNK)
        prepared = Path(work) / "prepared.pdf"
        try:
            result = prepare_submission(source, prepared, options)
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
        with prepared.open("rb") as fh:
            shutil.copyfileobj(fh, stdout, CHUNK)
        stdout.flush()
    return FilterExit.OK

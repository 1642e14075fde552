"""The CUPS filter ``pullprint-finish``: check the document is a readable PDF and count its pages.

CUPS runs it with ``job user title copies options [file]``; it writes the PDF to stdout, status
lines to stderr, and exits 0 or 1 (the queue's abort-job policy drops a job that fails here).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from pullprint.cups.protocol import FilterExit, StatusWriter, parse_job_args
from pullprint.errors import DocumentError
from pullprint.filters.document import inspect_pdf

CHUNK = 1 << 16


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    status = StatusWriter()
    try:
        args = parse_job_args(argv)
    except ValueError as exc:
        status.error(f"pullprint-finish: {exc}")
        return FilterExit.FAILED
    tmpdir = os.environ.get("TMPDIR") or None
    with tempfile.TemporaryDirectory(prefix="pullprint-finish-", dir=tmpdir) as work:
        if args.file:
            source = Path(args.file)
        else:
            source = Path(work) / "input.pdf"
            with source.open("wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, CHUNK)
        try:
            info = inspect_pdf(source)
        except DocumentError as exc:
            status.error(f"pullprint-finish: job {args.job_id} rejected: {exc}")
            return FilterExit.FAILED
        status.info(f"pullprint-finish: {info.pages} page(s)")
        status.attr(job_impressions=info.pages * args.copies)
        with source.open("rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer, CHUNK)
        sys.stdout.buffer.flush()
    return FilterExit.OK

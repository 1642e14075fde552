"""The ``-c`` print command of the test ippeveprinter: makes job counts real and logs each job.

ippeveprinter runs ``CMD FILE`` for each job with the job's attributes in ``IPP_*`` variables. This
script counts the document's pages (pikepdf, else ``qpdf --show-npages``; PWG raster by its page
headers; other formats: 1 page), multiplies by ``IPP_COPIES``, and prints
``ATTR: job-impressions-completed=N job-media-sheets-completed=M`` on stderr (sheets halved, rounded
up per copy, for two-sided ``IPP_SIDES``). It appends one JSON line per job to ``--log``.
``--delay S`` takes S seconds first (a slow printer, to test cancelling) and stops at once when the
job is canceled (it asks the printer with pullprint's own IPP client, so the wrapper puts the
package on PYTHONPATH). Otherwise stdlib + pikepdf only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PWG_SYNC = b"RaS2"
PWG_HEADER = 1796


def count_pages(path: Path, content_type: str) -> int | None:
    """Pages of the document at ``path`` (None when they cannot be counted). Reads only."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"%PDF" or content_type == "application/pdf":
        return _pdf_pages(path)
    if magic == PWG_SYNC or content_type == "image/pwg-raster":
        return _pwg_pages(path)
    return 1 if path.stat().st_size else 0


def _pdf_pages(path: Path) -> int | None:
    try:
        import pikepdf
    except ImportError:  # qpdf prints the stored /Count; good enough without pikepdf
        pass
    else:
        try:
            with pikepdf.open(path) as pdf:
                return len(pdf.pages)
        except pikepdf.PdfError as exc:
            print(f"ERROR: cannot read PDF: {exc}", file=sys.stderr)
            return None
    done = subprocess.run(["qpdf", "--show-npages", str(path)], capture_output=True, text=True)
    return int(done.stdout.strip()) if done.stdout.strip().isdigit() else None


def _pwg_pages(path: Path) -> int | None:
    """Pages of a PWG raster stream: walk the page headers, skipping each page's bitmap."""
    pages = 0
    with path.open("rb") as handle:
        if handle.read(4) != PWG_SYNC:
            return None
        while True:
            header = handle.read(PWG_HEADER)
            if len(header) < PWG_HEADER:
                return pages
            pages += 1
            height = int.from_bytes(header[376:380], "big")
            bits_per_pixel = int.from_bytes(header[388:392], "big")
            bytes_per_line = int.from_bytes(header[392:396], "big")
            pixel = max(1, (bits_per_pixel + 7) // 8)
            # the bitmap is PackBits-style compressed: decode line repeats to find its end
            lines = 0
            while lines < height:
                repeat = handle.read(1)
                if not repeat:
                    return pages
                lines += repeat[0] + 1
                done = 0
                while done < bytes_per_line:
                    code = handle.read(1)
                    if not code:
                        return pages
                    if code[0] < 128:  # repeat next pixel code+1 times (pixel = bpp/8 bytes)
                        handle.seek(pixel, os.SEEK_CUR)
                        done += (code[0] + 1) * pixel
                    else:
                        count = (257 - code[0]) * pixel
                        handle.seek(count, os.SEEK_CUR)
                        done += count


def _canceled() -> bool:
    """True once this job is being canceled (ippeveprinter does not stop the command itself:
    the job stays processing-to-stop-point until the command exits)."""
    from pullprint.errors import IPPError, PrinterUnavailable
    from pullprint.ipp.client import IppClient

    uri, job_id = os.environ.get("IPP_JOB_PRINTER_URI", ""), os.environ.get("IPP_JOB_ID", "")
    if not uri or not job_id.isdigit():
        return False
    try:
        with IppClient(uri, timeout=2.0, verify=False) as client:
            status = client.get_job_attributes(int(job_id))
    except PrinterUnavailable:
        return True  # the printer is gone (stopped): stop with it, leave no orphan behind
    except IPPError:
        return False
    return status.is_final or "processing-to-stop-point" in status.job_state_reasons


def slow_print(seconds: float) -> bool:
    """Take ``seconds``, like a slow printer, stopping early when the job is canceled.
    Returns False when it was canceled."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        print("INFO: printing slowly", file=sys.stderr, flush=True)
        if _canceled():
            return False
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return True


def pages_in_ranges(pages: int, ranges: str) -> int:
    """How many of ``pages`` an IPP_PAGE_RANGES value like ``1-2,5-5`` selects (all if empty)."""
    if not ranges.strip():
        return pages
    selected: set[int] = set()
    for part in ranges.split(","):
        low, _sep, high = part.strip().partition("-")
        if not low.isdigit():
            continue
        upper = int(high) if high.isdigit() else int(low)
        selected.update(range(int(low), min(upper, pages) + 1))
    return len(selected)


def main(argv: list[str] | None = None) -> int:
    """Count, report and log one job; exit 0 (1 when the file cannot be read at all)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.delay > 0 and not slow_print(args.delay):
        print("INFO: job canceled at a stop point", file=sys.stderr, flush=True)
        return 0
    content_type = os.environ.get("CONTENT_TYPE", "")
    try:
        pages = count_pages(args.file, content_type)
    except OSError as exc:
        print(f"ERROR: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    copies_text = os.environ.get("IPP_COPIES", "1")
    copies = int(copies_text) if copies_text.isdigit() else 1
    sides = os.environ.get("IPP_SIDES", os.environ.get("IPP_SIDES_DEFAULT", "one-sided"))
    color = os.environ.get(
        "IPP_PRINT_COLOR_MODE", os.environ.get("IPP_PRINT_COLOR_MODE_DEFAULT", "")
    )
    page_ranges = os.environ.get("IPP_PAGE_RANGES", "")
    printed = pages_in_ranges(pages, page_ranges) if pages is not None else None
    if printed is not None:
        per_copy = (printed + 1) // 2 if sides.startswith("two-sided") else printed
        impressions, sheets = printed * copies, per_copy * copies
        print(
            f"ATTR: job-impressions-completed={impressions} job-media-sheets-completed={sheets}",
            file=sys.stderr,
            flush=True,
        )
    entry = {
        "file": args.file.name,
        "job_id": os.environ.get("IPP_JOB_ID"),
        "job_name": os.environ.get("IPP_JOB_NAME"),
        "user": os.environ.get("IPP_JOB_ORIGINATING_USER_NAME"),
        "content_type": content_type,
        "pages": pages,
        "printed_pages": printed,
        "copies": os.environ.get("IPP_COPIES"),
        "sides": os.environ.get("IPP_SIDES"),
        "print_color_mode": os.environ.get("IPP_PRINT_COLOR_MODE"),
        "media": os.environ.get("IPP_MEDIA"),
        "page_ranges": page_ranges or None,
        "effective_sides": sides,
        "effective_color_mode": color,
        "time": time.time(),
    }
    with args.log.open("a", encoding="utf-8") as log:  # one short write: lines never interleave
        log.write(json.dumps(entry) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The finishing engine: carries out a plan's ``pdf`` work on a document and counts the result.

Proven tools do the work, each run with an argument list (never a shell) and a time limit:
- qpdf selects pages (``page-ranges`` count document pages BEFORE number-up, so with number-up or
  booklet the pages are selected first; without them pdftopdf's page-ranges mean the same);
- cups-filters' pdftopdf imposes (number-up, layout, borders, booklet), rotates, scales
  (fit-to-page, A4 <-> Letter) and repeats copies (collated or not, a blank back page
  between two-sided copies);
- ghostscript converts to greyscale (pdfwrite, fast colour path) and renders PWG raster;
- poppler's pdftops writes PostScript.

Every output is written to a temporary file next to the destination and moved into place, so a
destination is either absent or complete. pdftopdf runs without a PPD and with a clean environment:
it then makes copies itself (argv[4]) and takes the paper from ``PageSize``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pullprint.errors import PullprintError
from pullprint.filters.capabilities import PDF, POSTSCRIPT, PWG_RASTER
from pullprint.filters.options import MEDIA, FinishingOptions, format_page_ranges, select_pages
from pullprint.filters.pjl import build_pjl_footer, build_pjl_header
from pullprint.filters.plan import FinishingPlan

log = logging.getLogger(__name__)

PDFTOPDF = Path("/usr/lib/cups/filter/pdftopdf")
CHUNK = 1 << 16
DEFAULT_TIMEOUT = 600.0


class FinishingError(PullprintError):
    """A finishing tool failed or produced something unexpected (the message names it)."""


@dataclass(frozen=True)
class FinishedDocument:
    """The finished document and its exact counts for accounting.

    ``pages``: pages in the finished file (copies made in the document and blank back pages
    included). ``impressions``: printed sides for the whole job, all copies (wherever made).
    ``sheets``: sheets of paper (two-sided halves them, rounded up per copy).
    """

    pages: int
    impressions: int
    sheets: int
    document_format: str
    copies: int = 1
    pages_per_copy: int = 0


def _clean_env() -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    if os.environ.get("TMPDIR"):
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def _run(args: list[str], *, timeout: float, stdout: Path | None = None) -> None:
    """Run a tool (argument list, no shell); raise FinishingError with its last stderr line."""
    log.debug("running %s", args)
    try:
        if stdout is None:
            proc = subprocess.run(
                args,
                capture_output=True,
                timeout=timeout,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        else:
            with stdout.open("wb") as out:
                proc = subprocess.run(
                    args,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    timeout=timeout,
                    env=_clean_env(),
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
    except subprocess.TimeoutExpired as exc:
        raise FinishingError(f"{Path(args[0]).name} took longer than {timeout:.0f} s") from exc
    except OSError as exc:
        raise FinishingError(f"cannot run {args[0]}: {exc}") from exc
    if proc.returncode != 0:
        lines = [
            ln
            for ln in proc.stderr.decode("utf-8", "replace").splitlines()
            if ln.strip() and not ln.startswith("DEBUG")
        ]
        last = lines[-1] if lines else "no message"
        raise FinishingError(f"{Path(args[0]).name} failed (exit {proc.returncode}): {last}")


def count_pages(path: Path) -> int:
    """The number of page objects in a PDF (never the stored /Count). Changes nothing."""
    import pikepdf

    with pikepdf.open(path) as pdf:
        return len(pdf.pages)


def _facts(path: Path) -> tuple[int, tuple[float, float]]:
    """Page count and first page size (points, /Rotate applied) in one pikepdf open."""
    import pikepdf

    from pullprint.filters.sanitize import page_size

    with pikepdf.open(path) as pdf:
        return len(pdf.pages), page_size(pdf.pages[0])


def _page_size_option(media: str | None, size: tuple[float, float]) -> str:
    if media is not None:
        return MEDIA[media][0]
    width, height = size
    return f"Custom.{width:.2f}x{height:.2f}"


def layout_pages(options: FinishingOptions, pages: int) -> int:
    """Pages of one copy after page-ranges, number-up and booklet. Pure."""
    selected = len(select_pages(options.page_ranges, pages)) if options.page_ranges else pages
    if options.booklet:
        return 2 * math.ceil(selected / 4)
    return math.ceil(selected / options.number_up)


def _sheet_ranges(options: FinishingOptions, pages: int) -> str | None:
    """pdftopdf's page-ranges (counted after number-up) selecting exactly the same document pages
    as ``options.page_ranges`` (counted before), or None when no sheet range is exact. Pure.

    Exact when every range starts on a sheet boundary and ends on one (or at the last page); then
    qpdf's selection pass (a copy of the document) is not needed.
    """
    n = options.number_up
    out: list[tuple[int, int]] = []
    for first, last in options.page_ranges:
        if first > pages:
            continue
        last = min(last, pages)
        if (first - 1) % n or (last % n and last != pages):
            return None
        out.append(((first - 1) // n + 1, math.ceil(last / n)))
    return format_page_ranges(tuple(out)) if out else None


def run_layout(
    src: Path,
    dst: Path,
    options: FinishingOptions,
    *,
    copies: int = 1,
    collate: bool = True,
    pad_for_duplex: bool = False,
    paper: str | None = None,
    fit: bool = False,
    source_pages: int | None = None,
    first_page_size: tuple[float, float] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Write ``src`` laid out per ``options`` (and ``copies`` in the document) to ``dst``.

    ``paper`` (PWG media name) is the sheet to lay out on (default: the first page's size);
    ``fit`` scales pages to it. Returns the pages of one copy (without blank padding).
    ``src`` is unchanged; ``dst`` is written atomically. Not idempotent on its own output
    (2-up of a 2-up is 4 pages a sheet):
    the plan's ``document`` steps and the ``pullprint:Applied`` mark prevent a second run.
    """
    if source_pages is None or first_page_size is None:
        source_pages, first_page_size = _facts(src)
    pages = source_pages
    selected = select_pages(options.page_ranges, pages) if options.page_ranges else []
    if options.page_ranges and not selected:
        raise FinishingError(
            f"page-ranges {format_page_ranges(options.page_ranges)} selects no page of this "
            f"{pages}-page document"
        )
    per_copy = layout_pages(options, pages)
    with tempfile.TemporaryDirectory(prefix=".finish-", dir=dst.parent) as work:
        source = src
        ranges_in_pdftopdf = ""
        if options.page_ranges:
            clipped = format_page_ranges(
                tuple((a, min(b, pages)) for a, b in options.page_ranges if a <= pages)
            )
            sheets = None if options.booklet else _sheet_ranges(options, pages)
            if sheets is not None:
                ranges_in_pdftopdf = sheets
            elif options.number_up > 1 or options.booklet:
                source = Path(work) / "selected.pdf"
                _run(
                    ["qpdf", "--empty", "--pages", str(src), clipped, "--", str(source)],
                    timeout=timeout,
                )
            else:
                ranges_in_pdftopdf = clipped
        # the paper: the first selected page's size, unless a media is given
        if options.page_ranges and selected[0] != 1 and paper is None:
            first_page_size = _facts(source)[1]
        opts = [f"PageSize={_page_size_option(paper, first_page_size)}"]
        if options.booklet:
            opts.append("booklet=on")
        elif options.number_up > 1:
            opts += [
                f"number-up={options.number_up}",
                f"number-up-layout={options.number_up_layout}",
                f"page-border={options.page_border}",
            ]
        if ranges_in_pdftopdf:
            opts.append(f"page-ranges={ranges_in_pdftopdf}")
        if options.orientation not in (None, 3):
            opts.append(f"orientation-requested={options.orientation}")
        if fit:
            opts.append("fit-to-page=true")
        if copies > 1:
            opts.append(f"collate={'true' if collate else 'false'}")
            if pad_for_duplex:
                opts.append("sides=two-sided-long-edge")
        out = Path(work) / "out.pdf"
        _run(
            [
                str(PDFTOPDF),
                "1",
                "pullprint",
                "pullprint",
                str(copies),
                " ".join(opts),
                str(source),
            ],
            timeout=timeout,
            stdout=out,
        )
        total = count_pages(out)
        padded = per_copy + (per_copy % 2 if pad_for_duplex and copies > 1 else 0)
        if total != padded * copies:
            raise FinishingError(
                f"pdftopdf wrote {total} pages, expected {padded * copies} "
                f"({per_copy} per copy, {copies} copies)"
            )
        out.replace(dst)
    return per_copy


def greyscale(src: Path, dst: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Write ``src`` converted to DeviceGray to ``dst`` with ghostscript (fast colour path).

    ``src`` is unchanged; ``dst`` is written atomically. Idempotent in effect (grey stays grey).
    """
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.gs")
    try:
        _run(
            [
                "gs",
                "-q",
                "-dNOPAUSE",
                "-dBATCH",
                "-dSAFER",
                "-sDEVICE=pdfwrite",
                "-sColorConversionStrategy=Gray",
                "-dProcessColorModel=/DeviceGray",
                "-dUseFastColor=true",
                "-dAutoRotatePages=/None",
                f"-sOutputFile={tmp}",
                str(src),
            ],
            timeout=timeout,
        )
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def to_postscript(src: Path, dst: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Write ``src`` as level 3 PostScript to ``dst`` (poppler pdftops; atomic)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.ps")
    try:
        _run(["pdftops", "-level3", "-origpagesizes", str(src), str(tmp)], timeout=timeout)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def to_pwg_raster(
    src: Path, dst: Path, *, dpi: int = 300, grey: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Render ``src`` to PWG raster at ``dpi`` (sgray_8 or srgb_8) with ghostscript (atomic)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.pwg")
    try:
        _run(
            [
                "gs",
                "-q",
                "-dNOPAUSE",
                "-dBATCH",
                "-dSAFER",
                "-sDEVICE=pwgraster",
                f"-r{int(dpi)}",
                f"-dcupsColorSpace={18 if grey else 19}",
                "-dcupsBitsPerColor=8",
                f"-sOutputFile={tmp}",
                str(src),
            ],
            timeout=timeout,
        )
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _wrap_pjl(plan: FinishingPlan, src: Path, dst: Path) -> None:
    assert plan.pjl is not None
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.pjl")
    try:
        with tmp.open("wb") as out, src.open("rb") as body:
            out.write(build_pjl_header(plan.pjl))
            shutil.copyfileobj(body, out, CHUNK)
            out.write(build_pjl_footer(plan.pjl))
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def apply_plan(
    plan: FinishingPlan, src: Path, dst: Path, *, timeout: float = DEFAULT_TIMEOUT
) -> FinishedDocument:
    """Carry out the plan's ``pdf`` work on ``src`` (a sanitised PDF) into ``dst``; count it.

    ``src`` is unchanged; ``dst`` is written atomically (replaced if it exists). Applying the same
    plan to the same source again gives the same document and counts (idempotent per source).
    Raises FinishingError if a tool fails or a count does not add up.
    """
    work = plan.work
    src_pages, first_size = _facts(src)
    copies = plan.options.copies
    needs_layout = work.layout.has_layout or work.copies > 1 or work.media is not None
    with tempfile.TemporaryDirectory(prefix=".plan-", dir=dst.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        current = src
        if needs_layout:
            laid = tmp / "laid.pdf"
            per_copy = run_layout(
                current,
                laid,
                work.layout,
                copies=work.copies,
                collate=work.collate,
                pad_for_duplex=work.pad_for_duplex,
                paper=work.media,
                first_page_size=first_size,
                fit=work.layout.fit_to_page or work.media is not None,
                source_pages=src_pages,
                timeout=timeout,
            )
            current = laid
        else:
            per_copy = src_pages
        padded = per_copy + (per_copy % 2 if work.pad_for_duplex and work.copies > 1 else 0)
        file_pages = padded * work.copies if needs_layout else src_pages
        if work.greyscale and work.output_format != PWG_RASTER:
            grey = tmp / "grey.pdf"
            greyscale(current, grey, timeout=timeout)
            current = grey
        if work.output_format == POSTSCRIPT:
            converted = tmp / "out.ps"
            to_postscript(current, converted, timeout=timeout)
            current = converted
        elif work.output_format == PWG_RASTER:
            converted = tmp / "out.pwg"
            dpi = work.raster_dpi
            to_pwg_raster(
                current,
                converted,
                dpi=dpi,
                grey=work.greyscale or work.raster_grey,
                timeout=timeout,
            )
            current = converted
        elif work.output_format != PDF:
            raise FinishingError(f"cannot produce {work.output_format}")
        target = tmp / "final"
        if plan.pjl is not None:
            _wrap_pjl(plan, current, target)
        elif current is src:
            shutil.copyfile(current, target)
        else:
            current.replace(target)
        target.replace(dst)
    sides = 2 if plan.two_sided else 1
    return FinishedDocument(
        pages=file_pages,
        impressions=per_copy * copies,
        sheets=math.ceil(per_copy / sides) * copies,
        document_format=work.output_format,
        copies=copies,
        pages_per_copy=per_copy,
    )

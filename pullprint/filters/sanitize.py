"""Sanitising a PDF: open it with pikepdf (qpdf repairs what it can), drop active content, check
its pages, and write a clean copy with pullprint's marks in the document info.

Removed: the document's OpenAction and additional actions (/AA), JavaScript name trees, embedded
files (and file attachment annotations), and link actions that run scripts, launch programs or
fetch data. Pages and their content are kept as they are.

Marks (document info, keys in the ``pullprint:`` namespace, values are strings):
``/pullprint:Pages`` page count of this file, ``/pullprint:Applied`` the layout options already
applied (``number-up=2 page-ranges=1-3``), ``/pullprint:Options`` the options the user chose.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pullprint.errors import DocumentError
from pullprint.filters.document import PDF_MAGIC

log = logging.getLogger(__name__)

MAX_PAGES = 50_000
MAX_PAGE_SIDE = 14_400.0  # points (200 inches): the PDF implementation limit of user space
MARK_PAGES = "/pullprint:Pages"
MARK_APPLIED = "/pullprint:Applied"
MARK_OPTIONS = "/pullprint:Options"
DANGEROUS_ACTIONS = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/ImportData",
        "/SubmitForm",
        "/ResetForm",
        "/GoToE",
        "/RichMediaExecute",
        "/Rendition",
        "/Sound",
        "/Movie",
    }
)


@dataclass(frozen=True)
class SanitizeReport:
    """What :func:`sanitize_pdf` found and did."""

    pages: int
    removed: tuple[str, ...]
    repaired: bool
    first_page_size: tuple[float, float]  # width, height in points, /Rotate applied
    applied: str  # the /pullprint:Applied mark the input already had ("" if none)


def page_size(page: Any) -> tuple[float, float]:
    """Width and height (points) of a pikepdf page's MediaBox with its /Rotate applied."""
    box = [float(v) for v in page.mediabox]
    width, height = abs(box[2] - box[0]), abs(box[3] - box[1])
    rotate = int(page.obj.get("/Rotate", 0)) % 180 if "/Rotate" in page.obj else 0
    return (height, width) if rotate == 90 else (width, height)


def _check_pages(pdf: Any, max_pages: int) -> tuple[int, tuple[float, float]]:
    pages = len(pdf.pages)
    if pages == 0:
        raise DocumentError("the PDF has no pages")
    if pages > max_pages:
        raise DocumentError(f"the PDF has {pages} pages; pullprint takes at most {max_pages}")
    first = (0.0, 0.0)
    for number, page in enumerate(pdf.pages, start=1):
        try:
            width, height = page_size(page)
        except (ValueError, TypeError, IndexError) as exc:
            raise DocumentError(f"page {number} has no valid MediaBox") from exc
        if not (math.isfinite(width) and math.isfinite(height)) or width < 1 or height < 1:
            raise DocumentError(f"page {number} has an empty or invalid MediaBox")
        if width > MAX_PAGE_SIDE or height > MAX_PAGE_SIDE:
            raise DocumentError(
                f"page {number} is {width:.0f} x {height:.0f} pt; the largest page pullprint "
                f"prints is {MAX_PAGE_SIDE:.0f} pt (200 in) on a side"
            )
        if number == 1:
            first = (width, height)
    return pages, first


def _drop_action(holder: Any, key: str, removed: list[str], what: str) -> None:
    import pikepdf

    action = holder.get(key)
    if action is None:
        return
    if (
        isinstance(action, pikepdf.Dictionary)
        and str(action.get("/S", "")) not in DANGEROUS_ACTIONS
    ):
        if "/Next" not in action:
            return
    del holder[key]
    removed.append(what)


def _sanitize(pdf: Any) -> list[str]:
    """Remove active content from an open pikepdf.Pdf in place; return what was removed."""
    import pikepdf

    removed: list[str] = []
    root = pdf.Root
    for key, what in (
        ("/OpenAction", "open action"),
        ("/AA", "document actions"),
        ("/Collection", "portfolio"),
    ):
        if key in root:
            del root[key]
            removed.append(what)
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary):
        for key, what in (("/JavaScript", "JavaScript"), ("/EmbeddedFiles", "embedded files")):
            if key in names:
                del names[key]
                removed.append(what)
    form = root.get("/AcroForm")
    if isinstance(form, pikepdf.Dictionary) and "/XFA" in form:
        del form["/XFA"]
        removed.append("XFA form scripts")
    for page in pdf.pages:
        obj = page.obj
        if "/AA" in obj:
            del obj["/AA"]
            removed.append("page actions")
        annots = obj.get("/Annots")
        if not isinstance(annots, pikepdf.Array):
            continue
        keep = pikepdf.Array()
        for annot in annots:
            if not isinstance(annot, pikepdf.Dictionary):
                continue
            if annot.get("/Subtype") == pikepdf.Name.FileAttachment:
                removed.append("file attachment")
                continue
            if "/AA" in annot:
                del annot["/AA"]
                removed.append("annotation actions")
            _drop_action(annot, "/A", removed, "link action")
            keep.append(annot)
        if len(keep) != len(annots):
            obj.Annots = keep
    return sorted(set(removed))


def open_pdf(path: Path) -> Any:
    """Open ``path`` with pikepdf (qpdf repairs a broken xref); raise DocumentError if it cannot.

    Changes nothing on disk. The caller closes the returned pikepdf.Pdf.
    """
    import pikepdf

    with path.open("rb") as fh:
        head = fh.read(1024)
    if PDF_MAGIC not in head:
        raise DocumentError("not a PDF document (no %PDF- header in the first 1024 bytes)")
    try:
        return pikepdf.open(path)
    except pikepdf.PasswordError as exc:
        raise DocumentError("the PDF is password-protected; print it without a password") from exc
    except pikepdf.PdfError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DocumentError(f"unreadable PDF: {first}") from exc
    except RecursionError as exc:
        raise DocumentError("unreadable PDF: objects nested too deeply") from exc


Output = Path | BinaryIO
"""Where a prepared PDF goes: a path (written atomically: temp file, then replace) or a file
opened for writing at its start (written in place: the caller discards it on an error)."""


def _save(pdf: Any, dst: Output, **kwargs: Any) -> None:
    """Save ``pdf`` to ``dst`` (see :data:`Output`)."""
    if not isinstance(dst, Path):
        pdf.save(dst, **kwargs)
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        pdf.save(tmp, **kwargs)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def sanitize_pdf(
    src: Path,
    dst: Output,
    *,
    marks: Mapping[str, str] | None = None,
    max_pages: int = MAX_PAGES,
) -> SanitizeReport:
    """Write a sanitised copy of ``src`` to ``dst`` (a path, atomically, or an open file).

    ``src`` is not changed. Raises DocumentError naming the problem for what it cannot read.
    Idempotent: sanitising a sanitised file removes nothing more and gives the same pages.
    ``marks`` (key -> value) are written to the document info as ``/pullprint:<key>``.
    """
    import pikepdf

    with open_pdf(src) as pdf:
        try:
            pages, first = _check_pages(pdf, max_pages)
            removed = _sanitize(pdf)
            applied = str(pdf.docinfo.get(MARK_APPLIED, "")) if pdf.trailer.get("/Info") else ""
            warnings = list(pdf.get_warnings())
            for key, value in (marks or {}).items():
                pdf.docinfo[pikepdf.Name(f"/pullprint:{key}")] = value
            if marks is not None:
                pdf.docinfo[pikepdf.Name(MARK_PAGES)] = str(pages)
            _save(pdf, dst, encryption=False, fix_metadata_version=False)
        except pikepdf.PdfError as exc:
            raise DocumentError(f"unreadable PDF: {str(exc).splitlines()[0]}") from exc
        except RecursionError as exc:
            raise DocumentError("unreadable PDF: objects nested too deeply") from exc
    if removed:
        log.info("removed from %s: %s", src.name, ", ".join(removed))
    return SanitizeReport(pages, tuple(removed), bool(warnings), first, applied)


def write_marks(src: Path, dst: Output, marks: Mapping[str, str]) -> int:
    """Copy ``src`` to ``dst`` (a path, atomically, or an open file) with ``marks`` in its
    document info; return pages.

    Idempotent: the same marks give the same info.
    """
    import pikepdf

    with open_pdf(src) as pdf:
        pages = len(pdf.pages)
        for key, value in marks.items():
            pdf.docinfo[pikepdf.Name(f"/pullprint:{key}")] = value
        pdf.docinfo[pikepdf.Name(MARK_PAGES)] = str(pages)
        _save(pdf, dst, fix_metadata_version=False)
    return pages


def read_marks(path: Path) -> dict[str, str]:
    """The ``pullprint:`` marks of a PDF (``{"Pages": "3", "Applied": "number-up=2"}``).

    Changes nothing.
    """
    with open_pdf(path) as pdf:
        if "/Info" not in pdf.trailer:
            return {}
        return {
            str(key)[len("/pullprint:") :]: str(value)
            for key, value in pdf.docinfo.items()
            if str(key).startswith("/pullprint:")
        }

"""Reading a document's facts: is it a PDF we can read, and how many pages it has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pullprint.errors import DocumentError

PDF_MAGIC = b"%PDF-"


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    encrypted: bool


def inspect_pdf(path: Path) -> PdfInfo:
    """Open ``path`` read-only and count its pages; raise DocumentError naming the problem.

    Changes nothing on disk. The page count is the number of page objects pikepdf finds, never the
    stored /Count (which hostile files set to anything).
    """
    import pikepdf  # imported here: ~0.1 s that status-only callers do not need

    with path.open("rb") as fh:
        head = fh.read(1024)
    if PDF_MAGIC not in head:
        raise DocumentError("not a PDF document (no %PDF- header in the first 1024 bytes)")
    try:
        with pikepdf.open(path) as pdf:
            pages = len(pdf.pages)
            encrypted = bool(pdf.is_encrypted)
    except pikepdf.PasswordError as exc:
        raise DocumentError("the PDF is password-protected; print it without a password") from exc
    except pikepdf.PdfError as exc:
        raise DocumentError(f"unreadable PDF: {exc}") from exc
    if pages == 0:
        raise DocumentError("the PDF has no pages")
    return PdfInfo(pages=pages, encrypted=encrypted)

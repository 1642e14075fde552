"""PJL job headers for printers reached by raw port 9100 or LPR. Pure functions.

Only values from fixed sets reach the header: the job name is reduced to printable ASCII without
quotes, and everything else is an integer or a keyword chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass

UEL = b"\x1b%-12345X"
LANGUAGES = {"application/pdf": "PDF", "application/postscript": "POSTSCRIPT"}
PAPER = {
    "iso_a4_210x297mm": "A4",
    "na_letter_8.5x11in": "LETTER",
    "na_legal_8.5x14in": "LEGAL",
    "iso_a3_297x420mm": "A3",
    "iso_a5_148x210mm": "A5",
}
TRAYS = {"tray-1": "TRAY1", "tray-2": "TRAY2", "manual": "MANUALFEED", "main": "TRAY1"}
MAX_NAME = 80


@dataclass(frozen=True)
class PjlJob:
    """What a PJL header carries. ``None``: leave the printer's default."""

    name: str = "pullprint"
    copies: int | None = None
    collate: bool = True
    sides: str | None = None  # IPP sides keyword
    color_mode: str | None = None  # "color" | "monochrome"
    media: str | None = None  # PWG media name
    input_slot: str | None = None
    document_format: str = "application/pdf"


def safe_job_name(name: str) -> str:
    """Printable ASCII only, no quotes or backslashes, at most 80 characters. Pure."""
    text = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "?" for ch in name)
    return text[:MAX_NAME] or "pullprint"


def build_pjl_header(job: PjlJob) -> bytes:
    """The bytes that go before the document: UEL, @PJL JOB, SET lines, ENTER LANGUAGE. Pure."""
    name = safe_job_name(job.name)
    lines = ["@PJL", f'@PJL JOB NAME="{name}"']
    if job.copies is not None:
        if not 1 <= job.copies <= 999:
            raise ValueError(f"PJL copies must be from 1 to 999, got {job.copies}")
        # QTY repeats the whole job (collated); COPIES repeats each page (uncollated)
        lines.append(f"@PJL SET {'QTY' if job.collate else 'COPIES'}={job.copies}")
    if job.sides == "one-sided":
        lines.append("@PJL SET DUPLEX=OFF")
    elif job.sides in ("two-sided-long-edge", "two-sided-short-edge"):
        binding = "LONGEDGE" if job.sides == "two-sided-long-edge" else "SHORTEDGE"
        lines += ["@PJL SET DUPLEX=ON", f"@PJL SET BINDING={binding}"]
    if job.color_mode == "monochrome":
        lines.append("@PJL SET RENDERMODE=GRAYSCALE")
    elif job.color_mode == "color":
        lines.append("@PJL SET RENDERMODE=COLOR")
    if job.media in PAPER:
        lines.append(f"@PJL SET PAPER={PAPER[job.media]}")
    if job.input_slot in TRAYS:
        lines.append(f"@PJL SET MEDIASOURCE={TRAYS[job.input_slot]}")
    language = LANGUAGES.get(job.document_format)
    if language is None:
        raise ValueError(f"no PJL language for {job.document_format}")
    lines.append(f"@PJL ENTER LANGUAGE={language}")
    return UEL + "\r\n".join(lines).encode("ascii") + b"\r\n"


def build_pjl_footer(job: PjlJob) -> bytes:
    """The bytes after the document: UEL, @PJL EOJ, UEL. Pure."""
    return UEL + f'@PJL EOJ NAME="{safe_job_name(job.name)}"\r\n'.encode("ascii") + UEL

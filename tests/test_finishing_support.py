"""Helpers shared by the finishing and filter tests (documents made here, checks by real tools)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pikepdf

from pullprint.filters.capabilities import PrinterCapabilities, capabilities_from_response

PRINTERS = Path(__file__).resolve().parent / "data" / "printers"
PROFILES = sorted(p.stem for p in PRINTERS.glob("*.ipp"))


def caps(profile: str) -> PrinterCapabilities:
    return capabilities_from_response((PRINTERS / f"{profile}.ipp").read_bytes(), name=profile)


def color_pdf(path: Path, pages: int, size: tuple[float, float] = (595, 842)) -> Path:
    """Pages with 'Page N' in text and a full-width red band (to check greyscale by rendering)."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    width, height = size
    for number in range(1, pages + 1):
        ops = (
            f"1 0 0 rg 0 {height / 2 - 60} {width} 120 re f "
            f"0 0 0 rg BT /F1 30 Tf 72 {height - 120} Td (Page {number}) Tj ET"
        )
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, width, height],
            Contents=pdf.make_stream(ops.encode()),
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
        )
        pdf.pages.append(pikepdf.Page(page))
    pdf.save(path)
    return path


def page_texts(path: Path) -> list[str]:
    """The text of each page, read by poppler's pdftotext."""
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return out.split("\f")[:-1]


def pdf_pages(path: Path) -> list[tuple[float, float]]:
    """Page sizes (width, height) of a PDF, read by pikepdf."""
    with pikepdf.open(path) as pdf:
        return [
            (
                float(p.mediabox[2]) - float(p.mediabox[0]),
                float(p.mediabox[3]) - float(p.mediabox[1]),
            )
            for p in pdf.pages
        ]


def rendered_is_grey(path: Path, tmp: Path) -> bool:
    """Render page 1 with pdftoppm at 20 dpi and check every pixel has r == g == b."""
    prefix = tmp / "render"
    subprocess.run(
        ["pdftoppm", "-r", "20", "-f", "1", "-l", "1", str(path), str(prefix)], check=True
    )
    ppm = next(tmp.glob("render*.ppm")).read_bytes()
    data = _ppm_pixels(ppm)
    for f in tmp.glob("render*.ppm"):
        f.unlink()
    return all(data[i] == data[i + 1] == data[i + 2] for i in range(0, len(data), 3))


def rendered_has_red(path: Path, tmp: Path) -> bool:
    prefix = tmp / "render"
    subprocess.run(
        ["pdftoppm", "-r", "20", "-f", "1", "-l", "1", str(path), str(prefix)], check=True
    )
    ppm = next(tmp.glob("render*.ppm")).read_bytes()
    data = _ppm_pixels(ppm)
    for f in tmp.glob("render*.ppm"):
        f.unlink()
    return any(
        data[i] > 200 and data[i + 1] < 60 and data[i + 2] < 60 for i in range(0, len(data), 3)
    )


def _ppm_pixels(ppm: bytes) -> bytes:
    # P6\n<w> <h>\n255\n<data>
    parts = ppm.split(b"\n", 3)
    assert parts[0] == b"P6"
    return parts[3]

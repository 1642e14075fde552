"""Real PDF documents made for tests, the demo and the benchmarks (pikepdf, no fixtures)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

A4 = (595, 842)


def make_pdf(
    path: Path,
    pages: int,
    *,
    title: str = "pullprint test",
    size: tuple[int, int] = A4,
    image_kb: int = 0,
) -> Path:
    """Write a PDF of ``pages`` pages, each with its number in text (and, with ``image_kb``, an
    incompressible RGB image of about that many KiB, for image-heavy benchmarks)."""
    import pikepdf

    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    width, height = size
    for number in range(1, pages + 1):
        text = f"{title}: page {number} of {pages}".replace("\\", "").replace("(", "")
        text = text.replace(")", "")
        ops = f"BT /F1 24 Tf 72 {height - 100} Td ({text}) Tj ET\n"
        resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        if image_kb:
            image = _random_image(pdf, image_kb)
            ops += f"q {width - 144} 0 0 {width - 144} 72 72 cm /Im1 Do Q\n"
            resources.XObject = pikepdf.Dictionary(Im1=image)
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, width, height],
            Contents=pdf.make_stream(ops.encode("latin-1")),
            Resources=resources,
        )
        pdf.pages.append(pikepdf.Page(page))
    pdf.docinfo["/Title"] = title
    pdf.save(path)
    return path


def _random_image(pdf: object, image_kb: int) -> object:
    """An incompressible RGB image stream of about ``image_kb`` KiB (one per page)."""
    import pikepdf

    assert isinstance(pdf, pikepdf.Pdf)
    side = max(8, int((image_kb * 1024 / 3) ** 0.5))
    return pdf.make_stream(
        zlib.compress(os.urandom(side * side * 3), 1),
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=side,
        Height=side,
        ColorSpace=pikepdf.Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=pikepdf.Name.FlateDecode,
    )

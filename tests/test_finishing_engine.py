"""The finishing engine on every profile: the output checked by pikepdf, pdftotext and pdftoppm."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from pullprint.filters.engine import FinishingError, apply_plan
from pullprint.filters.plan import Where, make_plan
from tests.test_finishing_plan import CASES
from tests.test_finishing_support import (
    PROFILES,
    caps,
    color_pdf,
    page_texts,
    pdf_pages,
    rendered_has_red,
    rendered_is_grey,
)

SOURCE_PAGES = 7
# pages of one copy after layout, for a 7-page source
PER_COPY = {
    "nup2": 4,
    "nup4-border": 2,
    "nup6": 2,
    "nup9": 1,
    "nup16": 1,
    "ranges": 4,
    "nup2-ranges": 1,
    "booklet": 4,
    "everything": 3,
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return color_pdf(tmp_path_factory.mktemp("src") / "seven.pdf", SOURCE_PAGES)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_apply_every_option_on_every_profile(
    profile: str, case: str, source: Path, tmp_path: Path
) -> None:
    printer = caps(profile)
    plan = make_plan(CASES[case], None, printer, "ipp", applied_at_submission={})
    out = tmp_path / "out"
    done = apply_plan(plan, source, out)
    per_copy = PER_COPY.get(case, SOURCE_PAGES)
    copies = plan.options.copies
    assert done.pages_per_copy == per_copy
    assert done.impressions == per_copy * copies
    sides = 2 if plan.two_sided else 1
    assert done.sheets == math.ceil(per_copy / sides) * copies
    assert done.document_format == plan.document_format
    in_pdf = plan.work.copies
    padded = per_copy + (per_copy % 2 if plan.work.pad_for_duplex else 0)
    expected_file_pages = padded * in_pdf if in_pdf > 1 else per_copy
    assert done.pages == expected_file_pages
    data = out.read_bytes()
    if plan.document_format == "application/postscript":
        assert data.startswith(b"%!PS")
        assert re.search(rb"%%Pages: (\d+)", data).group(1) == str(done.pages).encode()  # type: ignore[union-attr]
        return
    if plan.document_format == "image/pwg-raster":
        assert data.startswith(b"RaS2")
        assert data.count(b"PwgRaster\x00") == done.pages
        return
    assert pdf_pages(out).__len__() == done.pages
    texts = page_texts(out)
    first = texts[0]
    if case == "nup2":
        assert "Page 1" in first and "Page 2" in first and "Page 3" not in first
    if case in ("nup2-ranges",):
        # page-ranges count document pages BEFORE number-up
        assert "Page 2" in first and "Page 3" in first and "Page 1" not in first
    if case == "ranges":
        assert [re.search(r"Page (\d)", t).group(1) for t in texts] == ["2", "3", "4", "6"]  # type: ignore[union-attr]
    if case == "nup16":
        assert all(f"Page {n}" in first for n in range(1, 8))
    if case in ("nup2", "landscape", "booklet"):
        width, height = pdf_pages(out)[0]
        assert width > height
    if case == "letter" and plan.step("media").where is Where.PDF:  # type: ignore[union-attr]
        assert pdf_pages(out)[0] == pytest.approx((612, 792), abs=1)
    if in_pdf > 1:
        starts = [i for i, t in enumerate(texts) if "Page 1" in t]
        assert len(starts) == in_pdf if plan.options.collate or plan.two_sided else True
    if plan.work.greyscale:
        assert rendered_is_grey(out, tmp_path)
    elif case not in ("nup16", "nup9", "nup6", "nup4-border"):
        assert rendered_has_red(out, tmp_path)  # the printer does the colour, not us


def test_greyscale_by_ghostscript_renders_grey(source: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    printer = replace(caps("ipp-pdf-duplex-color"), print_color_mode_supported=("color",))
    plan = make_plan(
        {"print-color-mode": "monochrome"}, None, printer, "ipp", applied_at_submission={}
    )
    assert plan.work.greyscale
    out = tmp_path / "grey.pdf"
    done = apply_plan(plan, source, out)
    assert done.pages == SOURCE_PAGES
    assert rendered_has_red(source, tmp_path)
    assert rendered_is_grey(out, tmp_path)


def test_a4_scaled_to_letter(source: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    printer = replace(caps("ipp-pdf-duplex-color"), media_supported=("na_letter_8.5x11in",))
    plan = make_plan({"PageSize": "A4"}, None, printer, "ipp", applied_at_submission={})
    out = tmp_path / "letter.pdf"
    apply_plan(plan, source, out)
    assert set(pdf_pages(out)) == {(612.0, 792.0)}
    assert "Page 1" in page_texts(out)[0]


def test_uncollated_copies_in_pdf(source: Path, tmp_path: Path) -> None:
    plan = make_plan(
        {"copies": "2", "collate": "false", "page-ranges": "1-2"},
        None,
        caps("ipp-ps-only-mono"),
        "socket",
        applied_at_submission={},
    )
    assert plan.work.copies == 2 and not plan.work.collate
    out = tmp_path / "out.ps"
    done = apply_plan(plan, source, out)
    assert done.pages == 4 and done.impressions == 4


def test_pjl_wrapped_output(source: Path, tmp_path: Path) -> None:
    from pullprint.filters.capabilities import RawPrinterSpec, raw_capabilities

    plan = make_plan(
        {"copies": "2", "sides": "two-sided-short-edge"},
        None,
        raw_capabilities(RawPrinterSpec(duplex=True)),
        "socket",
        applied_at_submission={},
    )
    out = tmp_path / "job.pjl"
    done = apply_plan(plan, source, out)
    data = out.read_bytes()
    assert data.startswith(b"\x1b%-12345X@PJL") and b"%PDF-" in data
    assert data.endswith(b"\x1b%-12345X")
    assert done.impressions == 14 and done.sheets == 8


def test_ranges_beyond_the_document(source: Path, tmp_path: Path) -> None:
    plan = make_plan(
        {"page-ranges": "50-60"},
        None,
        caps("ipp-pdf-duplex-color"),
        "ipp",
        applied_at_submission={},
    )
    with pytest.raises(FinishingError, match="selects no page"):
        apply_plan(plan, source, tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()


def test_apply_is_repeatable_and_leaves_no_files_open(source: Path, tmp_path: Path) -> None:
    import psutil

    proc = psutil.Process()
    before = {f.path for f in proc.open_files()}
    plan = make_plan(
        {"number-up": "2", "copies": "2"},
        None,
        caps("ipp-ps-only-mono"),
        "ipp",
        applied_at_submission={},
    )
    a = apply_plan(plan, source, tmp_path / "a")
    b = apply_plan(plan, source, tmp_path / "b")
    assert a == b
    assert {f.path for f in proc.open_files()} <= before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]

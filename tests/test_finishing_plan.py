"""The finishing plan on capability profiles captured from real ippeveprinter answers."""

from __future__ import annotations

import json

import pytest

from pullprint.filters.capabilities import RawPrinterSpec, raw_capabilities
from pullprint.filters.ippattrs import decode_message, encode_get_printer_attributes
from pullprint.filters.options import FinishingOptions, OptionError, parse_page_ranges
from pullprint.filters.pjl import PjlJob, build_pjl_footer, build_pjl_header, safe_job_name
from pullprint.filters.plan import FinishingPlan, PlanError, Where, make_plan
from tests.test_finishing_support import PROFILES, caps

CASES: dict[str, dict[str, str]] = {
    "copies-collated": {"copies": "3", "collate": "true"},
    "copies-uncollated": {
        "copies": "3",
        "multiple-document-handling": "separate-documents-uncollated-copies",
    },
    "duplex-long": {"sides": "two-sided-long-edge"},
    "duplex-short-ppd": {"Duplex": "DuplexTumble"},
    "simplex": {"sides": "one-sided"},
    "grey": {"print-color-mode": "monochrome"},
    "grey-ppd": {"ColorModel": "Gray"},
    "color": {"print-color-mode": "color"},
    "a4": {"media": "iso_a4_210x297mm"},
    "letter": {"PageSize": "Letter"},
    "a3": {"PageSize": "A3"},
    "tray": {"InputSlot": "Tray1"},
    "nup2": {"number-up": "2"},
    "nup4-border": {"number-up": "4", "page-border": "double", "number-up-layout": "tblr"},
    "nup6": {"number-up": "6"},
    "nup9": {"number-up": "9"},
    "nup16": {"number-up": "16"},
    "ranges": {"page-ranges": "2-4,6"},
    "nup2-ranges": {"number-up": "2", "page-ranges": "2-3"},
    "landscape": {"orientation-requested": "4"},
    "fit": {"fit-to-page": "true"},
    "booklet": {"booklet": "on"},
    "everything": {
        "copies": "2",
        "sides": "two-sided-long-edge",
        "print-color-mode": "monochrome",
        "number-up": "2",
        "page-ranges": "1-5",
        "PageSize": "A4",
    },
}
LAYOUT = {
    "number-up",
    "number-up-layout",
    "page-border",
    "page-ranges",
    "orientation-requested",
    "fit-to-page",
    "booklet",
}


def _check_invariants(plan: FinishingPlan) -> None:
    options = [s.option for s in plan.steps]
    assert len(options) == len(set(options)), "an option planned twice"
    ticket = plan.ipp_attributes()
    copies = plan.step("copies")
    assert copies is not None
    if copies.where is Where.PDF:
        assert ("copies" not in ticket and plan.pjl is None) or (
            plan.pjl and plan.pjl.copies is None
        )
        assert plan.work.copies == plan.options.copies
    else:
        assert plan.work.copies == 1
    sides = plan.step("sides")
    assert sides is None or sides.where is not Where.PDF  # duplex never faked
    for step in plan.steps:
        if step.where is Where.PRINTER and step.ipp_name:
            name = step.ipp_name
            assert name == "copies" or plan.step(step.option) is step
    assert FinishingPlan.loads(plan.dumps()) == plan
    json.loads(plan.dumps())
    assert plan.summary().count("\n") == len(plan.steps)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_option_on_every_profile(profile: str, case: str) -> None:
    printer = caps(profile)
    options = {"copies": "1", **CASES[case]}
    plan = make_plan(options, None, printer, "ipp", applied_at_submission={})
    _check_invariants(plan)
    effective = plan.options
    grey = plan.step("print-color-mode")
    if effective.color_mode == "monochrome":
        assert grey is not None
        if "monochrome" in printer.print_color_mode_supported:
            assert (
                grey.where is Where.PRINTER
                and plan.ipp_attributes()["print-color-mode"] == "monochrome"
            )
            assert not plan.work.greyscale
        else:
            assert grey.where is Where.PDF and plan.work.greyscale
    sides = plan.step("sides")
    if sides is not None and sides.value.startswith("two-sided"):
        assert (sides.where is Where.PRINTER) == (sides.value in printer.sides_supported)
        assert plan.two_sided == (sides.where is Where.PRINTER)
    copies = plan.step("copies")
    assert copies is not None
    if effective.copies > 1 and printer.copies_max >= effective.copies:
        assert copies.where is Where.PRINTER
        assert plan.ipp_attributes()["copies"] == effective.copies
    elif effective.copies > 1:
        assert copies.where is Where.PDF
    for key in LAYOUT & set(FinishingOptions.from_cups(options).layout_items()):
        step = plan.step(key)
        assert step is not None and step.where is Where.PDF
    if "application/pdf" in printer.document_format_supported:
        assert plan.document_format == "application/pdf"
    elif "application/postscript" in printer.document_format_supported:
        assert plan.document_format == "application/postscript"
    else:
        assert plan.document_format == "image/pwg-raster"


@pytest.mark.parametrize("profile", PROFILES)
def test_layout_applied_at_submission_is_not_applied_again(profile: str) -> None:
    job = {"number-up": "2", "page-ranges": "1-3", "copies": "2"}
    plan = make_plan(job, {"copies": "1"}, caps(profile), "ipp")
    assert plan.step("number-up").where is Where.DOCUMENT  # type: ignore[union-attr]
    assert plan.step("page-ranges").where is Where.DOCUMENT  # type: ignore[union-attr]
    assert not plan.work.layout.has_layout
    assert plan.options.copies == 1
    with pytest.raises(PlanError, match="cannot change at release"):
        make_plan(job, {"number-up": "4"}, caps(profile), "ipp")


def test_copies_never_in_both() -> None:
    mono_ps = caps("ipp-ps-only-mono")  # copies-supported 1..1
    plan = make_plan({"copies": "5"}, None, mono_ps, "ipp", applied_at_submission={})
    assert plan.step("copies").where is Where.PDF  # type: ignore[union-attr]
    assert "copies" not in plan.ipp_attributes()
    assert plan.work.copies == 5


def test_greyscale_by_ghostscript_when_printer_has_no_monochrome() -> None:
    from dataclasses import replace

    printer = replace(caps("ipp-pdf-duplex-color"), print_color_mode_supported=("color",))
    plan = make_plan({"ColorModel": "Gray"}, None, printer, "ipp", applied_at_submission={})
    assert plan.step("print-color-mode").where is Where.PDF  # type: ignore[union-attr]
    assert plan.work.greyscale and "print-color-mode" not in plan.ipp_attributes()


def test_a4_on_letter_only_printer_is_scaled() -> None:
    from dataclasses import replace

    printer = replace(caps("ipp-pdf-duplex-color"), media_supported=("na_letter_8.5x11in",))
    plan = make_plan({"PageSize": "A4"}, None, printer, "ipp", applied_at_submission={})
    step = plan.step("media")
    assert step is not None and step.where is Where.PDF and plan.work.media == "na_letter_8.5x11in"


@pytest.mark.parametrize("transport", ["lpr", "socket"])
def test_raw_transports_use_pjl(transport: str) -> None:
    printer = raw_capabilities(RawPrinterSpec(duplex=True), name="raw")
    options = {
        "copies": "2",
        "sides": "two-sided-long-edge",
        "print-color-mode": "monochrome",
        "PageSize": "A4",
        "InputSlot": "Tray2",
    }
    plan = make_plan(
        options,
        None,
        printer,
        transport,  # type: ignore[arg-type]
        applied_at_submission={},
        job_name='evil"; rm -rf / \x1b',
    )
    for option in ("copies", "sides", "print-color-mode", "media", "media-source"):
        assert plan.step(option).where is Where.PJL, option  # type: ignore[union-attr]
    assert plan.ipp_attributes() == {}
    assert plan.work.copies == 1 and not plan.work.greyscale
    assert plan.pjl is not None
    header = build_pjl_header(plan.pjl)
    assert header.startswith(b"\x1b%-12345X@PJL\r\n")
    assert b"@PJL SET QTY=2\r\n" in header and b"@PJL SET DUPLEX=ON\r\n" in header
    assert b"@PJL SET RENDERMODE=GRAYSCALE" in header and b"ENTER LANGUAGE=PDF\r\n" in header
    assert b'NAME="evil?; rm -rf / ?"' in header
    assert header.count(b"\x1b") == 1


def test_raw_without_pjl_makes_copies_in_pdf_and_skips_duplex() -> None:
    printer = raw_capabilities(RawPrinterSpec(pjl=False, duplex=False))
    plan = make_plan(
        {"copies": "2", "sides": "two-sided-long-edge"},
        None,
        printer,
        "socket",
        applied_at_submission={},
    )
    assert plan.step("copies").where is Where.PDF  # type: ignore[union-attr]
    assert plan.step("sides").where is Where.SKIPPED  # type: ignore[union-attr]
    assert plan.pjl is None


def test_pjl_pure() -> None:
    job = PjlJob(name="x" * 200, copies=3, collate=False, document_format="application/postscript")
    header = build_pjl_header(job)
    assert b"@PJL SET COPIES=3" in header and b"LANGUAGE=POSTSCRIPT" in header
    assert build_pjl_header(job) == header
    assert build_pjl_footer(job).endswith(b"\x1b%-12345X")
    assert len(safe_job_name("é" * 100)) == 80
    with pytest.raises(ValueError):
        build_pjl_header(PjlJob(copies=100000))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"copies": "99999999999999999999"}, "copies"),
        ({"copies": "$(reboot)"}, "copies"),
        ({"number-up": "3"}, "number-up"),
        ({"number-up": "2; rm -rf /"}, "number-up"),
        ({"page-ranges": "1-3;touch /tmp/x"}, "page-ranges"),
        ({"page-ranges": "5-2"}, "page-ranges"),
        ({"page-ranges": "1-99999999"}, "page-ranges"),
        ({"page-ranges": "1," * 2000}, "page-ranges"),
        ({"sides": "`id`"}, "sides"),
        ({"media": "../../etc/passwd"}, "media"),
        ({"orientation-requested": "7"}, "orientation-requested"),
        ({"print-color-mode": "cmyk|sh"}, "print-color-mode"),
        ({"booklet": "maybe"}, "booklet"),
    ],
)
def test_hostile_option_values(options: dict[str, str], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        make_plan(options, None, caps("ipp-pdf-duplex-color"), "ipp", applied_at_submission={})


def test_unknown_keywords_are_ignored_and_unknown_transport_refused() -> None:
    plan = make_plan(
        {"frobnicate": "yes; rm -rf /", "job-uuid": "x"},
        None,
        caps("ipp-pdf-duplex-color"),
        "ipp",
        applied_at_submission={},
    )
    assert [s.option for s in plan.steps] == ["copies"]
    with pytest.raises(PlanError):
        make_plan({}, None, caps("ipp-pdf-duplex-color"), "smb", applied_at_submission={})  # type: ignore[arg-type]


def test_page_ranges_parse() -> None:
    assert parse_page_ranges("5,1-3,2-4,8-") == ((1, 5), (8, 1_000_000))


def test_capability_fixtures_are_real_answers() -> None:
    for profile in PROFILES:
        printer = caps(profile)
        assert printer.document_format_supported, profile
        assert printer.media_supported
    mono = caps("ipp-pdf-duplex-mono")
    assert mono.print_color_mode_supported == ("monochrome",) and not mono.color_supported
    assert "two-sided-long-edge" in caps("ipp-pdf-duplex-color").sides_supported
    assert caps("ipp-pdf-simplex-color").sides_supported == ("one-sided",)
    assert "application/pdf" not in caps("ipp-ps-only-mono").document_format_supported
    assert caps("ipp-pdf-duplex-color").copies_max == 999


def test_request_encoding_round_trips() -> None:
    message = decode_message(encode_get_printer_attributes("ipp://127.0.0.1:631/ipp/print", 7))
    assert message.code == 0x000B and message.request_id == 7
    assert message.group(1)["requested-attributes"] == ["all", "media-col-database"]

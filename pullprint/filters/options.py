"""The finishing options a user chose, parsed and validated from CUPS/IPP option strings. Pure.

Accepts both IPP names (``sides``, ``print-color-mode``, ``media``, ``multiple-document-handling``)
and the PPD names CUPS puts in argv[5] (``Duplex``, ``ColorModel``, ``PageSize``, ``Collate``,
``InputSlot``). Every value is checked against a fixed set or a numeric bound, so nothing the user
typed ever reaches a command line: the engine builds its arguments from these typed values only.
Unknown keys are ignored (CUPS passes many); a known key with a bad value raises OptionError.

``page-ranges`` in pullprint counts the pages of the document as the user sees them in the print
dialog, BEFORE number-up (pdftopdf counts after number-up; we select pages first, then impose).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from pullprint.errors import PullprintError

MAX_COPIES = 999
MAX_PAGE_NUMBER = 1_000_000
NUMBER_UP = (1, 2, 4, 6, 9, 16)
NUMBER_UP_LAYOUTS = ("lrtb", "lrbt", "rltb", "rlbt", "tblr", "tbrl", "btlr", "btrl")
PAGE_BORDERS = ("none", "single", "single-thick", "double", "double-thick")
ORIENTATIONS = (3, 4, 5, 6)  # portrait, landscape, reverse-landscape, reverse-portrait
SIDES = ("one-sided", "two-sided-long-edge", "two-sided-short-edge")
COLOR_MODES = ("auto", "color", "monochrome")
COLLATED = "separate-documents-collated-copies"
UNCOLLATED = "separate-documents-uncollated-copies"

# PWG media name -> (PPD PageSize, width pt, height pt)
MEDIA: dict[str, tuple[str, float, float]] = {
    "iso_a4_210x297mm": ("A4", 595.28, 841.89),
    "na_letter_8.5x11in": ("Letter", 612.0, 792.0),
    "na_legal_8.5x14in": ("Legal", 612.0, 1008.0),
    "iso_a3_297x420mm": ("A3", 841.89, 1190.55),
    "iso_a5_148x210mm": ("A5", 419.53, 595.28),
}
PAGESIZE_TO_MEDIA = {ppd.lower(): pwg for pwg, (ppd, _w, _h) in MEDIA.items()}
INPUT_SLOTS = {
    "auto": "auto",
    "tray1": "tray-1",
    "tray2": "tray-2",
    "manual": "manual",
    "tray-1": "tray-1",
    "tray-2": "tray-2",
    "main": "main",
}
LAYOUT_KEYS = (
    "number-up",
    "number-up-layout",
    "page-border",
    "page-ranges",
    "orientation-requested",
    "fit-to-page",
    "booklet",
)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_RANGE_RE = re.compile(r"^\s*(\d{1,7})?\s*(-)?\s*(\d{1,7})?\s*$")


class OptionError(PullprintError, ValueError):
    """An option has a value pullprint does not accept (the message names option and value)."""


def _show(value: str) -> str:
    """A short, printable rendering of a user value for error messages."""
    text = "".join(ch if ch.isprintable() else "?" for ch in value[:40])
    return repr(text + ("..." if len(value) > 40 else ""))


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise OptionError(f"{key} must be true or false, got {_show(value)}")


def _int(key: str, value: str, allowed: tuple[int, ...] | None, lo: int, hi: int) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 9:
        raise OptionError(f"{key} must be a whole number from {lo} to {hi}, got {_show(value)}")
    number = int(text)
    if allowed is not None and number not in allowed:
        raise OptionError(f"{key} must be one of {', '.join(map(str, allowed))}, got {number}")
    if not lo <= number <= hi:
        raise OptionError(f"{key} must be from {lo} to {hi}, got {number}")
    return number


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    low = value.strip().lower()
    if low not in allowed:
        raise OptionError(f"{key} must be one of {', '.join(allowed)}, got {_show(value)}")
    return low


def parse_page_ranges(value: str) -> tuple[tuple[int, int], ...]:
    """Parse ``1-3,5,8-`` into sorted, merged inclusive ranges; an open end is MAX_PAGE_NUMBER."""
    ranges: list[tuple[int, int]] = []
    if len(value) > 1000:
        raise OptionError("page-ranges is longer than 1000 characters")
    for part in value.split(","):
        match = _RANGE_RE.match(part)
        if not match or not (match.group(1) or match.group(3)):
            raise OptionError(f"page-ranges must look like 1-3,5,8-, got {_show(value)}")
        first = int(match.group(1) or 1)
        last = (
            int(match.group(3))
            if match.group(3)
            else (MAX_PAGE_NUMBER if match.group(2) else first)
        )
        if first < 1 or last < first or last > MAX_PAGE_NUMBER:
            raise OptionError(
                f"page-ranges {_show(part)} is not a range from 1 to {MAX_PAGE_NUMBER}"
            )
        ranges.append((first, last))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def format_page_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def select_pages(ranges: tuple[tuple[int, int], ...], pages: int) -> list[int]:
    """The 1-based page numbers of a ``pages``-page document that ``ranges`` select, in order."""
    out: list[int] = []
    for first, last in ranges:
        out.extend(range(first, min(last, pages) + 1))
    return out


@dataclass(frozen=True)
class FinishingOptions:
    """The validated options of one job. ``None``: the user did not choose (printer default)."""

    copies: int = 1
    collate: bool = True
    sides: str | None = None
    color_mode: str | None = None
    media: str | None = None  # PWG media name (a key of MEDIA)
    input_slot: str | None = None
    number_up: int = 1
    number_up_layout: str = "lrtb"
    page_border: str = "none"
    page_ranges: tuple[tuple[int, int], ...] = ()
    orientation: int | None = None
    fit_to_page: bool = False
    booklet: bool = False

    @classmethod
    def from_cups(cls, options: Mapping[str, str], copies: int | None = None) -> FinishingOptions:
        """Parse CUPS argv[5]-style options (``copies`` from argv[4] wins if given). Pure."""
        return cls().updated(options, copies=copies)

    def updated(self, options: Mapping[str, str], copies: int | None = None) -> FinishingOptions:
        """A copy with ``options`` applied on top (release options over job options). Pure."""
        low = {k.lower(): v for k, v in options.items()}
        changes: dict[str, Any] = {}
        if copies is not None:
            changes["copies"] = _int("copies", str(copies), None, 1, MAX_COPIES)
        elif "copies" in low:
            changes["copies"] = _int("copies", low["copies"], None, 1, MAX_COPIES)
        if "multiple-document-handling" in low:
            mdh = _choice(
                "multiple-document-handling",
                low["multiple-document-handling"],
                (COLLATED, UNCOLLATED),
            )
            changes["collate"] = mdh == COLLATED
        elif "collate" in low:
            changes["collate"] = _bool("collate", low["collate"])
        if "sides" in low:
            changes["sides"] = _choice("sides", low["sides"], SIDES)
        elif "duplex" in low:
            ppd = {"none": SIDES[0], "duplexnotumble": SIDES[1], "duplextumble": SIDES[2]}
            changes["sides"] = ppd[_choice("Duplex", low["duplex"], tuple(ppd))]
        if "print-color-mode" in low:
            changes["color_mode"] = _choice(
                "print-color-mode", low["print-color-mode"], COLOR_MODES
            )
        elif "colormodel" in low:
            ppd = {"rgb": "color", "cmyk": "color", "gray": "monochrome", "grey": "monochrome"}
            changes["color_mode"] = ppd[_choice("ColorModel", low["colormodel"], tuple(ppd))]
        media_value = low.get("media") or low.get("pagesize") or low.get("pageregion")
        if media_value is not None:
            key = media_value.strip().lower()
            if key in MEDIA:
                changes["media"] = key
            elif key in PAGESIZE_TO_MEDIA:
                changes["media"] = PAGESIZE_TO_MEDIA[key]
            else:
                names = ", ".join(v[0] for v in MEDIA.values())
                raise OptionError(f"media must be one of {names}, got {_show(media_value)}")
        slot = low.get("inputslot") or low.get("media-source")
        if slot is not None:
            key = _choice("InputSlot", slot, tuple(INPUT_SLOTS))
            changes["input_slot"] = INPUT_SLOTS[key]
        if "number-up" in low:
            changes["number_up"] = _int("number-up", low["number-up"], NUMBER_UP, 1, 16)
        if "number-up-layout" in low:
            changes["number_up_layout"] = _choice(
                "number-up-layout", low["number-up-layout"], NUMBER_UP_LAYOUTS
            )
        if "page-border" in low:
            changes["page_border"] = _choice("page-border", low["page-border"], PAGE_BORDERS)
        if "page-ranges" in low:
            changes["page_ranges"] = parse_page_ranges(low["page-ranges"])
        if "orientation-requested" in low:
            changes["orientation"] = _int(
                "orientation-requested", low["orientation-requested"], ORIENTATIONS, 3, 6
            )
        elif "landscape" in low and _bool("landscape", low["landscape"]):
            changes["orientation"] = 4
        if "fit-to-page" in low:
            changes["fit_to_page"] = _bool("fit-to-page", low["fit-to-page"])
        elif "print-scaling" in low:
            scaling = _choice(
                "print-scaling", low["print-scaling"], ("auto", "fit", "fill", "none")
            )
            changes["fit_to_page"] = scaling in ("fit", "fill")
        if "booklet" in low:
            booklet = _choice(
                "booklet", low["booklet"], ("on", "off", "true", "false", "shuffle-only")
            )
            changes["booklet"] = booklet in ("on", "true", "shuffle-only")
        return replace(self, **changes)

    @property
    def has_layout(self) -> bool:
        """True when the page content must be rewritten (number-up, ranges, rotation, ...)."""
        return bool(
            self.number_up > 1
            or self.page_ranges
            or (self.orientation not in (None, 3))
            or self.fit_to_page
            or self.booklet
        )

    def layout_items(self) -> dict[str, str]:
        """The layout options as IPP key=value strings (only those differing from defaults)."""
        out: dict[str, str] = {}
        if self.number_up > 1:
            out["number-up"] = str(self.number_up)
            out["number-up-layout"] = self.number_up_layout
            if self.page_border != "none":
                out["page-border"] = self.page_border
        if self.page_ranges:
            out["page-ranges"] = format_page_ranges(self.page_ranges)
        if self.orientation not in (None, 3):
            out["orientation-requested"] = str(self.orientation)
        if self.fit_to_page:
            out["fit-to-page"] = "true"
        if self.booklet:
            out["booklet"] = "on"
        return out

    def without_layout(self) -> FinishingOptions:
        """A copy with every layout option at its default (the layout is already applied)."""
        return replace(
            self,
            number_up=1,
            number_up_layout="lrtb",
            page_border="none",
            page_ranges=(),
            orientation=None,
            fit_to_page=False,
            booklet=False,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["page_ranges"] = [list(r) for r in self.page_ranges]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FinishingOptions:
        values = dict(data)
        values["page_ranges"] = tuple(tuple(r) for r in values.get("page_ranges", ()))
        return cls(**values)

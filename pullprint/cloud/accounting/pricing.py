"""Prices and counts of a print-out. Pure functions over typed values; nothing here does I/O.

A price list belongs to one printer and charges either per *impression* (one printed side) or per
*sheet* (one piece of paper), with one price per media size (``"*"`` = any size), colour mode
(``color`` / ``mono``) and sidedness (``one-sided`` / ``two-sided``). Prices are Decimals with at
most six decimals (stored as integer millionths); costs are integer minor units, rounded half up
once per print-out, never per page.

The job's attributes are the ones the node sends to the printer: the CUPS options overridden by
the release options, read exactly as the node's ticket reads them (``daemon.ticket``).

Counting (see ``expected_counts`` and ``reconcile``): the document's page count registered by the
backend is counted after the queue's filter applied the layout (number-up is already in it); a job
whose registered pages are source pages (``pages_before_layout``) is divided by its number-up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pullprint.daemon.ticket import TicketError, build_ticket

UNITS = ("impression", "sheet")
COLORS = ("color", "mono")
SIDEDNESS = ("one-sided", "two-sided")
ANY_MEDIA = "*"
TICKET_KEYS = ("copies", "print-color-mode", "sides", "media")
# PWG media names and PPD PageSize names -> the short media keys of price lists.
MEDIA_KEYS = {
    "iso_a4_210x297mm": "a4",
    "iso_a3_297x420mm": "a3",
    "iso_a5_148x210mm": "a5",
    "na_letter_8.5x11in": "letter",
    "na_legal_8.5x14in": "legal",
    "a4": "a4",
    "a3": "a3",
    "a5": "a5",
    "letter": "letter",
    "legal": "legal",
}


class PriceError(ValueError):
    """A price list entry has a value pullprint does not accept (the message names it)."""


def media_key(value: str) -> str:
    """The price-list key of a media name: ``iso_a4_210x297mm``/``A4`` -> ``a4``; ``*`` stays;
    unknown sizes raise PriceError."""
    low = value.strip().lower()
    if low == ANY_MEDIA:
        return ANY_MEDIA
    if low not in MEDIA_KEYS:
        raise PriceError(f"media must be one of {sorted(set(MEDIA_KEYS.values()))} or '*'")
    return MEDIA_KEYS[low]


@dataclass(frozen=True)
class JobAttributes:
    """What decides the price: colour, sidedness, media (a key or ``*``), copies."""

    color: str
    sides: str
    media: str
    copies: int

    @classmethod
    def from_options(
        cls, options: Mapping[str, str], copies: int, release: Mapping[str, str] | None = None
    ) -> JobAttributes:
        """The attributes the printer will get: CUPS ``options`` overridden by ``release``.
        Without a colour mode the job counts as colour (cupsd's queue default); unknown media
        counts as ``*``."""
        chosen = {k: v for k, v in (release or {}).items() if k in TICKET_KEYS}
        try:
            ticket = build_ticket(dict(options), copies, chosen)
        except TicketError:  # the node refuses such a release; price it as printed without
            ticket = build_ticket(dict(options), copies, None)
        color = "mono" if ticket.get("print-color-mode") == "monochrome" else "color"
        sides = str(ticket.get("sides", "one-sided"))
        media = MEDIA_KEYS.get(str(ticket.get("media", "")).lower(), ANY_MEDIA)
        return cls(
            color=color,
            sides="one-sided" if sides == "one-sided" else "two-sided",
            media=media,
            copies=int(ticket.get("copies", copies)),
        )


@dataclass(frozen=True)
class PriceEntry:
    """One line of a price list."""

    media: str
    color: str
    sides: str
    price: Decimal

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise PriceError(f"color must be one of {list(COLORS)}")
        if self.sides not in SIDEDNESS:
            raise PriceError(f"sides must be one of {list(SIDEDNESS)}")
        if not self.price.is_finite() or self.price < 0 or self.price > Decimal(1_000_000):
            raise PriceError("price must be between 0 and 1000000")
        exponent = self.price.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -6:
            raise PriceError("price may have at most 6 decimal places")


@dataclass(frozen=True)
class PriceList:
    """A printer's prices and what they count."""

    unit: str
    entries: tuple[PriceEntry, ...]

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise PriceError(f"unit must be one of {list(UNITS)}")
        keys = [(e.media, e.color, e.sides) for e in self.entries]
        if len(keys) != len(set(keys)):
            raise PriceError("each media, color and sides may have one price only")

    def price_for(self, attrs: JobAttributes) -> Decimal | None:
        """The price of one unit for ``attrs``: the entry for its media, else the ``*`` entry;
        None when neither exists."""
        for media in (attrs.media, ANY_MEDIA):
            for entry in self.entries:
                if (entry.media, entry.color, entry.sides) == (media, attrs.color, attrs.sides):
                    return entry.price
        return None


@dataclass(frozen=True)
class Counts:
    """Impressions (printed sides) and sheets of a whole print-out (all copies)."""

    impressions: int
    sheets: int


def expected_counts(
    pages: int, attrs: JobAttributes, *, number_up: int = 1, pages_before_layout: bool = False
) -> Counts:
    """What the document and the plan should print: ``pages`` (divided by number-up when they are
    source pages) per copy, one impression per page side; two-sided halves the sheets."""
    per_copy = pages
    if pages_before_layout and number_up > 1:
        per_copy = math.ceil(pages / number_up)
    sheets = per_copy if attrs.sides == "one-sided" else math.ceil(per_copy / 2)
    return Counts(impressions=per_copy * attrs.copies, sheets=sheets * attrs.copies)


@dataclass(frozen=True)
class Reconciliation:
    """The count that is charged and whether the printer agreed with the document."""

    counts: Counts
    source: str  # printer | snmp | papercut | document
    mismatch: bool
    reason: str


def reconcile(
    expected: Counts,
    attrs: JobAttributes,
    *,
    printer_impressions: int | None = None,
    printer_sheets: int | None = None,
    snmp_delta: int | None = None,
    papercut_pages: int | None = None,
) -> Reconciliation:
    """Compare the expected counts with the printer's (job-impressions-completed, then an SNMP
    impression-counter delta, then PaperCut's logged pages); charge the printer's count when there
    is one. Any reported count unlike the expected one is a mismatch, with a reason naming both."""
    reported: Sequence[tuple[str, int | None]] = (
        ("printer", printer_impressions),
        ("snmp", snmp_delta),
        ("papercut", papercut_pages),
    )
    reasons = [
        f"{where} counted {count} impressions, the document and plan expect {expected.impressions}"
        for where, count in reported
        if count is not None and count != expected.impressions
    ]
    source, impressions = next(
        ((where, count) for where, count in reported if count is not None),
        ("document", expected.impressions),
    )
    if printer_sheets is not None and source == "printer":
        sheets = printer_sheets
    elif impressions == expected.impressions:
        sheets = expected.sheets
    elif attrs.sides == "one-sided":
        sheets = impressions
    else:
        sheets = math.ceil(impressions / 2)
    if printer_sheets is not None and printer_sheets != expected.sheets:
        reasons.append(
            f"printer counted {printer_sheets} sheets, the document and plan expect "
            f"{expected.sheets}"
        )
    return Reconciliation(
        counts=Counts(impressions=impressions, sheets=sheets),
        source=source,
        mismatch=bool(reasons),
        reason="; ".join(reasons)[:255],
    )


def cost_minor(count: int, price_micro: int, currency_exponent: int) -> int:
    """``count`` units at ``price_micro`` (millionths) in minor units, rounded half up."""
    # count * price_micro / 10**6 currency units = count * price_micro * 10**exp / 10**6 minor
    numerator = count * price_micro * 10**currency_exponent
    whole, rest = divmod(numerator, 10**6)
    return whole + (1 if rest * 2 >= 10**6 else 0)

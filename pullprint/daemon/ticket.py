"""The IPP job ticket for a release: the user's CUPS options, changed by the release options.

Each option goes to the printer once (copies in the ticket only, never also in the document).
"""

from __future__ import annotations

COLOR_FROM_CUPS = {"gray": "monochrome", "grey": "monochrome", "rgb": "color", "cmyk": "color"}
SIDES_FROM_CUPS = {
    "none": "one-sided",
    "duplexnotumble": "two-sided-long-edge",
    "duplextumble": "two-sided-short-edge",
}
MEDIA_FROM_PAGESIZE = {
    "a4": "iso_a4_210x297mm",
    "a3": "iso_a3_297x420mm",
    "a5": "iso_a5_148x210mm",
    "letter": "na_letter_8.5x11in",
    "legal": "na_legal_8.5x14in",
}
SIDES = frozenset({"one-sided", "two-sided-long-edge", "two-sided-short-edge"})
COLOR_MODES = frozenset({"color", "monochrome", "auto"})
MAX_COPIES = 999


class TicketError(ValueError):
    """A release option has a value we do not send to a printer (the message names it)."""


def build_ticket(
    options: dict[str, str], copies: int, release: dict[str, str] | None = None
) -> dict[str, str | int]:
    """Job attributes for Print-Job from the CUPS options, overridden by ``release``. Pure."""
    ticket: dict[str, str | int] = {"copies": copies}
    # The PPD's own options come first: cupsd maps what the print dialog chose onto them, while it
    # also passes the queue's IPP defaults (print-color-mode=color) whatever the user picked.
    color = COLOR_FROM_CUPS.get(options.get("ColorModel", "").lower()) or options.get(
        "print-color-mode", ""
    )
    if color in COLOR_MODES:
        ticket["print-color-mode"] = color
    sides = SIDES_FROM_CUPS.get(options.get("Duplex", "").lower()) or options.get("sides", "")
    if sides in SIDES:
        ticket["sides"] = sides
    media = MEDIA_FROM_PAGESIZE.get(options.get("PageSize", options.get("media", "")).lower())
    if media:
        ticket["media"] = media
    for key, value in (release or {}).items():
        if key == "copies":
            if not value.isdigit() or not 1 <= int(value) <= MAX_COPIES:
                raise TicketError(f"copies must be a number from 1 to {MAX_COPIES}, got {value!r}")
            ticket["copies"] = int(value)
        elif key == "print-color-mode":
            if value not in COLOR_MODES:
                raise TicketError(f"print-color-mode must be one of {sorted(COLOR_MODES)}")
            ticket[key] = value
        elif key == "sides":
            if value not in SIDES:
                raise TicketError(f"sides must be one of {sorted(SIDES)}")
            ticket[key] = value
        else:
            raise TicketError(f"unknown release option {key!r}")
    return ticket

"""RFID card numbers: one card, one key, whatever form the reader typed it in.

Readers (keyboard-wedge, network, MFP apps) report the same card UID as hex or as decimal, and
in either byte order. :func:`card_key` turns any of these forms into one canonical key: the UID's
bytes, in the byte order whose hex spelling sorts first. Pure functions.
"""

from __future__ import annotations

import re

MAX_CARD_BYTES = 16
_HEX = re.compile(r"^(0x)?[0-9a-f]+$")
_SEPARATORS = re.compile(r"[\s:\-]")


class CardError(ValueError):
    """Not a card number (the message says why)."""


def card_bytes(raw: str) -> bytes:
    """The UID bytes of a card number typed as hex (``04:A3:B2:C1``, ``0x04a3b2c1``) or decimal
    (``77640305``). All digits are read as decimal, as keyboard-wedge readers send them."""
    text = _SEPARATORS.sub("", raw.strip().lower())
    if not text:
        raise CardError("empty card number")
    if text.isdigit():
        value = int(text)
        length = max(4, (value.bit_length() + 7) // 8)
        data = value.to_bytes(length, "big")
    elif _HEX.match(text):
        digits = text.removeprefix("0x")
        if len(digits) % 2:
            digits = "0" + digits
        data = bytes.fromhex(digits)
    else:
        raise CardError(f"card number {raw!r} is neither decimal nor hex")
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"card number longer than {MAX_CARD_BYTES} bytes")
    return data


def card_key(raw: str) -> str:
    """The canonical key of a card number: hex of its UID in the byte order that sorts first."""
    data = card_bytes(raw)
    return min(data.hex(), data[::-1].hex())

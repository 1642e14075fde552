"""Encoding a Get-Printer-Attributes request and decoding an IPP answer (RFC 8010). Pure functions.

Only what the finishing plan needs: the request that asks a printer for its attributes, and a
decoder for any IPP message into typed values (collections included). No I/O here: the caller
sends the bytes (tests use captured answers of real printers under ``tests/data/printers``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeAlias

from pullprint.errors import IPPError

GET_PRINTER_ATTRIBUTES = 0x000B

# delimiter tags
OPERATION_GROUP = 0x01
JOB_GROUP = 0x02
END_OF_ATTRIBUTES = 0x03
PRINTER_GROUP = 0x04
UNSUPPORTED_GROUP = 0x05

# value tags
_INTEGER, _BOOLEAN, _ENUM = 0x21, 0x22, 0x23
_OCTETS, _DATETIME, _RESOLUTION, _RANGE = 0x30, 0x31, 0x32, 0x33
_BEG_COLLECTION, _TEXT_LANG, _NAME_LANG, _END_COLLECTION = 0x34, 0x35, 0x36, 0x37
_MEMBER_NAME = 0x4A
_OUT_OF_BAND = frozenset({0x10, 0x12, 0x13, 0x15, 0x16, 0x17})
_STRINGS = frozenset({0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49})
MAX_DEPTH = 32


@dataclass(frozen=True)
class IppRange:
    """A rangeOfInteger value."""

    lower: int
    upper: int


@dataclass(frozen=True)
class IppResolution:
    """A resolution value (units 3 = dots per inch, 4 = dots per centimetre)."""

    x: int
    y: int
    units: int


IppValue: TypeAlias = "int | bool | str | bytes | IppRange | IppResolution | IppCollection | None"
IppCollection: TypeAlias = "dict[str, list[IppValue]]"


@dataclass
class IppMessage:
    """A decoded IPP message: version, status (or operation) code, request id, groups in order."""

    version: tuple[int, int]
    code: int
    request_id: int
    groups: list[tuple[int, dict[str, list[IppValue]]]] = field(default_factory=list)

    def group(self, tag: int) -> dict[str, list[IppValue]]:
        """All attributes of the groups with ``tag`` merged (first occurrence wins)."""
        out: dict[str, list[IppValue]] = {}
        for group_tag, attrs in self.groups:
            if group_tag == tag:
                for name, values in attrs.items():
                    out.setdefault(name, values)
        return out


def _attr(tag: int, name: str, value: bytes) -> bytes:
    raw = name.encode("ascii")
    return struct.pack(">BH", tag, len(raw)) + raw + struct.pack(">H", len(value)) + value


def encode_get_printer_attributes(printer_uri: str, request_id: int = 1) -> bytes:
    """The bytes of a Get-Printer-Attributes request asking for every attribute. Pure."""
    body = struct.pack(">BBHI", 2, 0, GET_PRINTER_ATTRIBUTES, request_id)
    body += bytes([OPERATION_GROUP])
    body += _attr(0x47, "attributes-charset", b"utf-8")
    body += _attr(0x48, "attributes-natural-language", b"en")
    body += _attr(0x45, "printer-uri", printer_uri.encode("utf-8"))
    body += _attr(0x44, "requested-attributes", b"all")
    body += _attr(0x44, "", b"media-col-database")
    return body + bytes([END_OF_ATTRIBUTES])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise IPPError(f"IPP message truncated at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise IPPError("IPP message ends before end-of-attributes-tag")
        return self.data[self.pos]

    def item(self) -> tuple[int, str, bytes]:
        tag = self.u8()
        if tag == 0x7F:  # extension: a 4-byte tag follows
            tag = int(struct.unpack(">I", self.take(4))[0])
        name = self.take(self.u16()).decode("utf-8", "replace")
        value = self.take(self.u16())
        return tag, name, value


def _scalar(tag: int, value: bytes) -> IppValue:
    if tag in (_INTEGER, _ENUM):
        return int(struct.unpack(">i", value)[0]) if len(value) == 4 else None
    if tag == _BOOLEAN:
        return bool(value[0]) if value else None
    if tag == _RANGE and len(value) == 8:
        lower, upper = struct.unpack(">ii", value)
        return IppRange(int(lower), int(upper))
    if tag == _RESOLUTION and len(value) == 9:
        x, y, units = struct.unpack(">iib", value)
        return IppResolution(int(x), int(y), int(units))
    if tag in _STRINGS:
        return value.decode("utf-8", "replace")
    if tag in (_TEXT_LANG, _NAME_LANG) and len(value) >= 4:
        lang_len = struct.unpack(">H", value[:2])[0]
        rest = value[2 + lang_len :]
        text_len = struct.unpack(">H", rest[:2])[0]
        return rest[2 : 2 + text_len].decode("utf-8", "replace")
    if tag in _OUT_OF_BAND:
        return None
    return bytes(value)


def _collection(reader: _Reader, depth: int) -> IppCollection:
    if depth > MAX_DEPTH:
        raise IPPError(f"IPP collections nested deeper than {MAX_DEPTH}")
    out: IppCollection = {}
    member = ""
    while True:
        tag, _name, value = reader.item()
        if tag == _END_COLLECTION:
            return out
        if tag == _MEMBER_NAME:
            member = value.decode("utf-8", "replace")
            out.setdefault(member, [])
            continue
        if not member:
            raise IPPError("IPP collection value without a member name")
        if tag == _BEG_COLLECTION:
            out[member].append(_collection(reader, depth + 1))
        else:
            out[member].append(_scalar(tag, value))


def decode_message(data: bytes) -> IppMessage:
    """Decode an IPP request or response; raise IPPError naming what is malformed. Pure."""
    reader = _Reader(data)
    major, minor = reader.u8(), reader.u8()
    code = reader.u16()
    request_id = int(struct.unpack(">I", reader.take(4))[0])
    message = IppMessage((major, minor), code, request_id)
    attrs: dict[str, list[IppValue]] | None = None
    name = ""
    while True:
        tag = reader.peek()
        if tag < 0x10:
            reader.u8()
            if tag == END_OF_ATTRIBUTES:
                return message
            attrs = {}
            message.groups.append((tag, attrs))
            continue
        if attrs is None:
            raise IPPError("IPP attribute before any group tag")
        tag, item_name, value = reader.item()
        if item_name:
            name = item_name
            attrs[name] = []
        elif not name:
            raise IPPError("IPP additional value without an attribute")
        if tag == _BEG_COLLECTION:
            attrs[name].append(_collection(reader, 1))
        else:
            attrs[name].append(_scalar(tag, value))

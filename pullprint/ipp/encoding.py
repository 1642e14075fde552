"""IPP/1.1 message encoding and decoding (RFC 8010 section 3, RFC 8011 status codes). Pure.

Nothing here does I/O: :func:`encode_request` and :func:`encode_message` turn typed attributes into
bytes (the caller appends document data), :func:`decode_message` turns an answer into a typed
:class:`IppMessage`. Every value tag of RFC 8010 is handled, including ``rangeOfInteger``
(``page-ranges``), collections (``media-col``) and out-of-band values. The decoder treats its input
as hostile: anything short, over-long or malformed raises :class:`IppDecodeError` with the offset,
never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import datetime as dt
import enum
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, cast

from pullprint.ipp.errors import IppDecodeError, IppEncodeError

IPP_VERSION = (1, 1)
MAX_DEPTH = 16  # nested collections accepted by the decoder
MAX_VALUE_LENGTH = 0x7FFF  # value-length and name-length are SIGNED-SHORT (RFC 8010 3.1.6)


class GroupTag(enum.IntEnum):
    """Delimiter tags (RFC 8010 3.5.1)."""

    OPERATION = 0x01
    JOB = 0x02
    END = 0x03
    PRINTER = 0x04
    UNSUPPORTED = 0x05
    SUBSCRIPTION = 0x06
    EVENT_NOTIFICATION = 0x07
    RESOURCE = 0x08
    DOCUMENT = 0x09
    SYSTEM = 0x0A


class Tag(enum.IntEnum):
    """Value tags (RFC 8010 3.5.2)."""

    UNSUPPORTED = 0x10
    UNKNOWN = 0x12
    NO_VALUE = 0x13
    NOT_SETTABLE = 0x15
    DELETE_ATTRIBUTE = 0x16
    ADMIN_DEFINE = 0x17
    INTEGER = 0x21
    BOOLEAN = 0x22
    ENUM = 0x23
    OCTET_STRING = 0x30
    DATE_TIME = 0x31
    RESOLUTION = 0x32
    RANGE_OF_INTEGER = 0x33
    BEGIN_COLLECTION = 0x34
    TEXT_WITH_LANGUAGE = 0x35
    NAME_WITH_LANGUAGE = 0x36
    END_COLLECTION = 0x37
    TEXT_WITHOUT_LANGUAGE = 0x41
    NAME_WITHOUT_LANGUAGE = 0x42
    KEYWORD = 0x44
    URI = 0x45
    URI_SCHEME = 0x46
    CHARSET = 0x47
    NATURAL_LANGUAGE = 0x48
    MIME_MEDIA_TYPE = 0x49
    MEMBER_ATTR_NAME = 0x4A
    EXTENSION = 0x7F


OUT_OF_BAND = frozenset(
    {
        Tag.UNSUPPORTED,
        Tag.UNKNOWN,
        Tag.NO_VALUE,
        Tag.NOT_SETTABLE,
        Tag.DELETE_ATTRIBUTE,
        Tag.ADMIN_DEFINE,
    }
)
STRING_TAGS = frozenset(
    {
        Tag.TEXT_WITHOUT_LANGUAGE,
        Tag.NAME_WITHOUT_LANGUAGE,
        Tag.KEYWORD,
        Tag.URI,
        Tag.URI_SCHEME,
        Tag.CHARSET,
        Tag.NATURAL_LANGUAGE,
        Tag.MIME_MEDIA_TYPE,
        Tag.MEMBER_ATTR_NAME,
    }
)


class Operation(enum.IntEnum):
    """Operation ids (RFC 8011 5.4.15) this project sends."""

    PRINT_JOB = 0x0002
    VALIDATE_JOB = 0x0004
    CREATE_JOB = 0x0005
    SEND_DOCUMENT = 0x0006
    CANCEL_JOB = 0x0008
    GET_JOB_ATTRIBUTES = 0x0009
    GET_JOBS = 0x000A
    GET_PRINTER_ATTRIBUTES = 0x000B


STATUS_NAMES: dict[int, str] = {
    0x0000: "successful-ok",
    0x0001: "successful-ok-ignored-or-substituted-attributes",
    0x0002: "successful-ok-conflicting-attributes",
    0x0400: "client-error-bad-request",
    0x0401: "client-error-forbidden",
    0x0402: "client-error-not-authenticated",
    0x0403: "client-error-not-authorized",
    0x0404: "client-error-not-possible",
    0x0405: "client-error-timeout",
    0x0406: "client-error-not-found",
    0x0407: "client-error-gone",
    0x0408: "client-error-request-entity-too-large",
    0x0409: "client-error-request-value-too-long",
    0x040A: "client-error-document-format-not-supported",
    0x040B: "client-error-attributes-or-values-not-supported",
    0x040C: "client-error-uri-scheme-not-supported",
    0x040D: "client-error-charset-not-supported",
    0x040E: "client-error-conflicting-attributes",
    0x040F: "client-error-compression-not-supported",
    0x0410: "client-error-compression-error",
    0x0411: "client-error-document-format-error",
    0x0412: "client-error-document-access-error",
    0x0500: "server-error-internal-error",
    0x0501: "server-error-operation-not-supported",
    0x0502: "server-error-service-unavailable",
    0x0503: "server-error-version-not-supported",
    0x0504: "server-error-device-error",
    0x0505: "server-error-temporary-error",
    0x0506: "server-error-not-accepting-jobs",
    0x0507: "server-error-busy",
    0x0508: "server-error-job-canceled",
    0x0509: "server-error-multiple-document-jobs-not-supported",
}
# statuses that mean "the printer is there but cannot take this now": retry later
RETRY_STATUSES = frozenset({0x0502, 0x0505, 0x0506, 0x0507})


def status_name(code: int) -> str:
    """The RFC 8011 keyword of a status code (a generic name for codes it does not list)."""
    if code in STATUS_NAMES:
        return STATUS_NAMES[code]
    if code < 0x0100:
        return f"successful-0x{code:04x}"
    if 0x0400 <= code < 0x0500:
        return f"client-error-0x{code:04x}"
    if 0x0500 <= code < 0x0600:
        return f"server-error-0x{code:04x}"
    return f"status-0x{code:04x}"


def is_successful(code: int) -> bool:
    """True for the successful-ok range 0x0000-0x00FF."""
    return 0 <= code < 0x0100


# -- typed values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IppRange:
    """A ``rangeOfInteger`` value, both ends included (``page-ranges`` 1-3 is IppRange(1, 3))."""

    lower: int
    upper: int


@dataclass(frozen=True)
class IppResolution:
    """A ``resolution`` value; units 3 = dots per inch, 4 = dots per centimetre."""

    x: int
    y: int
    units: int = 3


@dataclass(frozen=True)
class IppLanguageString:
    """A ``textWithLanguage`` or ``nameWithLanguage`` value."""

    language: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class IppCollection:
    """A ``collection`` value (e.g. one ``media-col``): member attributes in order."""

    members: tuple[IppAttribute, ...] = ()

    def get(self, name: str) -> IppAttribute | None:
        """The member attribute called ``name``, or None."""
        for member in self.members:
            if member.name == name:
                return member
        return None

    def first(self, name: str) -> IppValue:
        """The first value of member ``name``, or None when absent."""
        member = self.get(name)
        return member.values[0] if member and member.values else None


IppValue: TypeAlias = (
    "int | bool | str | bytes | dt.datetime | IppRange | IppResolution | IppLanguageString"
    " | IppCollection | None"
)


_SCALARS = (
    str,
    bytes,
    int,
    dt.datetime,
    IppRange,
    IppResolution,
    IppLanguageString,
    IppCollection,
)


@dataclass(frozen=True, init=False)
class IppAttribute:
    """One attribute: its name, the value tag of its values and the values (1setOf = several).

    ``value_tags`` is only set when the values do not all share ``tag`` (e.g. a 1setOf mixing
    ``keyword`` and ``nameWithoutLanguage``); then it holds one tag per value.
    Out-of-band values (``no-value``, ``unknown``, ``unsupported``) are ``None``. ``values`` may
    be one value or any iterable of values; it is stored as a tuple.
    """

    name: str
    tag: int
    values: tuple[IppValue, ...]
    value_tags: tuple[int, ...] | None = None

    def __init__(
        self,
        name: str,
        tag: int,
        values: Iterable[IppValue] | IppValue = (),
        value_tags: Iterable[int] | None = None,
    ) -> None:
        if values is None or isinstance(values, _SCALARS):
            vals: tuple[IppValue, ...] = (values,)
        else:
            vals = tuple(values)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "tag", int(tag))
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "value_tags", tuple(value_tags) if value_tags else None)

    def tag_of(self, index: int) -> int:
        """The value tag of value number ``index``."""
        if self.value_tags is not None:
            return self.value_tags[index]
        return self.tag

    @property
    def value(self) -> IppValue:
        """The first value (None when there is none or it is out-of-band)."""
        return self.values[0] if self.values else None

    # Convenience constructors: the tag is in the name, so callers never pick it by number.
    @classmethod
    def integer(cls, name: str, *values: int) -> IppAttribute:
        return cls(name, Tag.INTEGER, values)

    @classmethod
    def enum(cls, name: str, *values: int) -> IppAttribute:
        return cls(name, Tag.ENUM, values)

    @classmethod
    def boolean(cls, name: str, *values: bool) -> IppAttribute:
        return cls(name, Tag.BOOLEAN, values)

    @classmethod
    def keyword(cls, name: str, *values: str) -> IppAttribute:
        return cls(name, Tag.KEYWORD, values)

    @classmethod
    def name_(cls, name: str, *values: str) -> IppAttribute:
        """A ``nameWithoutLanguage`` attribute (``job-name``, ``requesting-user-name``)."""
        return cls(name, Tag.NAME_WITHOUT_LANGUAGE, values)

    @classmethod
    def text(cls, name: str, *values: str) -> IppAttribute:
        return cls(name, Tag.TEXT_WITHOUT_LANGUAGE, values)

    @classmethod
    def uri(cls, name: str, *values: str) -> IppAttribute:
        return cls(name, Tag.URI, values)

    @classmethod
    def mime(cls, name: str, *values: str) -> IppAttribute:
        return cls(name, Tag.MIME_MEDIA_TYPE, values)

    @classmethod
    def range(cls, name: str, *values: IppRange) -> IppAttribute:
        return cls(name, Tag.RANGE_OF_INTEGER, values)

    @classmethod
    def collection(cls, name: str, *values: IppCollection) -> IppAttribute:
        return cls(name, Tag.BEGIN_COLLECTION, values)


@dataclass
class IppMessage:
    """A request or response: version, operation id or status code, request id, groups in order.

    ``data`` is whatever followed the end-of-attributes tag (document data, usually empty).
    """

    version: tuple[int, int]
    code: int
    request_id: int
    groups: list[tuple[int, list[IppAttribute]]] = field(default_factory=list)
    data: bytes = b""

    @property
    def status_name(self) -> str:
        """The status code's keyword (meaningful for responses)."""
        return status_name(self.code)

    def group(self, group: int) -> list[IppAttribute]:
        """The attributes of the first group with tag ``group`` (empty when there is none)."""
        for tag, attributes in self.groups:
            if tag == group:
                return attributes
        return []

    def groups_of(self, group: int) -> list[list[IppAttribute]]:
        """Every group with tag ``group`` in order (Get-Jobs answers one job group per job)."""
        return [attributes for tag, attributes in self.groups if tag == group]

    def get(self, group: int, name: str) -> IppAttribute | None:
        """Attribute ``name`` of the first group tagged ``group``, or None."""
        for attribute in self.group(group):
            if attribute.name == name:
                return attribute
        return None

    def first(self, name: str) -> IppValue:
        """The first value of the first attribute called ``name`` in any group, or None."""
        for _tag, attributes in self.groups:
            for attribute in attributes:
                if attribute.name == name:
                    return attribute.value
        return None

    def find(self, name: str) -> IppAttribute | None:
        """The first attribute called ``name`` in any group, or None."""
        for _tag, attributes in self.groups:
            for attribute in attributes:
                if attribute.name == name:
                    return attribute
        return None

    @property
    def status_message(self) -> str:
        """The operation group's ``status-message`` ('' when absent)."""
        attribute = self.get(GroupTag.OPERATION, "status-message")
        return str(attribute.value) if attribute and attribute.value is not None else ""


# -- encoding ----------------------------------------------------------------------------------
def _encode_str(text: str | bytes, what: str) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_VALUE_LENGTH:
        raise IppEncodeError(f"{what} is {len(raw)} bytes, more than {MAX_VALUE_LENGTH}")
    return raw


def _int32(value: object, name: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IppEncodeError(f"{name}: integer value expected, got {value!r}")
    if not -(2**31) <= value < 2**31:
        raise IppEncodeError(f"{name}: {value} does not fit a signed 32-bit integer")
    return struct.pack(">i", value)


def encode_value(tag: int, value: IppValue, name: str = "") -> bytes:
    """The value octets (without the length) of one non-collection value of ``tag``. Pure."""
    if tag in OUT_OF_BAND:
        return b""
    if tag in (Tag.INTEGER, Tag.ENUM):
        return _int32(value, name)
    if tag == Tag.BOOLEAN:
        if not isinstance(value, bool):
            raise IppEncodeError(f"{name}: boolean value expected, got {value!r}")
        return b"\x01" if value else b"\x00"
    if tag == Tag.RANGE_OF_INTEGER:
        if not isinstance(value, IppRange):
            raise IppEncodeError(f"{name}: IppRange expected, got {value!r}")
        return _int32(value.lower, name) + _int32(value.upper, name)
    if tag == Tag.RESOLUTION:
        if not isinstance(value, IppResolution) or not 0 <= value.units <= 255:
            raise IppEncodeError(f"{name}: IppResolution expected, got {value!r}")
        return _int32(value.x, name) + _int32(value.y, name) + bytes([value.units])
    if tag == Tag.DATE_TIME:
        if not isinstance(value, dt.datetime):
            raise IppEncodeError(f"{name}: datetime expected, got {value!r}")
        return _encode_datetime(value)
    if tag in (Tag.TEXT_WITH_LANGUAGE, Tag.NAME_WITH_LANGUAGE):
        if isinstance(value, IppLanguageString):
            lang, text = value.language, value.text
        elif isinstance(value, str):
            lang, text = "en", value
        else:
            raise IppEncodeError(f"{name}: IppLanguageString expected, got {value!r}")
        raw_lang, raw_text = _encode_str(lang, name), _encode_str(text, name)
        return (
            struct.pack(">H", len(raw_lang))
            + raw_lang
            + struct.pack(">H", len(raw_text))
            + raw_text
        )
    if tag in STRING_TAGS:
        if not isinstance(value, str):
            raise IppEncodeError(
                f"{name}: string value expected for tag 0x{tag:02x}, got {value!r}"
            )
        return _encode_str(value, name)
    if isinstance(value, bytes | str):  # octetString and unknown/extension tags: raw octets
        return _encode_str(value, name)
    raise IppEncodeError(f"{name}: cannot encode {value!r} with tag 0x{tag:02x}")


def _encode_datetime(value: dt.datetime) -> bytes:
    """RFC 2579 DateAndTime, 11 octets (naive datetimes are taken as UTC)."""
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = b"+" if minutes >= 0 else b"-"
    minutes = abs(minutes)
    return (
        struct.pack(
            ">HBBBBBB",
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 100_000,
        )
        + sign
        + bytes([minutes // 60, minutes % 60])
    )


def _field(tag: int, name: str, value: bytes) -> bytes:
    raw_name = _encode_str(name, "attribute name")
    if len(value) > MAX_VALUE_LENGTH:
        raise IppEncodeError(f"{name}: value of {len(value)} bytes is too long")
    return (
        bytes([tag])
        + struct.pack(">H", len(raw_name))
        + raw_name
        + struct.pack(">H", len(value))
        + value
    )


def _encode_attribute(attribute: IppAttribute, out: list[bytes], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise IppEncodeError(f"{attribute.name}: collections nested deeper than {MAX_DEPTH}")
    if not attribute.values:
        out.append(_field(Tag.NO_VALUE, attribute.name, b""))
        return
    for index, value in enumerate(attribute.values):
        tag = attribute.tag_of(index)
        name = attribute.name if index == 0 else ""
        if tag > 0xFF or tag < 0x10:
            raise IppEncodeError(f"{attribute.name}: 0x{tag:x} is not a value tag")
        if tag == Tag.BEGIN_COLLECTION:
            if not isinstance(value, IppCollection):
                raise IppEncodeError(f"{attribute.name}: IppCollection expected, got {value!r}")
            out.append(_field(Tag.BEGIN_COLLECTION, name, b""))
            for member in value.members:
                out.append(_field(Tag.MEMBER_ATTR_NAME, "", _encode_str(member.name, "member")))
                _encode_attribute(
                    IppAttribute("", member.tag, member.values, member.value_tags), out, depth + 1
                )
            out.append(_field(Tag.END_COLLECTION, "", b""))
        else:
            out.append(_field(tag, name, encode_value(tag, value, attribute.name)))


def encode_attributes(attributes: Iterable[IppAttribute]) -> bytes:
    """The encoded attributes of one group, without its delimiter tag. Pure."""
    out: list[bytes] = []
    for attribute in attributes:
        if not attribute.name:
            raise IppEncodeError("an attribute needs a name")
        _encode_attribute(attribute, out)
    return b"".join(out)


def encode_message(message: IppMessage) -> bytes:
    """The bytes of ``message``: header, groups, end-of-attributes tag, then ``message.data``."""
    major, minor = message.version
    if not (0 <= major <= 255 and 0 <= minor <= 255):
        raise IppEncodeError(f"bad IPP version {message.version}")
    if not 0 <= message.code <= 0xFFFF:
        raise IppEncodeError(f"operation/status code {message.code} out of range")
    if not 0 <= message.request_id < 2**31:
        raise IppEncodeError(f"request-id {message.request_id} out of range")
    out = [struct.pack(">BBHi", major, minor, message.code, message.request_id)]
    for group, attributes in message.groups:
        if not 0x01 <= group <= 0x0F or group == GroupTag.END:
            raise IppEncodeError(f"0x{group:02x} is not a group delimiter tag")
        out.append(bytes([group]))
        out.append(encode_attributes(attributes))
    out.append(bytes([GroupTag.END]))
    out.append(message.data)
    return b"".join(out)


def encode_request(
    operation: int,
    request_id: int,
    operation_attributes: Sequence[IppAttribute],
    job_attributes: Sequence[IppAttribute] = (),
    *,
    version: tuple[int, int] = IPP_VERSION,
    charset: str = "utf-8",
    natural_language: str = "en",
) -> bytes:
    """A request's header and attributes, ending with the end-of-attributes tag. Pure.

    ``attributes-charset`` and ``attributes-natural-language`` come first, as RFC 8011 4.1.4
    requires (added here unless ``operation_attributes`` starts with them). Document data is not
    included: the caller sends it right after these bytes.
    """
    names = [attribute.name for attribute in operation_attributes]
    first: list[IppAttribute] = []
    if "attributes-charset" not in names:
        first.append(IppAttribute("attributes-charset", Tag.CHARSET, [charset]))
    if "attributes-natural-language" not in names:
        first.append(
            IppAttribute("attributes-natural-language", Tag.NATURAL_LANGUAGE, [natural_language])
        )
    groups: list[tuple[int, list[IppAttribute]]] = [
        (GroupTag.OPERATION, [*first, *operation_attributes])
    ]
    if job_attributes:
        groups.append((GroupTag.JOB, list(job_attributes)))
    return encode_message(IppMessage(version, operation, request_id, groups))


# -- job template attributes from plain values -----------------------------------------------
JOB_ATTRIBUTE_TAGS: dict[str, int] = {
    "copies": Tag.INTEGER,
    "number-up": Tag.INTEGER,
    "job-priority": Tag.INTEGER,
    "orientation-requested": Tag.ENUM,
    "print-quality": Tag.ENUM,
    "finishings": Tag.ENUM,
    "page-ranges": Tag.RANGE_OF_INTEGER,
    "sides": Tag.KEYWORD,
    "print-color-mode": Tag.KEYWORD,
    "media": Tag.KEYWORD,
    "media-source": Tag.KEYWORD,
    "media-type": Tag.KEYWORD,
    "output-bin": Tag.KEYWORD,
    "multiple-document-handling": Tag.KEYWORD,
    "print-scaling": Tag.KEYWORD,
    "print-content-optimize": Tag.KEYWORD,
    "print-rendering-intent": Tag.KEYWORD,
    "job-hold-until": Tag.KEYWORD,
    "job-sheets": Tag.KEYWORD,
    "page-delivery": Tag.KEYWORD,
    "presentation-direction-number-up": Tag.KEYWORD,
    "printer-resolution": Tag.RESOLUTION,
}

JobValue: TypeAlias = "str | int | bool | IppRange | IppResolution | IppCollection"


def parse_page_ranges(text: str) -> tuple[IppRange, ...]:
    """``"1-3,5,7-"`` -> IppRange(1, 3), IppRange(5, 5), IppRange(7, 2**31-1). Pure.

    Raises IppEncodeError for anything else (empty parts, reversed or non-positive ranges).
    """
    ranges: list[IppRange] = []
    for part in text.replace(" ", "").split(","):
        low, sep, high = part.partition("-")
        try:
            lower = int(low)
            upper = (int(high) if high else 2**31 - 1) if sep else lower
        except ValueError as exc:
            raise IppEncodeError(f"page-ranges: {part!r} is not N or N-M") from exc
        if lower < 1 or upper < lower:
            raise IppEncodeError(f"page-ranges: {part!r} is not an increasing range from 1")
        ranges.append(IppRange(lower, upper))
    return tuple(ranges)


def job_attribute(name: str, value: JobValue | Sequence[JobValue]) -> IppAttribute:
    """An attribute for the job group from a plain value, with the tag RFC 8011 gives ``name``.

    Known names use their registered syntax (copies -> integer, sides -> keyword, page-ranges ->
    rangeOfInteger, also from text like "1-3,5"); otherwise ints become ``integer``, bools
    ``boolean``, strings ``keyword``, IppRange ``rangeOfInteger``, IppCollection ``collection``.
    Pure.
    """
    values: tuple[JobValue, ...] = (
        tuple(value) if isinstance(value, list | tuple) else (cast("JobValue", value),)
    )
    tag = JOB_ATTRIBUTE_TAGS.get(name)
    if tag == Tag.RANGE_OF_INTEGER:
        ranges: list[IppValue] = []
        for item in values:
            if isinstance(item, str):
                ranges.extend(parse_page_ranges(item))
            elif isinstance(item, IppRange):
                ranges.append(item)
            else:
                raise IppEncodeError(f"{name}: ranges expected, got {item!r}")
        return IppAttribute(name, tag, ranges)
    if tag in (Tag.INTEGER, Tag.ENUM):
        numbers: list[IppValue] = []
        for item in values:
            if isinstance(item, str) and item.strip().lstrip("-").isdigit():
                numbers.append(int(item))
            elif isinstance(item, int) and not isinstance(item, bool):
                numbers.append(item)
            else:
                raise IppEncodeError(f"{name}: integer expected, got {item!r}")
        return IppAttribute(name, tag, numbers)
    if tag is None:
        first = values[0] if values else ""
        if isinstance(first, bool):
            tag = Tag.BOOLEAN
        elif isinstance(first, int):
            tag = Tag.INTEGER
        elif isinstance(first, IppRange):
            tag = Tag.RANGE_OF_INTEGER
        elif isinstance(first, IppResolution):
            tag = Tag.RESOLUTION
        elif isinstance(first, IppCollection):
            tag = Tag.BEGIN_COLLECTION
        else:
            tag = Tag.KEYWORD
    for item in values:
        if tag == Tag.BEGIN_COLLECTION:
            if not isinstance(item, IppCollection):
                raise IppEncodeError(f"{name}: IppCollection expected, got {item!r}")
        else:
            encode_value(tag, item, name)  # fail early, naming the attribute
    return IppAttribute(name, tag, values)


def job_attributes(values: Mapping[str, JobValue | Sequence[JobValue]]) -> list[IppAttribute]:
    """:func:`job_attribute` for each item, in the mapping's order. Pure."""
    return [job_attribute(name, value) for name, value in values.items()]


# -- decoding ----------------------------------------------------------------------------------
class _Reader:
    """A cursor over the message bytes; every read checks the length first."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise IppDecodeError(
                f"truncated IPP message: {what} needs {count} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def short(self, what: str) -> int:
        value: int = struct.unpack(">H", self.take(2, what))[0]
        return value

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def _decode_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # some printers send Latin-1 text; keep it readable


def decode_value(tag: int, raw: bytes, name: str = "") -> IppValue:
    """The typed value of one non-collection value ``raw`` of ``tag``. Pure.

    Raises IppDecodeError when the length does not fit the tag's syntax.
    """

    def need(length: int) -> None:
        if len(raw) != length:
            raise IppDecodeError(
                f"attribute {name!r}: tag 0x{tag:02x} needs {length} value bytes, got {len(raw)}"
            )

    if tag in OUT_OF_BAND:
        return None
    if tag in (Tag.INTEGER, Tag.ENUM):
        need(4)
        return int(struct.unpack(">i", raw)[0])
    if tag == Tag.BOOLEAN:
        need(1)
        return raw != b"\x00"
    if tag == Tag.RANGE_OF_INTEGER:
        need(8)
        lower, upper = struct.unpack(">ii", raw)
        return IppRange(lower, upper)
    if tag == Tag.RESOLUTION:
        need(9)
        x, y, units = struct.unpack(">iiB", raw)
        return IppResolution(x, y, units)
    if tag == Tag.DATE_TIME:
        need(11)
        return _decode_datetime(raw, name)
    if tag in (Tag.TEXT_WITH_LANGUAGE, Tag.NAME_WITH_LANGUAGE):
        inner = _Reader(raw)
        lang = _decode_text(inner.take(inner.short("language length"), "language"), name)
        text = _decode_text(inner.take(inner.short("text length"), "text"), name)
        if not inner.at_end():
            raise IppDecodeError(f"attribute {name!r}: bytes left after text with language")
        return IppLanguageString(lang, text)
    if tag in STRING_TAGS:
        return _decode_text(raw, name)
    return bytes(raw)  # octetString, extension and unassigned tags


def _decode_datetime(raw: bytes, name: str) -> dt.datetime:
    year, month, day, hour, minute, second, decis = struct.unpack(">HBBBBBB", raw[:8])
    direction, off_h, off_m = raw[8:9], raw[9], raw[10]
    try:
        offset = dt.timedelta(hours=off_h, minutes=off_m)
        zone = dt.timezone(-offset if direction == b"-" else offset)
        return dt.datetime(year, month, day, hour, minute, min(second, 59), decis * 100_000, zone)
    except (ValueError, OverflowError) as exc:
        raise IppDecodeError(f"attribute {name!r}: invalid dateTime {raw.hex()}") from exc


def _read_field(reader: _Reader) -> tuple[int, str, bytes]:
    """One tag/name/value triple after its tag byte has been read by the caller."""
    name_len = reader.short("name-length")
    name = _decode_text(reader.take(name_len, "attribute name"), "name")
    value_len = reader.short("value-length")
    return name_len, name, reader.take(value_len, f"value of {name or 'additional value'!r}")


def _decode_collection(reader: _Reader, depth: int, name: str) -> IppCollection:
    """The members of a collection whose begCollection field has been read, up to endCollection."""
    if depth > MAX_DEPTH:
        raise IppDecodeError(f"attribute {name!r}: collections nested deeper than {MAX_DEPTH}")
    members: list[tuple[str, list[int], list[IppValue]]] = []
    while True:
        tag = reader.byte(f"a member of collection {name!r}")
        if tag <= 0x0F:
            raise IppDecodeError(f"collection {name!r} not closed before delimiter 0x{tag:02x}")
        if tag == Tag.EXTENSION:
            raise IppDecodeError(f"collection {name!r}: extension tag not supported here")
        _name_len, member_name_field, raw = _read_field(reader)
        if member_name_field:
            raise IppDecodeError(f"collection {name!r}: member field with a name (RFC 8010 3.1.6)")
        if tag == Tag.END_COLLECTION:
            break
        if tag == Tag.MEMBER_ATTR_NAME:
            member = _decode_text(raw, name)
            if not member:
                raise IppDecodeError(f"collection {name!r}: empty member name")
            members.append((member, [], []))
            continue
        if not members:
            raise IppDecodeError(f"collection {name!r}: value before the first memberAttrName")
        value: IppValue = (
            _decode_collection(reader, depth + 1, members[-1][0])
            if tag == Tag.BEGIN_COLLECTION
            else decode_value(tag, raw, members[-1][0])
        )
        members[-1][1].append(tag)
        members[-1][2].append(value)
    return IppCollection(tuple(_make_attribute(n, tags, vals) for n, tags, vals in members))


def _make_attribute(name: str, tags: list[int], values: list[IppValue]) -> IppAttribute:
    if not tags:
        return IppAttribute(name, Tag.NO_VALUE, ())
    mixed = any(tag != tags[0] for tag in tags)
    return IppAttribute(name, tags[0], values, tags if mixed else None)


def decode_message(data: bytes) -> IppMessage:
    """Decode one IPP message (request or response). Pure; never raises anything but
    IppDecodeError on bad input. Bytes after the end-of-attributes tag go to ``data``."""
    reader = _Reader(bytes(data))
    if len(reader.data) < 8:
        raise IppDecodeError(
            f"truncated IPP message: {len(reader.data)} bytes, the header alone needs 8"
        )
    major, minor, code, request_id = struct.unpack(">BBHi", reader.take(8, "header"))
    groups: list[tuple[int, list[IppAttribute]]] = []
    current: list[tuple[str, list[int], list[IppValue]]] | None = None

    def close_group() -> None:
        if current is not None:
            groups[-1] = (groups[-1][0], [_make_attribute(*item) for item in current])

    while True:
        tag = reader.byte("the next tag (no end-of-attributes-tag)")
        if tag == GroupTag.END:
            close_group()
            break
        if tag <= 0x0F:
            close_group()
            groups.append((tag, []))
            current = []
            continue
        if current is None:
            raise IppDecodeError(
                f"attribute tag 0x{tag:02x} at offset {reader.pos - 1} before any group"
            )
        if tag == Tag.EXTENSION:
            name_len, name, raw = _read_field(reader)
            if len(raw) < 4:
                raise IppDecodeError(f"attribute {name!r}: extension value shorter than 4 bytes")
            tag = int(struct.unpack(">I", raw[:4])[0])
            if tag > 0x7FFFFFFF:
                raise IppDecodeError(f"attribute {name!r}: invalid extension tag")
            value: IppValue = bytes(raw[4:])
        else:
            name_len, name, raw = _read_field(reader)
            if tag == Tag.BEGIN_COLLECTION:
                value = _decode_collection(reader, 1, name or (current[-1][0] if current else ""))
            elif tag in (Tag.END_COLLECTION, Tag.MEMBER_ATTR_NAME):
                raise IppDecodeError(
                    f"tag 0x{tag:02x} outside a collection at offset {reader.pos - len(raw)}"
                )
            else:
                value = decode_value(tag, raw, name)
        if name_len == 0:
            if not current:
                raise IppDecodeError("additional value without an attribute before it")
            current[-1][1].append(tag)
            current[-1][2].append(value)
        else:
            current.append((name, [tag], [value]))
    return IppMessage((major, minor), code, request_id, groups, reader.data[reader.pos :])


def iter_attributes(message: IppMessage) -> Iterator[tuple[int, IppAttribute]]:
    """Every (group tag, attribute) of ``message`` in order."""
    for group, attributes in message.groups:
        for attribute in attributes:
            yield group, attribute

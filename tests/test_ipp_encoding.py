"""IPP encoding and decoding: real answers captured from ippeveprinter (tests/data/ipp, made by
tests/data/ipp/capture.py), byte-exact round trips, every value tag, and hostile input."""

from __future__ import annotations

import datetime as dt
import random
import struct
from pathlib import Path

import pytest

from pullprint.errors import IPPError
from pullprint.ipp.client import JobStatus, PrinterAttributes, http_url
from pullprint.ipp.encoding import (
    GroupTag,
    IppAttribute,
    IppCollection,
    IppLanguageString,
    IppMessage,
    IppRange,
    IppResolution,
    Operation,
    Tag,
    decode_message,
    encode_message,
    encode_request,
    job_attribute,
    job_attributes,
    parse_page_ranges,
    status_name,
)
from pullprint.ipp.errors import IppDecodeError, IppEncodeError

DATA = Path(__file__).parent / "data" / "ipp"
CAPTURED = sorted(DATA.glob("*.bin"))


def load(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


# -- real captured answers ---------------------------------------------------------------------
def test_fixtures_are_present() -> None:
    names = {path.stem for path in CAPTURED}
    assert {"get-printer-attributes", "get-job-attributes", "get-jobs", "print-job"} <= names


def test_get_printer_attributes_answer() -> None:
    message = decode_message(load("get-printer-attributes"))
    assert message.version == (1, 1)
    assert message.code == 0
    assert message.status_name == "successful-ok"
    assert message.request_id == 1
    assert [tag for tag, _ in message.groups] == [GroupTag.OPERATION, GroupTag.PRINTER]
    assert message.get(GroupTag.OPERATION, "attributes-charset") == IppAttribute(
        "attributes-charset", Tag.CHARSET, ["utf-8"]
    )
    formats = message.get(GroupTag.PRINTER, "document-format-supported")
    assert formats is not None and formats.tag == Tag.MIME_MEDIA_TYPE
    assert "application/pdf" in formats.values
    assert message.first("copies-supported") == IppRange(1, 999)
    assert message.first("printer-resolution-default") == IppResolution(600, 600, 3)
    assert message.first("page-ranges-supported") is True
    assert isinstance(message.first("printer-current-time"), dt.datetime)
    # a nested collection: media-col-default { media-size { x-dimension y-dimension } }
    media_col = message.first("media-col-default")
    assert isinstance(media_col, IppCollection)
    size = media_col.first("media-size")
    assert isinstance(size, IppCollection)
    assert size.first("x-dimension") == 21590
    assert size.first("y-dimension") == 27940
    database = message.get(GroupTag.PRINTER, "media-col-database")
    assert database is not None and len(database.values) >= 5
    assert all(isinstance(value, IppCollection) for value in database.values)

    view = PrinterAttributes.from_message(message)
    assert view.printer_name == "capture"
    assert view.printer_state == 3
    assert "application/pdf" in view.document_format_supported
    assert "two-sided-long-edge" in view.sides_supported
    assert view.print_color_mode_supported  # e.g. ('monochrome',)
    assert view.copies_supported == IppRange(1, 999)


def test_print_job_and_get_job_attributes_answers() -> None:
    printed = decode_message(load("print-job"))
    assert printed.code == 0
    assert printed.get(GroupTag.JOB, "job-id") is not None
    job_id = printed.first("job-id")

    message = decode_message(load("get-job-attributes"))
    status = JobStatus.from_attributes(message.group(GroupTag.JOB))
    assert status.job_id == job_id
    assert status.job_state == 9
    assert status.state_name == "completed"
    assert status.is_final
    assert status.job_name == "capture-job"
    assert status.job_state_reasons == ("job-completed-successfully",)
    assert status.impressions_completed == 6  # 3 pages x copies=2, reported by our -c command
    assert message.get(GroupTag.JOB, "copies") == IppAttribute("copies", Tag.INTEGER, [2])
    assert message.first("sides") == "two-sided-long-edge"


def test_get_jobs_answer_has_one_group_per_job() -> None:
    message = decode_message(load("get-jobs"))
    jobs = [JobStatus.from_attributes(group) for group in message.groups_of(GroupTag.JOB)]
    assert [job.job_name for job in jobs] == ["capture-job"]


def test_error_answer_names_the_status() -> None:
    message = decode_message(load("get-job-attributes-not-found"))
    assert message.code == 0x0406
    assert message.status_name == "client-error-not-found"
    assert message.status_message  # ippeveprinter says why


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_captured_answers_reencode_byte_exact(path: Path) -> None:
    data = path.read_bytes()
    assert encode_message(decode_message(data)) == data


# -- encoding ----------------------------------------------------------------------------------
def test_encode_request_header_and_standard_first_attributes() -> None:
    data = encode_request(
        Operation.GET_JOB_ATTRIBUTES,
        7,
        [IppAttribute.uri("printer-uri", "ipp://127.0.0.1:631/ipp/print")],
    )
    assert data[:8] == bytes([1, 1, 0x00, 0x09, 0, 0, 0, 7])
    assert data[8] == GroupTag.OPERATION
    assert data[-1] == GroupTag.END
    message = decode_message(data)
    names = [a.name for a in message.group(GroupTag.OPERATION)]
    assert names == ["attributes-charset", "attributes-natural-language", "printer-uri"]


def test_range_of_integer_bytes() -> None:
    data = encode_request(
        Operation.PRINT_JOB, 1, [], [IppAttribute.range("page-ranges", IppRange(1, 3))]
    )
    expected = (
        bytes([GroupTag.JOB, Tag.RANGE_OF_INTEGER])
        + struct.pack(">H", 11)
        + b"page-ranges"
        + struct.pack(">Hii", 8, 1, 3)
        + bytes([GroupTag.END])
    )
    assert data.endswith(expected)


def test_job_ticket_with_ranges_collection_and_keywords_round_trips() -> None:
    media_col = IppCollection(
        (
            IppAttribute(
                "media-size",
                Tag.BEGIN_COLLECTION,
                [
                    IppCollection(
                        (
                            IppAttribute.integer("x-dimension", 21000),
                            IppAttribute.integer("y-dimension", 29700),
                        )
                    )
                ],
            ),
            IppAttribute.keyword("media-source", "main"),
        )
    )
    attrs = [
        *job_attributes({"copies": 2, "print-color-mode": "monochrome", "page-ranges": "1-3,5"}),
        IppAttribute.collection("media-col", media_col),
    ]
    data = encode_request(Operation.PRINT_JOB, 3, [], attrs)
    job = decode_message(data).group(GroupTag.JOB)
    assert job == attrs
    assert job[1] == IppAttribute("print-color-mode", Tag.KEYWORD, ["monochrome"])
    assert job[2].values == (IppRange(1, 3), IppRange(5, 5))
    decoded = job[3].value
    assert isinstance(decoded, IppCollection)
    size = decoded.first("media-size")
    assert isinstance(size, IppCollection) and size.first("y-dimension") == 29700


def test_every_value_tag_round_trips() -> None:
    when = dt.datetime(2024, 2, 29, 23, 59, 58, 700_000, dt.timezone(dt.timedelta(hours=-5)))
    attrs = [
        IppAttribute.integer("int", -(2**31), 0, 2**31 - 1),
        IppAttribute.boolean("bool", True, False),
        IppAttribute.enum("enum", 3, 9),
        IppAttribute("octets", Tag.OCTET_STRING, [b"\x00\xff"]),
        IppAttribute("when", Tag.DATE_TIME, [when]),
        IppAttribute("res", Tag.RESOLUTION, [IppResolution(300, 600, 4)]),
        IppAttribute.range("range", IppRange(-1, 2**31 - 1)),
        IppAttribute("tl", Tag.TEXT_WITH_LANGUAGE, [IppLanguageString("de", "Grüße")]),
        IppAttribute("nl", Tag.NAME_WITH_LANGUAGE, [IppLanguageString("fr", "Été")]),
        IppAttribute.text("text", "ünïcode text"),
        IppAttribute.name_("name", "job ü"),
        IppAttribute.keyword("kw", "a", "b"),
        IppAttribute.uri("uri", "ipps://localhost/ipp/print"),
        IppAttribute("scheme", Tag.URI_SCHEME, ["ipps"]),
        IppAttribute("cs", Tag.CHARSET, ["utf-8"]),
        IppAttribute("lang", Tag.NATURAL_LANGUAGE, ["en-us"]),
        IppAttribute.mime("mime", "application/pdf"),
        IppAttribute("unsupported", Tag.UNSUPPORTED, [None]),
        IppAttribute("unknown", Tag.UNKNOWN, [None]),
        IppAttribute("novalue", Tag.NO_VALUE, [None]),
        IppAttribute(
            "mixed", Tag.KEYWORD, ["none", "custom"], [Tag.KEYWORD, Tag.NAME_WITHOUT_LANGUAGE]
        ),
        IppAttribute.collection("empty-col", IppCollection()),
        IppAttribute("unassigned", 0x4F, [b"raw"]),
    ]
    message = IppMessage(
        (2, 0),
        0x0001,
        2**31 - 1,
        [(GroupTag.PRINTER, attrs), (GroupTag.UNSUPPORTED, [attrs[0]])],
        data=b"%PDF-",
    )
    data = encode_message(message)
    back = decode_message(data)
    assert back == message
    assert encode_message(back) == data
    assert back.first("when") == when


def test_job_attribute_types() -> None:
    assert job_attribute("copies", "3") == IppAttribute.integer("copies", 3)
    assert job_attribute("sides", "two-sided-long-edge").tag == Tag.KEYWORD
    assert job_attribute("orientation-requested", 4).tag == Tag.ENUM
    assert job_attribute("my-flag", True).tag == Tag.BOOLEAN
    assert job_attribute("number-of-things", 7).tag == Tag.INTEGER
    assert job_attribute("page-ranges", IppRange(2, 4)).values == (IppRange(2, 4),)
    assert parse_page_ranges("1-3, 5,7-") == (
        IppRange(1, 3),
        IppRange(5, 5),
        IppRange(7, 2**31 - 1),
    )
    for bad in ("", "0-2", "3-1", "a-b", "1-2-3"):
        with pytest.raises(IppEncodeError):
            parse_page_ranges(bad)
    with pytest.raises(IppEncodeError, match="copies"):
        job_attribute("copies", "two")


@pytest.mark.parametrize(
    "attribute",
    [
        IppAttribute.integer("copies", 2**31),
        IppAttribute.integer("copies", True),
        IppAttribute.keyword("kw", 3),  # type: ignore[arg-type]
        IppAttribute.text("long", "x" * 40_000),
        IppAttribute.range("pr", 3),  # type: ignore[arg-type]
        IppAttribute.collection("col", "not a collection"),  # type: ignore[arg-type]
        IppAttribute("bad-tag", 0x03, ["x"]),
    ],
    ids=lambda a: a.name,
)
def test_encode_rejects_bad_values_with_ipp_error(attribute: IppAttribute) -> None:
    with pytest.raises(IppEncodeError) as info:
        encode_request(Operation.PRINT_JOB, 1, [], [attribute])
    assert isinstance(info.value, IPPError)
    assert attribute.name in str(info.value) or "tag" in str(info.value)


# -- hostile input -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_every_truncation_raises_ipp_error(path: Path) -> None:
    data = path.read_bytes()
    step = 1 if len(data) < 2000 else 3  # every cut of the small answers, a third of the big one
    for length in [*range(0, len(data), step), len(data) - 1]:
        with pytest.raises(IppDecodeError):
            decode_message(data[:length])


def test_truncated_message_says_so() -> None:
    with pytest.raises(IPPError, match="truncated"):
        decode_message(b"\x01\x01\x00")
    with pytest.raises(IPPError, match="truncated"):
        decode_message(load("get-job-attributes")[:100])


def test_random_corruption_never_raises_anything_but_ipp_error() -> None:
    rng = random.Random(8010)
    data = bytearray(load("get-printer-attributes"))
    for _ in range(1500):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(8, len(mutated))] = rng.randrange(256)
        try:
            decode_message(bytes(mutated))
        except IppDecodeError:
            pass
    for _ in range(500):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        try:
            decode_message(junk)
        except IppDecodeError:
            pass


def _field(tag: int, name: bytes, value: bytes) -> bytes:
    return (
        bytes([tag]) + struct.pack(">H", len(name)) + name + struct.pack(">H", len(value)) + value
    )


HEADER = bytes([1, 1, 0, 0, 0, 0, 0, 1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_field(Tag.INTEGER, b"x", b"\x00\x01"), "before any group"),
        (b"\x01" + _field(Tag.INTEGER, b"", b"\x00\x00\x00\x01") + b"\x03", "additional value"),
        (b"\x01" + _field(Tag.INTEGER, b"copies", b"\x00\x01") + b"\x03", "needs 4"),
        (b"\x01" + _field(Tag.BOOLEAN, b"b", b"") + b"\x03", "needs 1"),
        (b"\x01" + _field(Tag.RANGE_OF_INTEGER, b"r", b"\x00" * 7) + b"\x03", "needs 8"),
        (b"\x01" + _field(Tag.END_COLLECTION, b"", b"") + b"\x03", "outside a collection"),
        (b"\x01" + _field(Tag.MEMBER_ATTR_NAME, b"", b"m") + b"\x03", "outside a collection"),
        (b"\x01" + _field(Tag.BEGIN_COLLECTION, b"c", b"") + b"\x03", "not closed"),
        (
            b"\x01"
            + _field(Tag.BEGIN_COLLECTION, b"c", b"")
            + _field(Tag.INTEGER, b"", b"\x00\x00\x00\x01")
            + _field(Tag.END_COLLECTION, b"", b"")
            + b"\x03",
            "before the first memberAttrName",
        ),
        (
            b"\x01"
            + _field(Tag.BEGIN_COLLECTION, b"c", b"")
            + (_field(Tag.MEMBER_ATTR_NAME, b"", b"m") + _field(Tag.BEGIN_COLLECTION, b"", b""))
            * 40,
            "nested deeper",
        ),
        (b"\x01" + _field(Tag.TEXT_WITH_LANGUAGE, b"t", b"\x00\x05en") + b"\x03", "truncated"),
        (b"\x01" + _field(Tag.DATE_TIME, b"d", b"\x07\xe8" + b"\x00" * 9) + b"\x03", "dateTime"),
        (b"\x01" + _field(Tag.EXTENSION, b"e", b"\x00") + b"\x03", "extension"),
        (b"\x01" + b"\x44\xff\xff", "truncated"),
    ],
)
def test_malformed_messages(body: bytes, message: str) -> None:
    with pytest.raises(IppDecodeError, match=message):
        decode_message(HEADER + body)


def test_data_after_end_tag_is_kept() -> None:
    data = encode_request(Operation.PRINT_JOB, 1, []) + b"%PDF-1.7 document"
    assert decode_message(data).data == b"%PDF-1.7 document"


def test_status_names() -> None:
    assert status_name(0x0000) == "successful-ok"
    assert status_name(0x040A) == "client-error-document-format-not-supported"
    assert status_name(0x0507) == "server-error-busy"
    assert status_name(0x04FF) == "client-error-0x04ff"


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("ipp://127.0.0.1/ipp/print", "http://127.0.0.1:631/ipp/print"),
        ("ipps://localhost:8631/ipp/print", "https://localhost:8631/ipp/print"),
        ("IPP://[::1]:631/printers/q", "http://[::1]:631/printers/q"),
        ("ipp://127.0.0.1", "http://127.0.0.1:631/"),
        ("http://127.0.0.1:8000/ipp", "http://127.0.0.1:8000/ipp"),
    ],
)
def test_http_url(uri: str, url: str) -> None:
    assert http_url(uri) == url


@pytest.mark.parametrize("uri", ["lpd://127.0.0.1/q", "ipp:///nohost", "socket://127.0.0.1:9100"])
def test_http_url_rejects_other_schemes(uri: str) -> None:
    with pytest.raises(IPPError):
        http_url(uri)

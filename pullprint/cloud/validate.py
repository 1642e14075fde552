"""Checking request bodies and parameters: each failure is an InvalidRequest (422) whose message
names the field and the limit. Pure functions; nothing here touches the database.

Values a caller sent are not echoed back (a PIN never is); messages say what is allowed.
"""

from __future__ import annotations

import base64
import math
import re
import uuid as uuidlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pullprint.cloud.ledger import MAX_PRICE, PRICE_DECIMALS
from pullprint.errors import InvalidRequest
from pullprint.identity.cards import CardError, card_key
from pullprint.model import (
    MAX_JOBS_PAGE,
    Discovered,
    JobState,
    JobSubmission,
    PlanStep,
    Printer,
)

MAX_JSON_BODY = 256 * 1024
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024 * 1024
MAX_OPTIONS = 100
MAX_OPTION_KEY = 128
MAX_OPTION_VALUE = 1024
MAX_NAME = 64
MAX_TITLE = 1024
MAX_REASON = 1024
MAX_INT32 = 2**31 - 1

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PIN = re.compile(r"[0-9]{4,8}")
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(422, message)


@dataclass(frozen=True)
class ReleaseRequest:
    user: str
    pin: str
    printer: str
    options: dict[str, str]
    account: str | None = None  # the owner's choice of shared account; None: as delegated


# Release changes (the options a user may change at the printer), each with what it may be.
RELEASE_COPIES_MAX = 999
RELEASE_SIDES = ("one-sided", "two-sided-long-edge", "two-sided-short-edge")
RELEASE_COLOR_MODES = ("monochrome", "color", "auto")
RELEASE_NUMBER_UP = ("1", "2", "4", "6", "9", "16")
RELEASE_MEDIA_SOURCES = (
    "auto", "main", "alternate", "manual", "by-pass-tray", "large-capacity", "envelope",
    *(f"tray-{i}" for i in range(1, 21)),
)  # fmt: skip
_MEDIA = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
RELEASE_OPTION_NAMES = (
    "copies", "sides", "print-color-mode", "number-up", "media-source", "media",
)  # fmt: skip


@dataclass(frozen=True)
class CancelRequest:
    user: str | None
    reason: str


@dataclass(frozen=True)
class ProgressRequest:
    state: JobState
    impressions: int | None
    sheets: int | None
    reason: str


def body_object(data: Any) -> dict[str, Any]:
    """The parsed JSON body as an object, else 422."""
    if not isinstance(data, dict):
        raise _bad("the request body must be a JSON object")
    return data


def text(
    data: dict[str, Any],
    key: str,
    *,
    max_len: int,
    min_len: int = 1,
    default: str | None = None,
    printable: bool = True,
) -> str:
    """A string field of ``data`` with ``min_len`` to ``max_len`` characters."""
    if key not in data or data[key] is None:
        if default is not None:
            return default
        raise _bad(f"{key} is required")
    value = data[key]
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    if not min_len <= len(value) <= max_len:
        raise _bad(f"{key} must be {min_len} to {max_len} characters long")
    if printable and not value.isprintable():
        raise _bad(f"{key} must contain only printable characters")
    return value


def integer(
    data: dict[str, Any],
    key: str,
    *,
    minimum: int = 0,
    maximum: int = MAX_INT32,
    default: int | None = None,
) -> int:
    """An integer field (not a bool, not a float) within ``minimum``..``maximum``."""
    if key not in data or data[key] is None:
        if default is not None:
            return default
        raise _bad(f"{key} is required")
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{key} must be an integer")
    if not minimum <= value <= maximum:
        raise _bad(f"{key} must be between {minimum} and {maximum}")
    return value


def optional_integer(data: dict[str, Any], key: str, *, maximum: int = MAX_INT32) -> int | None:
    """An integer field that may be absent or null."""
    if data.get(key) is None:
        return None
    return integer(data, key, maximum=maximum)


def name(value: Any, key: str = "user") -> str:
    """A user or node name: 1-64 printable characters, no '/'."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_NAME
        or not value.isprintable()
        or "/" in value
    ):
        raise _bad(f"{key} must be 1 to {MAX_NAME} printable characters without '/'")
    return value


def pin(value: Any) -> str:
    """A PIN: 4 to 8 ASCII digits."""
    if not isinstance(value, str) or not _PIN.fullmatch(value):
        raise _bad("pin must be 4 to 8 digits")
    return value


MIN_PASSWORD = 8
MAX_PASSWORD = 256


def password(value: Any, key: str = "password") -> str:
    """A password: 8 to 256 characters (any, spaces included)."""
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise _bad(f"{key} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return value


def card(value: Any, key: str = "card") -> str:
    """A card number as a reader typed it, turned into its canonical key
    (:func:`pullprint.identity.cards.card_key`)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 100:
        raise _bad(f"{key} must be a card number of 1 to 100 characters (hex or decimal)")
    try:
        return card_key(value)
    except CardError as exc:
        raise _bad(f"{key}: {exc}") from exc


MAX_DISCOVERED = 500
_DISCOVERED_URI = re.compile(r"ipps?://\S+")


def discovered(data: Any) -> list[Discovered]:
    """A node's DNS-SD report: ``printers``, each with a name and an ipp:// or ipps:// URI."""
    obj = body_object(data)
    found = obj.get("printers")
    if not isinstance(found, list) or len(found) > MAX_DISCOVERED:
        raise _bad(f"printers must be a list of at most {MAX_DISCOVERED} printers")
    out = []
    for index, item in enumerate(found):
        entry = body_object(item)
        uri = text(entry, "uri", max_len=1024)
        if not _DISCOVERED_URI.fullmatch(uri):
            raise _bad(f"printers[{index}].uri must be an ipp:// or ipps:// URI")
        out.append(
            Discovered(
                name=text(entry, "name", max_len=255),
                uri=uri,
                make_and_model=text(entry, "make_and_model", max_len=255, min_len=0, default=""),
                location=text(entry, "location", max_len=255, min_len=0, default=""),
            )
        )
    return out


MAX_PLAN_STEPS = 64
PLAN_WHERE = ("printer", "pdf", "pjl", "document", "skipped")


def plan_steps(data: Any) -> tuple[PlanStep, ...]:
    """A finishing plan body: ``steps``, each with option, value, where and how."""
    obj = body_object(data)
    steps = obj.get("steps")
    if not isinstance(steps, list) or len(steps) > MAX_PLAN_STEPS:
        raise _bad(f"steps must be a list of at most {MAX_PLAN_STEPS} steps")
    out = []
    for index, step in enumerate(steps):
        item = body_object(step)
        key = f"steps[{index}]"
        where = choice(item.get("where"), f"{key}.where", PLAN_WHERE)
        out.append(
            PlanStep(
                option=text(item, "option", max_len=MAX_OPTION_KEY),
                value=text(item, "value", max_len=MAX_OPTION_VALUE, min_len=0),
                where=where,
                how=text(item, "how", max_len=MAX_REASON, min_len=0),
            )
        )
    return tuple(out)


def job_uuid(value: Any, key: str = "uuid") -> str:
    """A UUID in its canonical lowercase form (e.g. 123e4567-e89b-12d3-a456-426614174000)."""
    if isinstance(value, str) and len(value) == 36:
        try:
            if str(uuidlib.UUID(value)) == value:
                return value
        except ValueError:
            pass
    raise _bad(f"{key} must be a lowercase UUID like 123e4567-e89b-12d3-a456-426614174000")


def options(value: Any, key: str = "options") -> dict[str, str]:
    """A table of at most 100 string options (keys 1-128, values 0-1024 characters)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{key} must be a JSON object of strings")
    if len(value) > MAX_OPTIONS:
        raise _bad(f"{key} may hold at most {MAX_OPTIONS} options")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not 1 <= len(k) <= MAX_OPTION_KEY or not k.isprintable():
            raise _bad(f"{key}: each name must be 1 to {MAX_OPTION_KEY} printable characters")
        if not isinstance(v, str) or len(v) > MAX_OPTION_VALUE or not v.isprintable():
            raise _bad(
                f"{key}: the value of {k} must be a string of at most {MAX_OPTION_VALUE} "
                "printable characters"
            )
        out[k] = v
    return out


def submission(data: Any) -> JobSubmission:
    """A JobSubmission from a registration body."""
    obj = body_object(data)
    sha256 = text(obj, "sha256", min_len=64, max_len=64)
    if not _SHA256.fullmatch(sha256):
        raise _bad("sha256 must be 64 lowercase hexadecimal digits")
    document_format = text(obj, "document_format", max_len=127, default="application/pdf")
    if not _MIME.fullmatch(document_format):
        raise _bad("document_format must be a MIME type like application/pdf")
    return JobSubmission(
        uuid=job_uuid(obj.get("uuid")),
        owner=name(obj.get("owner"), "owner"),
        title=text(obj, "title", min_len=0, max_len=MAX_TITLE, default=""),
        copies=integer(obj, "copies", minimum=1, maximum=9999),
        options=options(obj.get("options")),
        pages=integer(obj, "pages", maximum=1_000_000),
        size=integer(obj, "size", maximum=MAX_DOCUMENT_BYTES),
        sha256=sha256,
        queue=text(obj, "queue", max_len=127),
        origin=name(obj.get("origin"), "origin"),
        cups_job_id=integer(obj, "cups_job_id"),
        cups_job_uuid=text(obj, "cups_job_uuid", min_len=0, max_len=128, default=""),
        document_format=document_format,
    )


def price(value: Any) -> Decimal:
    """A per-page price: a decimal string (or integer), 0 to 1000000, at most 6 decimals."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad('price_per_page must be a decimal string like "0.05" (never a float)')
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise _bad('price_per_page must be a decimal string like "0.05"') from exc
    if not result.is_finite() or not Decimal(0) <= result <= MAX_PRICE:
        raise _bad(f"price_per_page must be between 0 and {MAX_PRICE}")
    exponent = result.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PRICE_DECIMALS:
        raise _bad(f"price_per_page may have at most {PRICE_DECIMALS} decimal places")
    return result


def printer(data: Any) -> Printer:
    """A Printer from a body."""
    obj = body_object(data)
    printer_name = name(obj.get("name"), "name")
    uri = text(obj, "uri", max_len=1024)
    if not _URI.fullmatch(uri):
        raise _bad("uri must be an absolute URI like ipp://printer.local/ipp/print")
    return Printer(
        name=printer_name,
        uri=uri,
        node=name(obj.get("node"), "node"),
        price_per_page=price(obj.get("price_per_page", "0")),
        location=text(obj, "location", min_len=0, max_len=255, default=""),
    )


def release_options(value: Any, key: str = "options") -> dict[str, str]:
    """Release changes, strictly: copies 1-999, sides, print-color-mode, number-up,
    media-source (the tray) and media (a PWG media name like iso_a4_210x297mm or a4).
    Anything else is a 422 naming the option and what it may be."""
    found = options(value, key)
    out: dict[str, str] = {}
    for k, v in found.items():
        if k == "copies":
            if not v.isdigit() or len(v) > 3 or not 1 <= int(v) <= RELEASE_COPIES_MAX:
                raise _bad(f"{key}: copies must be a whole number from 1 to {RELEASE_COPIES_MAX}")
            out[k] = str(int(v))
            continue
        allowed: tuple[str, ...] | None = {
            "sides": RELEASE_SIDES,
            "print-color-mode": RELEASE_COLOR_MODES,
            "number-up": RELEASE_NUMBER_UP,
            "media-source": RELEASE_MEDIA_SOURCES,
        }.get(k)
        if allowed is not None:
            if v not in allowed:
                raise _bad(f"{key}: {k} must be one of {', '.join(allowed)}")
        elif k == "media":
            if not _MEDIA.fullmatch(v):
                raise _bad(
                    f"{key}: media must be a PWG media name (lowercase letters, digits, "
                    "'_', '.', '-'; at most 64 characters) like iso_a4_210x297mm"
                )
        else:
            raise _bad(
                f"{key}: {k} cannot be changed at release; allowed: "
                f"{', '.join(RELEASE_OPTION_NAMES)}"
            )
        out[k] = v
    return out


def account(value: Any, key: str = "account") -> str:
    """An account name: empty (the owner's personal account) or a shared account's name."""
    if value == "":
        return ""
    return name(value, key)


def release(data: Any, signed_in: str = "") -> ReleaseRequest:
    """A release body: user, pin, printer, options (release changes) and optionally account.
    ``signed_in``: the caller's session vouches for that user, so no user or PIN is read."""
    obj = body_object(data)
    raw_options = obj.get("options")
    chosen = obj.get("account")
    if isinstance(raw_options, dict) and "account" in raw_options:
        # The accounting choice may come as an option too; it is not a printer option.
        raw_options = {k: v for k, v in raw_options.items() if k != "account"}
        if chosen is None:
            chosen = obj["options"]["account"]
    return ReleaseRequest(
        user=signed_in or name(obj.get("user")),
        pin="" if signed_in else pin(obj.get("pin")),
        printer=name(obj.get("printer"), "printer"),
        options=release_options(raw_options),
        account=None if chosen is None else account(chosen),
    )


def names(value: Any, key: str, maximum: int = 1000) -> list[str]:
    """A list of at most ``maximum`` user names."""
    if not isinstance(value, list):
        raise _bad(f"{key} must be a list of names")
    if len(value) > maximum:
        raise _bad(f"{key} may hold at most {maximum} names")
    return [name(v, key) for v in value]


def choice(value: Any, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    """One of ``allowed``."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise _bad(f"{key} must be one of {', '.join(allowed)}")
    return value


def cancel(data: Any) -> CancelRequest:
    """A cancel body: user (or null) and a reason."""
    obj = body_object(data)
    user = obj.get("user")
    return CancelRequest(
        user=None if user is None else name(user),
        reason=text(obj, "reason", min_len=0, max_len=MAX_REASON, default=""),
    )


PROGRESS_STATES = (JobState.PRINTING, JobState.COMPLETED, JobState.CANCELED, JobState.FAILED)


def progress(data: Any) -> ProgressRequest:
    """A progress body: state (printing/completed/canceled/failed), impressions, sheets, reason."""
    obj = body_object(data)
    raw = obj.get("state")
    allowed = ", ".join(s.value for s in PROGRESS_STATES)
    if not isinstance(raw, str) or raw not in {s.value for s in PROGRESS_STATES}:
        raise _bad(f"state must be one of {allowed}")
    return ProgressRequest(
        state=JobState(raw),
        impressions=optional_integer(obj, "impressions", maximum=100_000_000),
        sheets=optional_integer(obj, "sheets", maximum=100_000_000),
        reason=text(obj, "reason", min_len=0, max_len=MAX_REASON, default=""),
    )


def job_state(value: str) -> JobState:
    """A JobState from a query parameter."""
    try:
        return JobState(value)
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise _bad(f"state must be one of {allowed}") from None


def query_int(value: str | None, key: str, default: int) -> int:
    """A non-negative integer query parameter."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise _bad(f"{key} must be a non-negative integer")
    return int(value)


DEFAULT_PAGE = 500  # jobs in one page of a listing when ``limit`` is not given


def page_limit(value: str | None) -> int:
    """How many jobs one page of a listing holds: ``limit``, 1 to MAX_JOBS_PAGE."""
    try:
        limit = query_int(value, "limit", DEFAULT_PAGE)
    except InvalidRequest:
        limit = 0
    if not 1 <= limit <= MAX_JOBS_PAGE:
        raise _bad(f"limit must be an integer from 1 to {MAX_JOBS_PAGE}")
    return limit


@dataclass(frozen=True)
class Cursor:
    """Where the next page of a listing (newest first) starts: after the job created at
    ``created_at`` with ``uuid`` (jobs created at the same time are in uuid order). Sent as the
    listing's opaque ``next``, taken back as ``after``."""

    created_at: float
    uuid: str

    def encode(self) -> str:
        raw = f"{self.created_at!r} {self.uuid}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        """The cursor a listing sent as ``next``, or None when ``value`` is empty."""
        if value is None or value == "":
            return None
        bad = _bad("after must be the next of an earlier page of this listing")
        if len(value) > 128:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
            at, uuid = raw.split(" ")
            cursor = cls(float(at), job_uuid(uuid))
        except (ValueError, InvalidRequest):  # binascii.Error and UnicodeDecodeError are ones
            raise bad from None
        if not math.isfinite(cursor.created_at):
            raise bad
        return cursor


def query_seconds(value: str | None, key: str, default: float, maximum: float) -> float:
    """A number of seconds from a query parameter, 0 to ``maximum`` (larger values are clamped)."""
    if value is None or value == "":
        return min(default, maximum)
    try:
        seconds = float(value)
    except ValueError:
        raise _bad(f"{key} must be a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise _bad(f"{key} must be a non-negative number of seconds")
    return min(seconds, maximum)

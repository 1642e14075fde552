"""What a printer can do, as the finishing plan needs it: built from Get-Printer-Attributes.

``PrinterCapabilities`` is a frozen, typed view of the ``*-supported`` attributes a printer lists.
:func:`capabilities_from_ipp` builds it from a decoded answer (real answers of ippeveprinter are the
test fixtures); :func:`raw_capabilities` describes a printer reached by LPR or raw port 9100, which
answers no IPP (an administrator says what it takes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pullprint.filters.ippattrs import (
    PRINTER_GROUP,
    IppCollection,
    IppRange,
    IppResolution,
    IppValue,
    decode_message,
)

PDF = "application/pdf"
POSTSCRIPT = "application/postscript"
PWG_RASTER = "image/pwg-raster"


@dataclass(frozen=True)
class PrinterCapabilities:
    """The ``*-supported`` values of one printer (empty tuples: the printer lists nothing)."""

    name: str = ""
    document_format_supported: tuple[str, ...] = (PDF,)
    print_color_mode_supported: tuple[str, ...] = ()
    color_supported: bool = False
    sides_supported: tuple[str, ...] = ()
    copies_max: int = 1
    multiple_document_handling_supported: tuple[str, ...] = ()
    media_supported: tuple[str, ...] = ()
    media_default: str = ""
    media_source_supported: tuple[str, ...] = ()
    number_up_supported: tuple[int, ...] = ()
    page_ranges_supported: bool = False
    orientation_requested_supported: tuple[int, ...] = ()
    finishings_supported: tuple[int, ...] = ()
    print_scaling_supported: tuple[str, ...] = ()
    pwg_raster_resolutions: tuple[int, ...] = ()  # dpi, x == y only
    pwg_raster_types: tuple[str, ...] = ()
    pjl: bool = False  # the printer takes a PJL header (raw 9100 / LPR printers)

    def supports(self, attribute: str, value: str | int) -> bool:
        """True when ``value`` is listed in the printer's ``<attribute>-supported``."""
        listed: dict[str, tuple[Any, ...]] = {
            "print-color-mode": self.print_color_mode_supported,
            "sides": self.sides_supported,
            "media": self.media_supported,
            "media-source": self.media_source_supported,
            "multiple-document-handling": self.multiple_document_handling_supported,
            "number-up": self.number_up_supported,
            "orientation-requested": self.orientation_requested_supported,
            "document-format": self.document_format_supported,
            "print-scaling": self.print_scaling_supported,
        }
        if attribute == "copies":
            return isinstance(value, int) and 1 <= value <= self.copies_max
        return value in listed.get(attribute, ())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrinterCapabilities:
        kwargs: dict[str, Any] = {}
        for name, spec in cls.__dataclass_fields__.items():
            if name in data:
                value = data[name]
                kwargs[name] = tuple(value) if "tuple" in str(spec.type) else value
        return cls(**kwargs)


def _strings(values: Iterable[IppValue]) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str))


def _ints(values: Iterable[IppValue]) -> tuple[int, ...]:
    return tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool))


def _int_set(values: Iterable[IppValue]) -> tuple[int, ...]:
    """Integers of a 1setOf (integer | rangeOfInteger), ranges expanded (bounded to 100)."""
    out: list[int] = []
    for v in values:
        if isinstance(v, IppRange):
            out.extend(range(v.lower, min(v.upper, v.lower + 100) + 1))
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
    return tuple(sorted(set(out)))


def _media_from_col(values: Iterable[IppValue]) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, dict):
            col: IppCollection = v
            for name in _strings(col.get("media-size-name", [])):
                out.append(name)
    return out


def capabilities_from_ipp(
    attrs: Mapping[str, list[IppValue]], name: str = ""
) -> PrinterCapabilities:
    """Build the capabilities from printer attributes (name -> list of values). Pure."""

    def get(key: str) -> list[IppValue]:
        return list(attrs.get(key, []))

    copies = [v for v in get("copies-supported") if isinstance(v, IppRange)]
    copies_max = copies[0].upper if copies else max(_ints(get("copies-supported")) or (1,))
    media = list(_strings(get("media-supported")))
    for extra in _media_from_col(get("media-col-database")):
        if extra not in media:
            media.append(extra)
    media_default = next(iter(_strings(get("media-default"))), "")
    resolutions = tuple(
        v.x
        for v in get("pwg-raster-document-resolution-supported")
        if isinstance(v, IppResolution) and v.x == v.y and v.units == 3
    )
    color_modes = _strings(get("print-color-mode-supported"))
    color_supported = any(v is True for v in get("color-supported")) or "color" in color_modes
    page_ranges = any(v is True for v in get("page-ranges-supported"))
    return PrinterCapabilities(
        name=name or next(iter(_strings(get("printer-name"))), ""),
        document_format_supported=_strings(get("document-format-supported")),
        print_color_mode_supported=color_modes,
        color_supported=color_supported,
        sides_supported=_strings(get("sides-supported")),
        copies_max=max(1, copies_max),
        multiple_document_handling_supported=_strings(get("multiple-document-handling-supported")),
        media_supported=tuple(media),
        media_default=media_default,
        media_source_supported=_strings(get("media-source-supported")),
        number_up_supported=_int_set(get("number-up-supported")),
        page_ranges_supported=page_ranges,
        orientation_requested_supported=_ints(get("orientation-requested-supported")),
        finishings_supported=_ints(get("finishings-supported")),
        print_scaling_supported=_strings(get("print-scaling-supported")),
        pwg_raster_resolutions=resolutions,
        pwg_raster_types=_strings(get("pwg-raster-document-type-supported")),
    )


def capabilities_from_response(data: bytes, name: str = "") -> PrinterCapabilities:
    """Decode a raw Get-Printer-Attributes answer and build the capabilities. Pure."""
    return capabilities_from_ipp(decode_message(data).group(PRINTER_GROUP), name=name)


@dataclass(frozen=True)
class RawPrinterSpec:
    """What an administrator says about a raw (9100) or LPR printer: it answers no IPP."""

    document_formats: tuple[str, ...] = (PDF,)
    color: bool = True
    duplex: bool = False
    pjl: bool = True
    media: tuple[str, ...] = field(default=("iso_a4_210x297mm", "na_letter_8.5x11in"))


def raw_capabilities(spec: RawPrinterSpec, name: str = "") -> PrinterCapabilities:
    """Capabilities of a printer without IPP (only PJL can carry options to it). Pure."""
    return PrinterCapabilities(
        name=name,
        document_format_supported=spec.document_formats,
        print_color_mode_supported=("color", "monochrome") if spec.color else ("monochrome",),
        color_supported=spec.color,
        sides_supported=(
            ("one-sided", "two-sided-long-edge", "two-sided-short-edge")
            if spec.duplex
            else ("one-sided",)
        ),
        copies_max=999 if spec.pjl else 1,
        media_supported=spec.media,
        media_default=spec.media[0] if spec.media else "",
        pjl=spec.pjl,
    )

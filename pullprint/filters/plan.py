"""The finishing plan: for each option of a job, the ONE place that carries it out.

For a job released to a printer, every option goes to exactly one of:
- ``printer``: an IPP job attribute, only when the printer lists the value in its ``*-supported``;
- ``pdf``: the document is rewritten (pdftopdf for layout and copies, ghostscript for greyscale);
- ``pjl``: a PJL header (raw port 9100 and LPR printers that speak PJL);
- ``document``: already in the document (layout applied by pullprint-finish at submission);
- ``skipped``: nobody can do it (duplex on a one-sided printer: never faked in the PDF).

Copies are never both in the PDF and in the ticket; duplex is never faked; greyscale goes to the
printer when it lists ``print-color-mode=monochrome``, else ghostscript. Layout (number-up,
page-ranges, orientation, fit-to-page, booklet) is always done in the PDF, so that the printed
layout is the one counted and the one the user saw. ``page-ranges`` counts document pages BEFORE
number-up (see :mod:`pullprint.filters.options`).

The plan is plain data: :meth:`FinishingPlan.to_json` is stored with the job and
:meth:`FinishingPlan.summary` is shown to the user. :func:`make_plan` is pure.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pullprint.errors import PullprintError
from pullprint.filters.capabilities import PDF, POSTSCRIPT, PWG_RASTER, PrinterCapabilities
from pullprint.filters.options import (
    COLLATED,
    MEDIA,
    UNCOLLATED,
    FinishingOptions,
)
from pullprint.filters.pjl import PjlJob

Transport = Literal["ipp", "lpr", "socket"]
TRANSPORTS = ("ipp", "lpr", "socket")
PLAN_VERSION = 1
_ALTERNATE_MEDIA = {
    "iso_a4_210x297mm": "na_letter_8.5x11in",
    "na_letter_8.5x11in": "iso_a4_210x297mm",
}


class PlanError(PullprintError):
    """No plan can print this job on this printer (the message says why)."""


class Where(enum.StrEnum):
    PRINTER = "printer"
    PDF = "pdf"
    PJL = "pjl"
    DOCUMENT = "document"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Step:
    """One option and the one place that carries it out."""

    option: str
    value: str
    where: Where
    how: str
    ipp_name: str | None = None  # for Where.PRINTER: the job attribute to send (None: default)
    ipp_value: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "value": self.value,
            "where": self.where.value,
            "how": self.how,
            "ipp_name": self.ipp_name,
            "ipp_value": self.ipp_value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            option=str(data["option"]),
            value=str(data["value"]),
            where=Where(data["where"]),
            how=str(data["how"]),
            ipp_name=data.get("ipp_name"),
            ipp_value=data.get("ipp_value"),
        )


@dataclass(frozen=True)
class PdfWork:
    """What the engine does to the document (derived from the plan's ``pdf`` steps)."""

    layout: FinishingOptions = field(default_factory=FinishingOptions)  # only layout fields used
    copies: int = 1  # copies made inside the document
    collate: bool = True
    pad_for_duplex: bool = False  # blank back page between copies when the printer duplexes
    greyscale: bool = False
    media: str | None = None  # scale to this PWG media (pdftopdf fit-to-page)
    output_format: str = PDF
    raster_dpi: int = 300  # for PWG raster output
    raster_grey: bool = False  # the printer takes grey raster only

    def to_json(self) -> dict[str, Any]:
        return {
            "raster_dpi": self.raster_dpi,
            "raster_grey": self.raster_grey,
            "layout": self.layout.to_json(),
            "copies": self.copies,
            "collate": self.collate,
            "pad_for_duplex": self.pad_for_duplex,
            "greyscale": self.greyscale,
            "media": self.media,
            "output_format": self.output_format,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PdfWork:
        return cls(
            layout=FinishingOptions.from_json(data["layout"]),
            copies=int(data["copies"]),
            collate=bool(data["collate"]),
            pad_for_duplex=bool(data["pad_for_duplex"]),
            greyscale=bool(data["greyscale"]),
            media=data.get("media"),
            output_format=str(data["output_format"]),
            raster_dpi=int(data.get("raster_dpi", 300)),
            raster_grey=bool(data.get("raster_grey", False)),
        )


@dataclass(frozen=True)
class FinishingPlan:
    """One job on one printer: the steps, the work on the PDF, the ticket and the PJL header."""

    transport: Transport
    printer: str
    options: FinishingOptions  # the effective options (job options + release options)
    steps: tuple[Step, ...]
    work: PdfWork
    two_sided: bool  # the sheets will really be printed on both sides
    pjl: PjlJob | None = None
    version: int = PLAN_VERSION

    @property
    def document_format(self) -> str:
        return self.work.output_format

    def step(self, option: str) -> Step | None:
        return next((s for s in self.steps if s.option == option), None)

    def ipp_attributes(self) -> dict[str, str | int]:
        """The job attributes to send with the document (the ``printer`` steps only). Pure."""
        out: dict[str, str | int] = {}
        for s in self.steps:
            if s.where is Where.PRINTER and s.ipp_name and s.ipp_value is not None:
                out[s.ipp_name] = s.ipp_value
        return out

    def summary(self) -> str:
        """A human summary, one line per option, for the user and the operator. Pure."""
        lines = [f"Finishing plan for {self.printer or 'the printer'} ({self.transport}):"]
        for s in self.steps:
            lines.append(f"- {s.option} {s.value}: {s.how} [{s.where.value}]")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "transport": self.transport,
            "printer": self.printer,
            "options": self.options.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "work": self.work.to_json(),
            "two_sided": self.two_sided,
            "pjl": None if self.pjl is None else self.pjl.__dict__.copy(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FinishingPlan:
        transport = str(data["transport"])
        if transport not in TRANSPORTS:
            raise PlanError(f"unknown transport {transport!r} in a stored plan")
        pjl = data.get("pjl")
        return cls(
            transport=transport,  # type: ignore[arg-type]
            printer=str(data["printer"]),
            options=FinishingOptions.from_json(data["options"]),
            steps=tuple(Step.from_json(s) for s in data["steps"]),
            work=PdfWork.from_json(data["work"]),
            two_sided=bool(data["two_sided"]),
            pjl=None if pjl is None else PjlJob(**pjl),
            version=int(data.get("version", PLAN_VERSION)),
        )

    @classmethod
    def loads(cls, text: str) -> FinishingPlan:
        return cls.from_json(json.loads(text))


def _options(value: Mapping[str, str] | FinishingOptions) -> FinishingOptions:
    return value if isinstance(value, FinishingOptions) else FinishingOptions.from_cups(value)


def _output_format(caps: PrinterCapabilities, transport: str) -> tuple[str, Step | None]:
    formats = caps.document_format_supported
    if PDF in formats or (transport != "ipp" and not formats):
        return PDF, None
    if POSTSCRIPT in formats:
        return POSTSCRIPT, Step(
            "document-format",
            POSTSCRIPT,
            Where.PDF,
            "converted to PostScript (pdftops): the printer takes no PDF",
        )
    if PWG_RASTER in formats:
        return PWG_RASTER, Step(
            "document-format",
            PWG_RASTER,
            Where.PDF,
            "rendered to PWG raster (ghostscript): the printer takes no PDF",
        )
    raise PlanError(
        f"the printer takes none of PDF, PostScript or PWG raster (it lists {', '.join(formats)})"
    )


def make_plan(
    job_options: Mapping[str, str] | FinishingOptions,
    release_options: Mapping[str, str] | None,
    caps: PrinterCapabilities,
    transport: Transport,
    *,
    applied_at_submission: Mapping[str, str] | None = None,
    job_name: str = "pullprint",
) -> FinishingPlan:
    """Decide, for each option, who carries it out on this printer. Pure and deterministic.

    ``job_options``: the options the job was submitted with (CUPS argv[5] style, ``copies``
    included as a key, or parsed ``FinishingOptions``). ``release_options`` override them.
    ``applied_at_submission``: layout options already in the document; ``None`` means "the job
    came through pullprint-finish", so the layout options among ``job_options`` are already
    applied (pass ``{}`` for a document nothing was applied to, e.g. a web upload). A release that
    asks for a different layout than the one applied raises PlanError (never applied twice).
    Raises OptionError for bad values and PlanError when the printer cannot take the job.
    """
    if transport not in TRANSPORTS:
        raise PlanError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    job = _options(job_options)
    effective = job.updated(release_options or {})
    applied = job.layout_items() if applied_at_submission is None else dict(applied_at_submission)
    wanted_layout = effective.layout_items()
    steps: list[Step] = []
    if applied:
        if wanted_layout != applied:
            raise PlanError(
                "the layout (number-up, page-ranges, orientation, fit-to-page, booklet) was "
                "applied "
                f"when the job was submitted ({_kv(applied)}); it cannot change at release "
                f"(asked for {_kv(wanted_layout) or 'none'}): print the document again instead"
            )
        for key, value in applied.items():
            steps.append(Step(key, value, Where.DOCUMENT, "applied when the job was submitted"))
        layout = FinishingOptions()
    else:
        for key, value in wanted_layout.items():
            steps.append(Step(key, value, Where.PDF, _LAYOUT_HOW.get(key, "rewritten in the PDF")))
        layout = effective
    raw = transport != "ipp"
    pjl_ok = raw and caps.pjl

    # sides: the printer or PJL, never faked
    sides = effective.sides
    if effective.booklet and sides is None:
        sides = "two-sided-short-edge"
    two_sided = False
    if sides is not None:
        if caps.supports("sides", sides) and not raw:
            steps.append(Step("sides", sides, Where.PRINTER, "the printer", "sides", sides))
            two_sided = sides != "one-sided"
        elif caps.supports("sides", sides) and pjl_ok:
            steps.append(Step("sides", sides, Where.PJL, "PJL DUPLEX/BINDING"))
            two_sided = sides != "one-sided"
        elif sides == "one-sided":
            steps.append(Step("sides", sides, Where.SKIPPED, "the printer prints one-sided anyway"))
        else:
            steps.append(
                Step(
                    "sides",
                    sides,
                    Where.SKIPPED,
                    "the printer cannot print two-sided: printed one-sided "
                    "(duplex is never faked in the PDF)",
                )
            )

    # copies and collation: exactly one place
    copies, collate = effective.copies, effective.collate
    mdh = COLLATED if collate else UNCOLLATED
    work_copies, work_collate, pad = 1, True, False
    copies_value = f"{copies} {'collated' if collate else 'uncollated'}" if copies > 1 else "1"
    if (
        not raw
        and caps.supports("copies", copies)
        and (
            copies == 1
            or not caps.multiple_document_handling_supported
            or caps.supports("multiple-document-handling", mdh)
        )
    ):
        steps.append(Step("copies", copies_value, Where.PRINTER, "the printer", "copies", copies))
        if copies > 1 and caps.supports("multiple-document-handling", mdh):
            steps.append(
                Step(
                    "collate", mdh, Where.PRINTER, "the printer", "multiple-document-handling", mdh
                )
            )
    elif pjl_ok and copies <= 999:
        steps.append(
            Step(
                "copies",
                copies_value,
                Where.PJL,
                "PJL QTY (collated)" if collate else "PJL COPIES (uncollated)",
            )
        )
    else:
        work_copies, work_collate = copies, collate
        how = "repeated in the PDF (the printer cannot make copies)"
        if two_sided and copies > 1:
            pad = True
            how += "; each copy starts on a new sheet"
            if not collate:
                work_collate = True
                how += " (collated: uncollated two-sided copies cannot share one document)"
        steps.append(Step("copies", copies_value, Where.PDF, how))

    # colour
    greyscale = False
    color = effective.color_mode
    if color is not None:
        if not raw and caps.supports("print-color-mode", color):
            steps.append(
                Step(
                    "print-color-mode",
                    color,
                    Where.PRINTER,
                    "the printer",
                    "print-color-mode",
                    color,
                )
            )
        elif (
            pjl_ok and color in ("color", "monochrome") and caps.supports("print-color-mode", color)
        ):
            steps.append(Step("print-color-mode", color, Where.PJL, "PJL RENDERMODE"))
        elif color == "monochrome":
            greyscale = True
            steps.append(
                Step("print-color-mode", color, Where.PDF, "converted to greyscale (ghostscript)")
            )
        else:
            reason = (
                "the printer prints in monochrome only"
                if not caps.color_supported
                else "the printer does not list this mode"
            )
            steps.append(Step("print-color-mode", color, Where.SKIPPED, reason))

    # media: the printer, PJL, or scaled between A4 and Letter in the PDF
    work_media: str | None = None
    if effective.media is not None:
        media = effective.media
        label = MEDIA[media][0]
        if caps.supports("media", media) and not raw:
            steps.append(Step("media", label, Where.PRINTER, "the printer", "media", media))
        elif caps.supports("media", media) and pjl_ok:
            steps.append(Step("media", label, Where.PJL, "PJL PAPER"))
        elif media in _ALTERNATE_MEDIA and caps.supports("media", _ALTERNATE_MEDIA[media]):
            work_media = _ALTERNATE_MEDIA[media]
            steps.append(
                Step(
                    "media",
                    label,
                    Where.PDF,
                    f"scaled to {MEDIA[work_media][0]} in the PDF: the printer has no "
                    f"{label} paper",
                )
            )
        else:
            steps.append(
                Step(
                    "media",
                    label,
                    Where.SKIPPED,
                    f"the printer lists no {label} paper: it uses its default",
                )
            )

    if effective.input_slot is not None:
        slot = effective.input_slot
        if not raw and caps.supports("media-source", slot):
            steps.append(
                Step(
                    "media-source",
                    slot,
                    Where.PRINTER,
                    "the printer (in media-col)",
                    "media-source",
                    slot,
                )
            )
        elif pjl_ok and slot in ("tray-1", "tray-2", "manual", "main"):
            steps.append(Step("media-source", slot, Where.PJL, "PJL MEDIASOURCE"))
        else:
            steps.append(Step("media-source", slot, Where.SKIPPED, "the printer chooses the tray"))

    output_format, convert = _output_format(caps, transport)
    if convert is not None:
        steps.append(convert)
    pjl: PjlJob | None = None
    if pjl_ok:
        if output_format not in (PDF, POSTSCRIPT):
            raise PlanError("a PJL printer must take PDF or PostScript")
        pjl_steps = {s.option for s in steps if s.where is Where.PJL}
        pjl = PjlJob(
            name=job_name,
            copies=copies if "copies" in pjl_steps else None,
            collate=collate,
            sides=sides if "sides" in pjl_steps else None,
            color_mode=color if "print-color-mode" in pjl_steps else None,
            media=effective.media if "media" in pjl_steps else None,
            input_slot=effective.input_slot if "media-source" in pjl_steps else None,
            document_format=output_format,
        )
    work = PdfWork(
        layout=replace(layout, copies=1),
        copies=work_copies,
        collate=work_collate,
        pad_for_duplex=pad,
        greyscale=greyscale,
        media=work_media,
        output_format=output_format,
        raster_dpi=300
        if 300 in caps.pwg_raster_resolutions or not caps.pwg_raster_resolutions
        else min(caps.pwg_raster_resolutions),
        raster_grey=bool(caps.pwg_raster_types) and "srgb_8" not in caps.pwg_raster_types,
    )
    return FinishingPlan(
        transport=transport,
        printer=caps.name,
        options=effective,
        steps=tuple(steps),
        work=work,
        two_sided=two_sided,
        pjl=pjl,
    )


_LAYOUT_HOW = {
    "number-up": "pages imposed on each sheet in the PDF (pdftopdf)",
    "number-up-layout": "order of the imposed pages (pdftopdf)",
    "page-border": "borders around imposed pages (pdftopdf)",
    "page-ranges": "pages selected in the PDF, counted before number-up",
    "orientation-requested": "pages rotated in the PDF (pdftopdf)",
    "fit-to-page": "pages scaled to the paper in the PDF (pdftopdf)",
    "booklet": "pages reordered and imposed as a booklet in the PDF (pdftopdf)",
}


def _kv(items: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in items.items())

"""The pages a person uses: sign in and out, my queue, release (options, finishing plan, cost
estimate, printer by list or QR code), cancel, history, account (PIN, cards, delegates).

Handlers are thin: they read the signed-in person (``layout.require_person``), check forms
(CSRF), and call the same ``JobBook``/``UserDirectory``/``Delegations`` methods as the API, in a
worker thread. Refusals (``pullprint.errors``) are shown on the page, never as JSON.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import segno
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from pullprint.cloud import ledger, validate
from pullprint.cloud.accounting import reports, usage
from pullprint.cloud.accounting.pricing import JobAttributes, cost_minor, expected_counts
from pullprint.cloud.auth import Principal
from pullprint.cloud.context import Cloud, cloud_of
from pullprint.cloud.db import jobs as jobs_table
from pullprint.cloud.groups import DelegateKind, Delegation
from pullprint.cloud.lockout import guarded
from pullprint.cloud.validate import CancelRequest, ReleaseRequest
from pullprint.cloud.web import layout
from pullprint.cloud.web.layout import check_form, redirect, render, require_person
from pullprint.cloud.web.thumbnails import Thumbnails
from pullprint.errors import (
    CloudRefused,
    DocumentError,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from pullprint.filters.capabilities import PrinterCapabilities
from pullprint.filters.options import (
    COLLATED,
    COLOR_MODES,
    MEDIA,
    NUMBER_UP,
    SIDES,
    UNCOLLATED,
    FinishingOptions,
    OptionError,
)
from pullprint.filters.plan import PlanError, Where, make_plan
from pullprint.model import Job, JobState, Printer, StorageKind

log = logging.getLogger(__name__)

router = APIRouter(route_class=layout.WebRoute)

_RELEASABLE = (JobState.HELD, JobState.FAILED)
_ACTIVE = (JobState.RELEASED, JobState.CLAIMED, JobState.PRINTING)
# The most jobs a page of a person's queue shows (the newest; it says how many more wait).
WAITING_SHOWN = 100
HISTORY_SHOWN = 200  # the history page shows a person's newest print-outs, at most this many

COLOR_LABELS = {"": "as printed", "color": "colour", "monochrome": "grey"}
SIDES_LABELS = {
    "": "as printed",
    "one-sided": "one-sided",
    "two-sided-long-edge": "two-sided (book)",
    "two-sided-short-edge": "two-sided (flip)",
}
WHERE_LABELS = {
    Where.PRINTER: "printer",
    Where.PDF: "PDF rewrite",
    Where.PJL: "PJL header",
    Where.DOCUMENT: "in the document",
    Where.SKIPPED: "not done",
}


# -- what the pages show ------------------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """The release changes a person picked on a form ("" / None: keep the job's own)."""

    color: str = ""
    sides: str = ""
    copies: int | None = None
    number_up: int | None = None

    def options(self) -> dict[str, str]:
        """The release options (``validate.release_options`` names)."""
        out: dict[str, str] = {}
        if self.color:
            out["print-color-mode"] = self.color
        if self.sides:
            out["sides"] = self.sides
        if self.copies is not None:
            out["copies"] = str(self.copies)
        if self.number_up is not None:
            out["number-up"] = str(self.number_up)
        return validate.release_options(out)


def choices_from(values: Mapping[str, Any]) -> Choices:
    """The choices of a form or query; InvalidRequest (422) naming a bad field."""

    def pick(key: str, allowed: tuple[str, ...]) -> str:
        value = str(values.get(key) or "")
        if value and value not in allowed:
            raise InvalidRequest(422, f"{key} must be one of {', '.join(allowed)}")
        return value

    def number(key: str, lo: int, hi: int) -> int | None:
        value = str(values.get(key) or "").strip()
        if not value:
            return None
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise InvalidRequest(422, f"{key} must be a whole number from {lo} to {hi}")
        return int(value)

    up = number("number_up", 1, 16)
    if up is not None and up not in NUMBER_UP:
        raise InvalidRequest(422, f"number_up must be one of {', '.join(map(str, NUMBER_UP))}")
    return Choices(
        color=pick("color", ("color", "monochrome")),
        sides=pick("sides", SIDES),
        copies=number("copies", 1, validate.RELEASE_COPIES_MAX),
        number_up=up,
    )


def job_options(job: Job) -> FinishingOptions:
    """The job's own options as printed (CUPS options and copies), parsed leniently."""
    try:
        return FinishingOptions.from_cups(job.options, copies=job.copies)
    except OptionError:
        return FinishingOptions(copies=job.copies)


def facts(job: Job) -> list[str]:
    """Short chips describing the job's options: copies, colour, sides, n-up, media."""
    opts = (
        job_options(job).updated(job.release_options) if job.release_options else job_options(job)
    )
    out = [f"{job.pages} page{'s' if job.pages != 1 else ''}"]
    if opts.copies > 1:
        out.append(f"{opts.copies} copies")
    out.append("grey" if opts.color_mode == "monochrome" else "colour")
    out.append("two-sided" if opts.sides and opts.sides != "one-sided" else "one-sided")
    if opts.number_up > 1:
        out.append(f"{opts.number_up}-up")
    if opts.media and opts.media in MEDIA:
        out.append(MEDIA[opts.media][0])
    return out


@dataclass(frozen=True)
class PlanRow:
    option: str
    value: str
    where: str
    how: str


_EVERYTHING = PrinterCapabilities(
    name="",
    print_color_mode_supported=COLOR_MODES,
    color_supported=True,
    sides_supported=SIDES,
    copies_max=999,
    multiple_document_handling_supported=(COLLATED, UNCOLLATED),
    media_supported=tuple(MEDIA),
    number_up_supported=NUMBER_UP,
    page_ranges_supported=True,
)
_NOTHING = PrinterCapabilities(name="")


def finishing_plan(job: Job, options: Mapping[str, str], printer: str) -> tuple[list[PlanRow], str]:
    """The finishing plan of ``job`` with release ``options``, as the cloud can know it: the
    printer's capabilities are known only to its node, so each option shows who does it if the
    printer supports it and what happens if it does not (``pullprint.filters.plan``). Returns
    (rows, error); error is the PlanError/OptionError text when no plan can be made."""
    try:
        best = make_plan(job_options(job), options, _EVERYTHING, "ipp")
        worst = make_plan(job_options(job), options, _NOTHING, "ipp")
    except (PlanError, OptionError) as exc:
        return [], str(exc)
    rows: list[PlanRow] = []
    for step in best.steps:
        other = worst.step(step.option)
        where = WHERE_LABELS[step.where]
        how = step.how if step.how != "the printer" else f"printer {printer}"
        if other is not None and other.where is not step.where:
            where = f"{where} if supported, else {WHERE_LABELS[other.where]}"
            how = f"{how}; if printer {printer} cannot: {other.how}"
        rows.append(PlanRow(step.option, step.value, where, how))
    return rows, ""


@dataclass(frozen=True)
class Estimate:
    amount: Decimal
    currency: str
    count: int
    unit: str
    unit_price: Decimal
    source: str


def estimate(cloud: Cloud, job: Job, printer: Printer, options: Mapping[str, str]) -> Estimate:
    """The expected cost of ``job`` on ``printer`` with release ``options``: the printer's price
    list (or its flat price per impression), counted as ``accounting.usage.reserve`` counts,
    with a release number-up dividing the pages. Changes nothing."""
    currency = cloud.config.currency
    with cloud.engine.connect() as conn:
        pricing = usage.load_pricing(conn, printer.name)
    attrs = JobAttributes.from_options(job.options, job.copies, dict(options))
    up = int(options.get("number-up", "1"))
    expected = expected_counts(job.pages, attrs, number_up=up, pages_before_layout=up > 1)
    unit, source, price = "impression", "flat price", printer.price_per_page
    if pricing.price_list is not None:
        listed = pricing.price_list.price_for(attrs)
        if listed is not None:
            unit, source, price = pricing.price_list.unit, "price list", listed
    count = expected.impressions if unit == "impression" else expected.sheets
    minor = cost_minor(count, ledger.price_to_micro(price), ledger.minor_exponent(currency))
    return Estimate(ledger.from_minor(minor, currency), currency, count, unit, price, source)


@dataclass(frozen=True)
class PrinterView:
    printer: Printer
    status: str  # ready, busy, problem
    detail: str


def printer_views(cloud: Cloud) -> list[PrinterView]:
    """Every printer with a status read from pullprint's own jobs: busy while a job is on its
    way to it, a problem when its latest job failed, else ready. Changes nothing."""
    found = cloud.printers.all()
    with cloud.engine.connect() as conn:
        active: dict[str, int] = dict(
            conn.execute(
                sa.select(jobs_table.c.printer, sa.func.count())
                .where(jobs_table.c.state.in_([s.value for s in _ACTIVE]))
                .group_by(jobs_table.c.printer)
            ).all()
        )
        ended = jobs_table.c.state.in_([JobState.COMPLETED.value, JobState.FAILED.value])
        last = (
            sa.select(jobs_table.c.printer, sa.func.max(jobs_table.c.updated_at).label("at"))
            .where(jobs_table.c.printer.is_not(None), ended)
            .group_by(jobs_table.c.printer)
            .subquery()
        )
        latest: dict[str, tuple[str, str]] = {
            name: (state, reason)
            for name, state, reason in conn.execute(
                sa.select(jobs_table.c.printer, jobs_table.c.state, jobs_table.c.state_reason)
                .join(
                    last,
                    sa.and_(
                        jobs_table.c.printer == last.c.printer,
                        jobs_table.c.updated_at == last.c.at,
                    ),
                )
                .where(ended)
            ).all()
        }
    views = []
    for p in found:
        state, reason = latest.get(p.name, ("", ""))
        if active.get(p.name):
            views.append(PrinterView(p, "busy", f"{active[p.name]} job(s) on the way"))
        elif state == "failed":
            views.append(PrinterView(p, "problem", f"last job failed: {reason}"[:120]))
        else:
            views.append(PrinterView(p, "ready", "ready"))
    return views


@dataclass(frozen=True)
class Waiting:
    """The newest of a person's jobs in some states (``jobs``, at most ``WAITING_SHOWN``) and
    how many there are in all (``total``): a page shows the first, says the second."""

    jobs: list[Job]
    total: int

    @property
    def hidden(self) -> int:
        """How many older ones the page does not show."""
        return self.total - len(self.jobs)


def waiting(
    cloud: Cloud,
    user: str,
    states: tuple[JobState, ...] = _RELEASABLE,
    most: int = WAITING_SHOWN,
) -> Waiting:
    """The jobs ``user`` may release (own and delegated) in ``states``, newest first: at most
    ``most`` of them, with their count."""
    found = [job for state in states for job in cloud.jobs.list_for(user, state, limit=most)]
    newest = sorted(found, key=lambda j: (-j.created_at, j.uuid))[:most]
    total = len(found) if len(found) < most else cloud.jobs.count_for(user, states)
    return Waiting(newest, total)


def thumbnails(request: Request) -> Thumbnails:
    """The app's thumbnail renderer (made on first use)."""
    state = request.app.state
    found = getattr(state, "web_thumbnails", None)
    if not isinstance(found, Thumbnails):
        found = Thumbnails(cloud_of(request).documents)
        state.web_thumbnails = found
    return found


def time_left(cloud: Cloud, job: Job) -> float:
    """Seconds until an unprinted job expires (``cloud.expire_seconds``)."""
    return job.created_at + cloud.config.expire_seconds - time.time()


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


# -- sign in and out ----------------------------------------------------------------------------


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    if layout.current(request) is not None:
        return redirect(request, layout.safe_next(request.query_params.get("next")))
    return render(
        request, "signin.html", next=layout.safe_next(request.query_params.get("next")), name=""
    )


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check name and password (counted towards the lockout), open a session and set it as
    the ``pullprint_session`` cookie."""
    form = await check_form(request)
    target = layout.safe_next(_text(form, "next"))
    name = _text(form, "name")
    password = form.get("password")
    cloud = cloud_of(request)
    try:
        name = validate.name(name, "name")
        if not isinstance(password, str) or not password:
            raise InvalidRequest(422, "enter your password")
        await guarded(cloud.lockout, name, lambda: cloud.users.check_password(name, password))
    except CloudRefused as exc:
        return render(
            request, "signin.html", status_code=exc.status, error=exc.message, next=target,
            name=name,
        )  # fmt: skip
    token = await run_in_threadpool(cloud.sessions.open, name, "password")
    response = redirect(request, target)
    layout.set_session_cookie(request, response, token, int(cloud.sessions.ttl))
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the browser's session (server side too) and drop the cookie."""
    await check_form(request)
    token = request.cookies.get(layout.SESSION_COOKIE, "")
    if token:
        await run_in_threadpool(cloud_of(request).sessions.close, token)
    response = redirect(request, "/signin", message="Signed out.")
    response.delete_cookie(layout.SESSION_COOKIE, path="/")
    return response


# -- my queue, release, cancel ------------------------------------------------------------------


@router.get("/")
async def queue(request: Request, me: Principal = Depends(require_person)) -> Response:
    cloud = cloud_of(request)
    held = await run_in_threadpool(waiting, cloud, me.user)
    moving = await run_in_threadpool(waiting, cloud, me.user, _ACTIVE)
    return render(
        request, "queue.html", nav="queue", held=held, moving=moving, facts=facts,
        left=lambda j: time_left(cloud, j), now=time.time(),
    )  # fmt: skip


async def _job(request: Request, me: Principal, uuid: str) -> Job:
    return await run_in_threadpool(cloud_of(request).jobs.get, me, validate.job_uuid(uuid))


@router.get("/jobs/{uuid}/thumb.png")
async def thumb(uuid: str, request: Request, me: Principal = Depends(require_person)) -> Response:
    """Page 1 of the job's stored document as a PNG (404 when it is kept on the node)."""
    job = await _job(request, me, uuid)
    if job.state.is_final:  # its document is deleted (or about to be): so is its picture
        thumbnails(request).forget(job.uuid)
        raise NotFound(404, f"the job is {job.state.value}: its document is deleted")
    if job.storage is StorageKind.NODE:
        raise NotFound(404, "the document is kept on the node: no preview")
    try:
        data = await run_in_threadpool(thumbnails(request).png, job.uuid, job.sha256)
    except FileNotFoundError as exc:
        raise NotFound(404, "the document is not stored here (yet)") from exc
    except DocumentError as exc:
        log.warning("no thumbnail for job %s: %s", job.uuid, exc)
        raise NotFound(404, f"no preview: {exc}") from exc
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


def release_context(
    request: Request, cloud: Cloud, job: Job, views: list[PrinterView], values: Mapping[str, Any]
) -> dict[str, Any]:
    """What the release form shows: choices, chosen printer, plan and estimate (for each
    printer when none is chosen yet, the estimate of the first). Changes nothing."""
    error = ""
    try:
        choices = choices_from(values)
        options = choices.options()
    except CloudRefused as exc:
        choices, options, error = Choices(), {}, exc.message
    names = [v.printer.name for v in views]
    chosen = str(values.get("printer") or "")
    if chosen not in names:
        chosen = names[0] if names else ""
    printer = next((v.printer for v in views if v.printer.name == chosen), None)
    plan, plan_error = finishing_plan(job, options, chosen or "the printer")
    costs = {v.printer.name: estimate(cloud, job, v.printer, options) for v in views}
    return {
        "job": job, "choices": choices, "options": options, "printers": views,
        "chosen": chosen, "printer": printer, "plan": plan, "plan_error": plan_error,
        "costs": costs, "cost": costs.get(chosen), "choice_error": error,
        "color_labels": COLOR_LABELS, "sides_labels": SIDES_LABELS, "number_up": NUMBER_UP,
        "where_labels": {w.value: label for w, label in WHERE_LABELS.items()},
        "facts": facts(job), "left": time_left(cloud, job), "now": time.time(),
    }  # fmt: skip


@router.get("/jobs/{uuid}")
async def job_page(
    uuid: str, request: Request, me: Principal = Depends(require_person)
) -> Response:
    """A job: preview, facts, and (held) the release form with printer, options, plan, cost."""
    cloud = cloud_of(request)
    try:
        job = await _job(request, me, uuid)
    except CloudRefused as exc:
        return render(request, "error.html", status_code=exc.status, error=exc.message)
    views = await run_in_threadpool(printer_views, cloud)
    context = await run_in_threadpool(
        release_context, request, cloud, job, views, request.query_params
    )
    return render(request, "job.html", nav="queue", **context)


def release_job(
    cloud: Cloud, me: Principal, uuid: str, printer: str, values: Mapping[str, Any]
) -> Job:
    """Release job ``uuid`` to ``printer`` for ``me`` (the session vouches: no PIN) with the
    changes chosen in ``values``, once a finishing plan can be made for them: a layout applied
    when the job was submitted cannot change, so that is refused here (422, saying why) instead
    of failing on the node."""
    job = cloud.jobs.get(me, uuid)
    options = choices_from(values).options()
    _rows, error = finishing_plan(job, options, printer)
    if error:
        raise InvalidRequest(422, error)
    req = ReleaseRequest(user=me.user, pin="", printer=printer, options=options)
    return cloud.jobs.release(uuid, req, me)


@router.post("/jobs/{uuid}/release")
async def release(uuid: str, request: Request, me: Principal = Depends(require_person)) -> Response:
    """Release the job to the chosen printer with the chosen changes (the session vouches for
    the person: no PIN)."""
    form = await check_form(request)
    cloud = cloud_of(request)
    back = f"/jobs/{uuid}"
    try:
        uuid = validate.job_uuid(uuid)
        printer = validate.name(_text(form, "printer"), "printer")
        job = await run_in_threadpool(release_job, cloud, me, uuid, printer, form)
    except CloudRefused as exc:
        return redirect(request, back, error=exc.message)
    return redirect(request, "/", message=f"Released {job.title!r} to {printer}.")


@router.post("/jobs/{uuid}/cancel")
async def cancel(uuid: str, request: Request, me: Principal = Depends(require_person)) -> Response:
    await check_form(request)
    try:
        job = await run_in_threadpool(
            cloud_of(request).jobs.cancel,
            me,
            validate.job_uuid(uuid),
            CancelRequest(user=None, reason=f"canceled by {me.user} on the web"),
        )
    except CloudRefused as exc:
        return redirect(request, "/", error=exc.message)
    return redirect(request, "/", message=f"Canceled {job.title!r}.")


# -- printers and their QR codes ----------------------------------------------------------------


@router.get("/printers")
async def printers_page(request: Request, me: Principal = Depends(require_person)) -> Response:
    views = await run_in_threadpool(printer_views, cloud_of(request))
    return render(request, "printers.html", nav="printers", printers=views)


def printer_url(request: Request, name: str) -> str:
    """The absolute URL of printer ``name``'s page, as this browser reached the service."""
    return str(request.url_for("printer_page", name=name))


@router.get("/p/{name}/qr.svg")
async def printer_qr(name: str, request: Request) -> Response:
    """The QR code (SVG) of the printer's page: print it and stick it on the printer."""
    name = validate.name(name, "printer")
    if await run_in_threadpool(cloud_of(request).printers.get, name) is None:
        raise NotFound(404, f"no printer {name}")
    qr = segno.make(printer_url(request, name), error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", xmldecl=False, scale=4, border=2, title=f"pullprint printer {name}")
    svg = out.getvalue()
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})


@router.get("/p/{name}", name="printer_page")
async def printer_page(name: str, request: Request) -> Response:
    """A printer's page (its QR code opens it): my held jobs, each released here in one tap."""
    me = require_person(request)
    cloud = cloud_of(request)
    views = await run_in_threadpool(printer_views, cloud)
    view = next((v for v in views if v.printer.name == name), None)
    if view is None:
        return render(request, "error.html", status_code=404, error=f"There is no printer {name}.")
    held = await run_in_threadpool(waiting, cloud, me.user)
    costs = {j.uuid: estimate(cloud, j, view.printer, {}) for j in held.jobs}
    return render(
        request, "printer.html", nav="printers", view=view, held=held, costs=costs, facts=facts,
        url=printer_url(request, name),
    )  # fmt: skip


# -- history --------------------------------------------------------------------------------------


@router.get("/history")
async def history(request: Request, me: Principal = Depends(require_person)) -> Response:
    """My print-outs with their transaction summaries: Pending and Canceled without cost data,
    Completed with the amount."""
    cloud = cloud_of(request)

    def load() -> tuple[list[reports.UsageRow], int]:
        with cloud.engine.connect() as conn:
            rows = reports.usage_rows(conn, reports.Filters(user=me.user), HISTORY_SHOWN)
            total = len(rows) if len(rows) < HISTORY_SHOWN else reports.count_of(conn, me.user)
            return rows, total

    rows, total = await run_in_threadpool(load)
    return render(
        request, "history.html", nav="history", rows=rows[::-1], status=reports.printout_status,
        now=time.time(), hidden=total - len(rows),
    )  # fmt: skip


@router.get("/history.csv")
async def history_csv(request: Request, me: Principal = Depends(require_person)) -> Response:
    """All my print-outs as CSV, oldest first (the columns of the admin's transactions.csv)."""
    cloud = cloud_of(request)

    def load() -> str:
        with cloud.engine.connect() as conn:
            return reports.details_csv(reports.usage_rows(conn, reports.Filters(user=me.user)))

    return layout.csv_download(await run_in_threadpool(load), "history")


# -- my account -----------------------------------------------------------------------------------


@router.get("/account")
async def account(request: Request, me: Principal = Depends(require_person)) -> Response:
    cloud = cloud_of(request)
    user = await run_in_threadpool(cloud.users.get, me.user)
    delegations = await run_in_threadpool(cloud.delegations.of, me.user)
    return render(
        request, "account.html", nav="account", user=user, delegations=delegations,
        card_registration=cloud.config.card_registration,
    )  # fmt: skip


@router.post("/account/pin")
async def set_pin(request: Request, me: Principal = Depends(require_person)) -> Response:
    form = await check_form(request)
    try:
        pin = validate.pin(_text(form, "pin"))
        if pin != _text(form, "pin2"):
            raise InvalidRequest(422, "the two PINs differ: type the same PIN twice")
        await run_in_threadpool(cloud_of(request).users.set_pin, me.user, pin)
    except CloudRefused as exc:
        return redirect(request, "/account", error=exc.message)
    return redirect(request, "/account", message="Your PIN is set.")


@router.post("/account/cards")
async def add_card(request: Request, me: Principal = Depends(require_person)) -> Response:
    """Register a card (approved at once, or pending an admin: ``cloud.card_registration``)."""
    form = await check_form(request)
    cloud = cloud_of(request)
    mode = cloud.config.card_registration
    try:
        if mode == "off":
            raise Forbidden(403, "cards are registered by an admin here")
        key = validate.card(_text(form, "card"))
        card = await run_in_threadpool(
            lambda: cloud.users.add_card(me.user, key, source="self", approved=mode == "auto")
        )
    except CloudRefused as exc:
        return redirect(request, "/account", error=exc.message)
    note = "ready to use" if card.approved else "waiting for an admin to approve it"
    return redirect(request, "/account", message=f"Card registered: {note}.")


@router.post("/account/cards/remove")
async def remove_card(request: Request, me: Principal = Depends(require_person)) -> Response:
    form = await check_form(request)
    key = _text(form, "card")
    if not await run_in_threadpool(cloud_of(request).users.remove_card, me.user, key):
        return redirect(request, "/account", error="You have no such card.")
    return redirect(request, "/account", message="Card removed.")


@router.post("/account/delegates")
async def add_delegate(request: Request, me: Principal = Depends(require_person)) -> Response:
    """Let a user or a group release my jobs."""
    form = await check_form(request)
    cloud = cloud_of(request)
    try:
        kind = DelegateKind(
            validate.choice(_text(form, "kind") or "user", "kind", ("user", "group"))
        )
        delegate = validate.name(_text(form, "delegate"), "delegate")
        if kind is DelegateKind.USER and not await run_in_threadpool(cloud.users.exists, delegate):
            raise NotFound(404, f"there is no user {delegate}")
        await run_in_threadpool(
            cloud.delegations.put, Delegation(owner=me.user, kind=kind, delegate=delegate)
        )
    except CloudRefused as exc:
        return redirect(request, "/account", error=exc.message)
    return redirect(request, "/account", message=f"{delegate} may now release your jobs.")


@router.post("/account/delegates/remove")
async def remove_delegate(request: Request, me: Principal = Depends(require_person)) -> Response:
    form = await check_form(request)
    try:
        kind = DelegateKind(validate.choice(_text(form, "kind"), "kind", ("user", "group")))
        delegate = validate.name(_text(form, "delegate"), "delegate")
    except CloudRefused as exc:
        return redirect(request, "/account", error=exc.message)
    await run_in_threadpool(cloud_of(request).delegations.delete, me.user, kind, delegate)
    return redirect(request, "/account", message=f"{delegate} may no longer release your jobs.")

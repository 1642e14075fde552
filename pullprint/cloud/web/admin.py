"""The admin pages under ``/admin``: printers (add by URI, test the connection, capabilities and
status), jobs, terminals (the secret shown once), users and groups, price lists, retention
settings, nodes and what the cloud knows of them, reports with charts (inline SVG drawn here, no
JavaScript) and CSV export, and a printable sheet of QR codes, one per printer.

Admins see every page; operators see printers and jobs. Handlers are thin: they check the
signed-in person and the form's CSRF token, validate with ``cloud.validate`` and call the same
library code as the API (``UserDirectory``, ``TerminalBook``, ``PrinterRegistry``,
``accounting.usage``/``reports``, ``daemon.discovery.probe``) in a worker thread.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

import segno
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from pullprint.cloud import validate
from pullprint.cloud.accounting import reports, usage
from pullprint.cloud.accounting.pricing import (
    COLORS,
    SIDEDNESS,
    UNITS,
    JobAttributes,
    PriceEntry,
    PriceError,
    PriceList,
    media_key,
)
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.context import Cloud, cloud_of
from pullprint.cloud.db import group_members, user_groups
from pullprint.cloud.db import jobs as jobs_table
from pullprint.cloud.jobs import paged
from pullprint.cloud.sessions import TERMINAL_METHODS
from pullprint.cloud.users import UserRole
from pullprint.cloud.validate import CancelRequest
from pullprint.cloud.web import layout
from pullprint.cloud.web.layout import check_form, redirect, render, require_admin
from pullprint.cloud.web.user import printer_url
from pullprint.errors import Forbidden, InvalidRequest, NotFound
from pullprint.model import Discovered, JobState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", route_class=layout.WebRoute)

ROLES = tuple(r.value for r in UserRole)
CHART_DAYS = 31
ADMIN_PAGE = 100  # jobs on one page of /admin/jobs, newest first; "Older jobs" shows the next


def require_staff(request: Request) -> Principal:
    """A signed-in admin or operator (else a redirect to sign in, or 403)."""
    found = layout.require_person(request)
    if found.role not in (Role.ADMIN, Role.OPERATOR):
        raise Forbidden(
            403, f"this page needs an admin or an operator; {found.describe()} may not see it"
        )
    return found


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _page(request: Request, template: str, nav: str, **context: Any) -> Response:
    return render(request, f"admin/{template}", nav="admin", section=nav, **context)


# -- overview -------------------------------------------------------------------------------------


@router.get("")
async def overview(request: Request, me: Principal = Depends(require_staff)) -> Response:
    cloud = cloud_of(request)
    printers = await run_in_threadpool(cloud.printers.all)
    counts = await run_in_threadpool(_job_counts, cloud)
    nodes = await run_in_threadpool(node_health, cloud)
    return _page(request, "index.html", "", printers=printers, counts=counts, nodes=nodes)


def _job_counts(cloud: Cloud) -> dict[str, int]:
    with cloud.engine.connect() as conn:
        rows = conn.execute(
            sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
        ).all()
    return {str(state): int(n) for state, n in rows}


# -- printers ----------------------------------------------------------------------------------


@router.get("/printers")
async def printers_page(request: Request, me: Principal = Depends(require_staff)) -> Response:
    cloud = cloud_of(request)
    printers = await run_in_threadpool(cloud.printers.all)
    known = {p.uri for p in printers}
    found = offered(await run_in_threadpool(cloud.printers.discovered), known)
    return _page(
        request, "printers.html", "printers", printers=printers,
        nodes=sorted(cloud.config.node_tokens), discovered=found,
        suggest=suggested_name,
    )  # fmt: skip


def offered(
    reports: list[tuple[str, Discovered, float]], known: set[str]
) -> list[tuple[str, Discovered, float]]:
    """One row per printer and node, its ipps:// URI before its ipp:// one (a printer announces
    both), none for a printer one of whose URIs is already added. Pure."""
    by_printer: dict[tuple[str, str], list[tuple[str, Discovered, float]]] = {}
    for row in reports:
        by_printer.setdefault((row[0], row[1].name), []).append(row)
    out = []
    for rows in by_printer.values():
        if any(d.uri in known for _n, d, _w in rows):
            continue
        out.append(min(rows, key=lambda r: not r[1].uri.startswith("ipps://")))
    return out


def suggested_name(announced: str) -> str:
    """A printer name for an announced one: lower case, letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", announced.lower()).strip("-")
    return name[:64] or "printer"


@router.post("/printers")
async def add_printer(request: Request, _me: Principal = Depends(require_admin)) -> Response:
    """Add or change a printer from the form (name, uri, node, price, location)."""
    form = await check_form(request)
    printer = validate.printer(
        {
            "name": _field(form, "name"),
            "uri": _field(form, "uri"),
            "node": _field(form, "node"),
            "price_per_page": _field(form, "price") or "0",
            "location": _field(form, "location"),
        }
    )
    stored = await run_in_threadpool(cloud_of(request).printers.upsert, printer)
    log.info("admin page: printer %s -> %s (node %s)", stored.name, stored.uri, stored.node)
    return redirect(
        request, f"/admin/printers/{stored.name}", message=f"Printer {stored.name} saved."
    )


@router.get("/printers/{name}")
async def printer_page(
    name: str, request: Request, me: Principal = Depends(require_staff)
) -> Response:
    """One printer; ``?test=1`` asks it now (Get-Printer-Attributes from the cloud host)."""
    from pullprint.daemon.discovery import probe

    name = validate.name(name, "printer")
    cloud = cloud_of(request)
    printer = await run_in_threadpool(cloud.printers.get, name)
    if printer is None:
        raise NotFound(404, f"no printer {name}")
    result = None
    if request.query_params.get("test"):
        result = await run_in_threadpool(probe, printer.name, printer.uri)
    return _page(
        request, "printer.html", "printers", printer=printer, probe=result,
        page_url=printer_url(request, name),
    )  # fmt: skip


# -- jobs ---------------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs_page(request: Request, me: Principal = Depends(require_staff)) -> Response:
    state_q = request.query_params.get("state") or ""
    state = validate.job_state(state_q) if state_q else None
    after = validate.Cursor.parse(request.query_params.get("after"))
    listing = partial(cloud_of(request).jobs.list, None, state)
    found, following = await run_in_threadpool(paged, listing, ADMIN_PAGE, after)
    older = None
    if following is not None:
        query = {"state": state_q, "after": following} if state_q else {"after": following}
        older = f"/admin/jobs?{urlencode(query)}"
    return _page(
        request, "jobs.html", "jobs", jobs=found, state=state_q,
        states=[s.value for s in JobState], older=older, newer=after is not None,
    )  # fmt: skip


@router.post("/jobs/{uuid}/cancel")
async def cancel_job(
    uuid: str, request: Request, me: Principal = Depends(require_staff)
) -> Response:
    await check_form(request)
    uuid = validate.job_uuid(uuid)
    job = await run_in_threadpool(
        cloud_of(request).jobs.cancel, me, uuid, CancelRequest(None, f"canceled by {me.user}")
    )
    return redirect(request, "/admin/jobs", message=f"Canceled {job.title!r} of {job.owner}.")


# -- terminals --------------------------------------------------------------------------------


@router.get("/terminals")
async def terminals_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    return await _terminals(request)


async def _terminals(request: Request, created: dict[str, Any] | None = None) -> Response:
    cloud = cloud_of(request)
    terminals = await run_in_threadpool(cloud.terminals.all)
    printers = await run_in_threadpool(cloud.printers.all)
    return _page(
        request, "terminals.html", "terminals", terminals=terminals, printers=printers,
        methods=TERMINAL_METHODS, created=created,
    )  # fmt: skip


@router.post("/terminals")
async def add_terminal(request: Request, _me: Principal = Depends(require_admin)) -> Response:
    """Register a terminal; the answer page shows its secret, this once (never stored)."""
    form = await check_form(request)
    name = validate.name(_field(form, "name"), "name")
    printer = validate.name(_field(form, "printer"), "printer")
    methods = tuple(m for m in TERMINAL_METHODS if m in form.getlist("methods"))
    if not methods:
        raise InvalidRequest(422, f"choose how users sign in: {', '.join(TERMINAL_METHODS)}")
    cloud = cloud_of(request)
    if await run_in_threadpool(cloud.printers.get, printer) is None:
        raise NotFound(404, f"no printer {printer}")
    token = await run_in_threadpool(cloud.terminals.add, name, printer, methods)
    return await _terminals(
        request, {"name": name, "printer": printer, "methods": methods, "token": token}
    )


@router.post("/terminals/{name}/delete")
async def delete_terminal(
    name: str, request: Request, _me: Principal = Depends(require_admin)
) -> Response:
    return await _delete(request, "terminal", name, cloud_of(request).terminals.delete)


async def _delete(
    request: Request, kind: str, name: str, remove: Callable[[str], bool]
) -> Response:
    """Check the form, delete ``kind`` ``name`` with ``remove`` (False: there was none, 404)
    and go back to its page."""
    await check_form(request)
    name = validate.name(name, kind)
    if not await run_in_threadpool(remove, name):
        raise NotFound(404, f"no {kind} {name}")
    back = "/admin/terminals" if kind == "terminal" else "/admin/users"
    return redirect(request, back, message=f"{kind.capitalize()} {name} deleted.")


# -- users and groups -------------------------------------------------------------------------


def all_groups(cloud: Cloud) -> dict[str, list[str]]:
    """Every group (also those without members) with its members, sorted. Reads only."""
    with cloud.engine.connect() as conn:
        names = conn.execute(sa.select(user_groups.c.name).order_by(user_groups.c.name)).all()
        members = conn.execute(
            sa.select(group_members.c.group_name, group_members.c.user).order_by(
                group_members.c.user
            )
        ).all()
    found: dict[str, list[str]] = {str(n.name): [] for n in names}
    for row in members:
        found.setdefault(str(row.group_name), []).append(str(row.user))
    return found


@router.get("/users")
async def users_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    cloud = cloud_of(request)
    users = await run_in_threadpool(cloud.users.all)
    groups = await run_in_threadpool(all_groups, cloud)
    return _page(request, "users.html", "users", users=users, groups=groups, roles=ROLES)


@router.post("/users")
async def put_user(request: Request, _me: Principal = Depends(require_admin)) -> Response:
    """Create or change a user: role, display name, email, PIN, password, card, disabled
    (empty fields keep what is stored). Disabling ends the user's sessions."""
    form = await check_form(request)
    name = validate.name(_field(form, "name"), "name")
    pin = _field(form, "pin")
    password = form.get("password")
    card = _field(form, "card")
    fields: dict[str, Any] = {
        "display_name": validate.text(
            {"v": _field(form, "display_name")}, "v", max_len=255, min_len=0
        ),
        "email": validate.text({"v": _field(form, "email")}, "v", max_len=255, min_len=0),
        "role": validate.choice(_field(form, "role") or "user", "role", ROLES),
        "pin": validate.pin(pin) if pin else None,
        "password": validate.password(password) if isinstance(password, str) and password else None,
        "disabled": _field(form, "disabled") == "yes",
    }
    key = validate.card(card) if card else None
    cloud = cloud_of(request)

    def store() -> bool:
        created = cloud.users.upsert(name, source="local", **fields)
        if key is not None:
            cloud.users.add_card(name, key, source="local", approved=True)
        if fields["disabled"]:
            cloud.sessions.close_all(name)
        return created

    created = await run_in_threadpool(store)
    return redirect(
        request, "/admin/users", message=f"User {name} {'added' if created else 'saved'}."
    )


@router.post("/groups")
async def put_group(request: Request, _me: Principal = Depends(require_admin)) -> Response:
    """Create a group or replace its members (names separated by spaces or commas)."""
    form = await check_form(request)
    name = validate.name(_field(form, "name"), "group")
    members = validate.names(_field(form, "members").replace(",", " ").split(), "members")
    stored = await run_in_threadpool(cloud_of(request).groups.put, name, members)
    return redirect(
        request, "/admin/users", message=f"Group {name}: {', '.join(stored) or 'no members'}."
    )


@router.post("/groups/{name}/delete")
async def delete_group(
    name: str, request: Request, _me: Principal = Depends(require_admin)
) -> Response:
    return await _delete(request, "group", name, cloud_of(request).groups.delete)


# -- prices -------------------------------------------------------------------------------------


def parse_price_lines(text: str) -> tuple[PriceEntry, ...]:
    """Price-list lines ``MEDIA COLOR SIDES PRICE`` (``* mono one-sided 0.05``); blank lines
    and ``#`` comments are skipped. InvalidRequest names the line that is wrong."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 4:
            raise InvalidRequest(422, f"price line {number}: expected MEDIA COLOR SIDES PRICE")
        try:
            entries.append(
                PriceEntry(
                    media=media_key(parts[0]),
                    color=parts[1],
                    sides=parts[2],
                    price=validate.price(parts[3]),
                )
            )
        except PriceError as exc:
            raise InvalidRequest(422, f"price line {number}: {exc}") from exc
    return tuple(entries)


@router.get("/prices")
async def prices_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    cloud = cloud_of(request)

    def load() -> list[tuple[Any, usage.PrinterPricing]]:
        printers = cloud.printers.all()
        with cloud.engine.connect() as conn:
            return [(p, usage.load_pricing(conn, p.name)) for p in printers]

    rows = await run_in_threadpool(load)
    return _page(
        request, "prices.html", "prices", rows=rows, units=UNITS, colors=COLORS,
        sidedness=SIDEDNESS,
    )  # fmt: skip


@router.post("/prices/{printer}")
async def put_prices(
    printer: str, request: Request, _me: Principal = Depends(require_admin)
) -> Response:
    """Replace a printer's price list from the form's lines (empty: no list, the printer's
    flat price per page applies) and its PaperCut flag."""
    form = await check_form(request)
    printer = validate.name(printer, "printer")
    unit = validate.choice(_field(form, "unit") or "impression", "unit", UNITS)
    entries = parse_price_lines(_field(form, "prices"))
    try:
        price_list = PriceList(unit, entries) if entries else None
    except PriceError as exc:
        raise InvalidRequest(422, str(exc)) from exc
    papercut = _field(form, "papercut") == "yes"
    cloud = cloud_of(request)
    if await run_in_threadpool(cloud.printers.get, printer) is None:
        raise NotFound(404, f"no printer {printer}")

    def store() -> None:
        with cloud.engine.begin() as conn:
            usage.store_pricing(conn, printer, price_list, papercut)

    await run_in_threadpool(store)
    return redirect(
        request, "/admin/prices", message=f"Prices of {printer}: {len(entries)} entries saved."
    )


# -- retention and nodes -----------------------------------------------------------------------


RETENTION_KEYS = (
    ("expire_seconds", "Unprinted jobs expire after"),
    ("keep_printed_seconds", "Printed documents are kept for"),
    ("retention_sweep_seconds", "The retention sweep runs every"),
    ("download_url_seconds", "A signed download URL lasts"),
    ("session_seconds", "A web session lasts"),
    ("terminal_session_seconds", "A session at a terminal lasts"),
)


@router.get("/retention")
async def retention_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    config = cloud_of(request).config
    values = [(label, key, float(getattr(config, key))) for key, label in RETENTION_KEYS]
    return _page(
        request, "retention.html", "retention", values=values, storage=config.storage_mode,
        sweep=None,
    )  # fmt: skip


@router.post("/retention/run")
async def run_retention(request: Request, _me: Principal = Depends(require_admin)) -> Response:
    await check_form(request)
    done = await run_in_threadpool(cloud_of(request).jobs.sweep)
    text = ", ".join(f"{k} {v}" for k, v in done.to_json().items())
    return redirect(request, "/admin/retention", message=f"Retention sweep: {text}.")


@dataclass(frozen=True)
class NodeHealth:
    """What the cloud knows of a node: its token is configured, the last job it registered,
    the last job it took to print, how many jobs it has in flight, its printers."""

    name: str
    configured: bool
    printers: tuple[str, ...]
    last_registered: float | None
    last_printing: float | None
    in_flight: int

    @property
    def last_contact(self) -> float | None:
        seen = [t for t in (self.last_registered, self.last_printing) if t is not None]
        return max(seen) if seen else None


def node_health(cloud: Cloud) -> list[NodeHealth]:
    """Every node named in ``cloud.node_tokens`` or by a printer, from the cloud's own records
    (registrations and claims); reads only."""
    printers = cloud.printers.all()
    names = sorted(set(cloud.config.node_tokens) | {p.node for p in printers})
    busy = (JobState.CLAIMED.value, JobState.PRINTING.value)
    with cloud.engine.connect() as conn:
        registered = dict(
            conn.execute(
                sa.select(jobs_table.c.origin, sa.func.max(jobs_table.c.created_at)).group_by(
                    jobs_table.c.origin
                )
            ).all()
        )
        claimed = dict(
            conn.execute(
                sa.select(jobs_table.c.claimed_by, sa.func.max(jobs_table.c.updated_at))
                .where(jobs_table.c.claimed_by.is_not(None))
                .group_by(jobs_table.c.claimed_by)
            ).all()
        )
        flight: dict[str, int] = dict(
            conn.execute(
                sa.select(jobs_table.c.claimed_by, sa.func.count())
                .where(jobs_table.c.state.in_(busy))
                .group_by(jobs_table.c.claimed_by)
            ).all()
        )
    return [
        NodeHealth(
            name=name,
            configured=name in cloud.config.node_tokens,
            printers=tuple(p.name for p in printers if p.node == name),
            last_registered=registered.get(name),
            last_printing=claimed.get(name),
            in_flight=int(flight.get(name, 0)),
        )
        for name in names
    ]


@router.get("/nodes")
async def nodes_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    nodes = await run_in_threadpool(node_health, cloud_of(request))
    return _page(request, "nodes.html", "nodes", nodes=nodes, now=time.time())


# -- reports and charts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """A bar chart laid out for an inline SVG (``width`` x ``height`` user units)."""

    title: str
    bars: tuple[Bar, ...]
    width: float
    height: float
    horizontal: bool
    total: int


def bar_chart(title: str, data: Sequence[tuple[str, int]], *, horizontal: bool = False) -> Chart:
    """Lay out ``data`` (label, value) as bars scaled to the largest value: vertical columns
    (pages per day) or horizontal rows (per printer). Pure function."""
    top = max((v for _, v in data), default=0) or 1
    bars = []
    if horizontal:
        row, label_w, width = 22.0, 110.0, 480.0
        for i, (label, value) in enumerate(data):
            w = (width - label_w - 50) * value / top
            bars.append(Bar(label, value, label_w, i * row + 4, w, row - 8))
        return Chart(title, tuple(bars), width, max(1, len(data)) * row + 4, True, _sum(data))
    width, height, base = 480.0, 180.0, 150.0
    step = width / max(1, len(data))
    bar = min(step * 0.8, 36.0)
    for i, (label, value) in enumerate(data):
        h = (base - 15) * value / top
        bars.append(Bar(label, value, i * step + (step - bar) / 2, base - h, bar, h))
    return Chart(title, tuple(bars), width, height, False, _sum(data))


def _sum(data: Iterable[tuple[str, int]]) -> int:
    return sum(v for _, v in data)


def days_with_pages(per_day: Sequence[reports.ReportRow]) -> list[tuple[str, int]]:
    """(day, pages) for every day of the last ``CHART_DAYS`` that have any row, the days
    between them included with 0 (a chart without gaps). Pure function."""
    pages: dict[str, int] = {}
    for row in per_day:
        pages[row.key] = pages.get(row.key, 0) + row.pages
    if not pages:
        return []
    last = date.fromisoformat(max(pages))
    first = max(date.fromisoformat(min(pages)), last - timedelta(days=CHART_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [(d.isoformat(), pages.get(d.isoformat(), 0)) for d in days]


@dataclass(frozen=True)
class Share:
    """Colour share of the printed pages, as a two-part horizontal bar."""

    color_pages: int
    mono_pages: int

    @property
    def total(self) -> int:
        return self.color_pages + self.mono_pages

    @property
    def color_percent(self) -> float:
        return 100.0 * self.color_pages / self.total if self.total else 0.0


def colour_share(cloud: Cloud, rows: Sequence[reports.UsageRow]) -> Share:
    """Printed (completed) pages in colour and in grey, each job read as its printer got it
    (CUPS options overridden by the release options, ``JobAttributes.from_options``)."""
    done = [r for r in rows if r.has_cost_data]
    uuids = [r.job_uuid for r in done]
    options: dict[str, tuple[dict[str, str], int, dict[str, str]]] = {}
    with cloud.engine.connect() as conn:
        for start in range(0, len(uuids), 500):
            for j in conn.execute(
                sa.select(
                    jobs_table.c.uuid,
                    jobs_table.c.options,
                    jobs_table.c.copies,
                    jobs_table.c.release_options,
                ).where(jobs_table.c.uuid.in_(uuids[start : start + 500]))
            ):
                options[str(j.uuid)] = (dict(j.options), int(j.copies), dict(j.release_options))
    color = mono = 0
    for row in done:
        opts, copies, release = options.get(row.job_uuid, ({}, 1, {}))
        if JobAttributes.from_options(opts, copies, release).color == "mono":
            mono += row.pages
        else:
            color += row.pages
    return Share(color, mono)


def _filters(request: Request) -> reports.Filters:
    q = request.query_params
    return reports.Filters(
        user=validate.name(q["user"]) if q.get("user") else None,
        printer=validate.name(q["printer"], "printer") if q.get("printer") else None,
    )


def _rows(cloud: Cloud, filters: reports.Filters) -> list[reports.UsageRow]:
    with cloud.engine.connect() as conn:
        return reports.usage_rows(conn, filters)


@router.get("/reports")
async def reports_page(request: Request, me: Principal = Depends(require_admin)) -> Response:
    cloud = cloud_of(request)
    filters = _filters(request)
    rows = await run_in_threadpool(_rows, cloud, filters)
    per_day = days_with_pages(reports.group(rows, "period", "day"))
    per_printer = reports.group(rows, "printer")
    per_user = reports.group(rows, "user")
    share = await run_in_threadpool(colour_share, cloud, rows)
    charts = [
        bar_chart("Pages per day", per_day),
        bar_chart("Pages per printer", [(r.key, r.pages) for r in per_printer], horizontal=True),
    ]
    return _page(
        request, "reports.html", "reports", charts=charts, share=share, per_user=per_user,
        per_printer=per_printer, query=request.url.query, groups=reports.GROUPS,
        periods=reports.PERIODS,
    )  # fmt: skip


@router.get("/reports.csv")
async def report_csv(request: Request, me: Principal = Depends(require_admin)) -> Response:
    """The grouped report as CSV, the same text as ``GET /api/v1/accounting/reports?format=csv``
    (``accounting.reports.report_csv``)."""
    q = request.query_params
    by = validate.choice(q.get("group"), "group", reports.GROUPS, default="user")
    period = validate.choice(q.get("period"), "period", reports.PERIODS, default="month")
    rows = await run_in_threadpool(_rows, cloud_of(request), _filters(request))
    text = reports.report_csv(reports.group(rows, by, period))
    return layout.csv_download(text, f"usage-by-{by}")


@router.get("/transactions.csv")
async def transactions_csv(request: Request, me: Principal = Depends(require_admin)) -> Response:
    rows = await run_in_threadpool(_rows, cloud_of(request), _filters(request))
    return layout.csv_download(reports.details_csv(rows), "transactions")


# -- QR sheet ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QrCard:
    printer: str
    location: str
    url: str
    svg: str


def qr_svg(url: str, title: str) -> str:
    """An inline SVG QR code (error correction M) of ``url``, with ``title``."""
    qr = segno.make(url, error="m")
    return str(qr.svg_inline(scale=4, border=4, title=title, omitsize=True))  # viewBox: scales


@router.get("/qr")
async def qr_sheet(request: Request, me: Principal = Depends(require_admin)) -> Response:
    """A printable sheet: one QR code per printer, each opening that printer's page."""
    printers = await run_in_threadpool(cloud_of(request).printers.all)
    cards = []
    for p in printers:
        url = printer_url(request, p.name)
        cards.append(QrCard(p.name, p.location, url, qr_svg(url, f"pullprint printer {p.name}")))
    return _page(request, "qr.html", "qr", cards=cards)

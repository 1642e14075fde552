"""The accounting endpoints (``/api/v1/accounting/...``, docs/accounting.md) and the background
PaperCut sync. Included by ``cloud.app.create_app``; handlers are thin: check the role, validate,
run the database work in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from pullprint.cloud import ledger, validate
from pullprint.cloud.accounting import accounts, papercut, reports, usage
from pullprint.cloud.accounting.accounts import KINDS, AccountRef
from pullprint.cloud.accounting.pricing import PriceEntry, PriceError, PriceList, media_key
from pullprint.cloud.auth import Principal, Role, require
from pullprint.cloud.db import jobs
from pullprint.errors import Forbidden, InvalidRequest, NotFound

log = logging.getLogger(__name__)

MAX_PRICES = 200
MAX_MONEY = Decimal(100_000_000)


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(422, message)


def _engine(request: Request) -> Engine:
    engine = request.app.state.cloud.engine
    assert isinstance(engine, Engine)
    return engine


def _currency(request: Request) -> str:
    return str(request.app.state.cloud.config.currency)


def _principal(request: Request, *roles: Role) -> Principal:
    principal = request.app.state.cloud.auth.authenticate(request.headers.get("authorization"))
    assert isinstance(principal, Principal)
    return require(principal, *roles)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return validate.body_object(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(400, f"the request body is not valid JSON: {exc}") from exc


def money(value: Any, key: str, *, signed: bool = False) -> Decimal:
    """A money amount: a decimal string (or integer), never a float."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f'{key} must be a decimal string like "5.00" (never a float)')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise _bad(f'{key} must be a decimal string like "5.00"') from exc
    low = -MAX_MONEY if signed else Decimal(0)
    if not amount.is_finite() or not low <= amount <= MAX_MONEY:
        raise _bad(f"{key} must be between {low} and {MAX_MONEY}")
    return amount


def _minor(amount: Decimal, currency: str, key: str) -> int:
    minor = amount.scaleb(ledger.minor_exponent(currency))
    if minor != minor.to_integral_value():
        raise _bad(f"{key} has more decimals than {currency} has")
    return int(minor)


def _account_ref(kind: str, name: str) -> AccountRef:
    if kind not in KINDS:
        raise _bad(f"account kind must be one of {list(KINDS)}")
    return AccountRef(kind, validate.name(name, "account"))


def _when(value: str | None, key: str) -> float | None:
    """A query bound: ``2024-03-01``, an ISO 8601 time, or seconds since the epoch (UTC)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{key} must be a date like 2024-03-01 or seconds since the epoch") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _filters(request: Request) -> reports.Filters:
    q = request.query_params
    return reports.Filters(
        user=validate.name(q["user"]) if q.get("user") else None,
        printer=validate.name(q["printer"], "printer") if q.get("printer") else None,
        account=q.get("account") or None,
        since=_when(q.get("since"), "since"),
        until=_when(q.get("until"), "until"),
    )


def _csv_response(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# -- the background PaperCut sync --------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the PaperCut sync while the app serves (idle while PaperCut is not configured)."""
    task = asyncio.get_running_loop().create_task(_sync_forever(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sync_forever(app: FastAPI) -> None:
    engine = app.state.cloud.engine
    sync = papercut.PaperCutSync(engine)
    try:
        while True:
            delay = 2.0
            try:
                settings = await run_in_threadpool(papercut.load_settings, engine)
                if settings is not None:
                    delay = settings.poll_ms / 1000
                    await run_in_threadpool(sync.run_once)
            except Exception:  # keep polling; the next pass retries
                log.exception("PaperCut sync failed; retrying")
            await asyncio.sleep(delay)
    finally:
        sync.close()


router = APIRouter(prefix="/accounting", lifespan=lifespan)


# -- prices ------------------------------------------------------------------------------------


def _pricing_json(printer: str, pricing: usage.PrinterPricing) -> dict[str, Any]:
    price_list = pricing.price_list
    return {
        "printer": printer,
        "unit": price_list.unit if price_list else "impression",
        "papercut": pricing.papercut,
        "prices": [
            {"media": e.media, "color": e.color, "sides": e.sides, "price": str(e.price)}
            for e in (price_list.entries if price_list else ())
        ],
    }


@router.put("/printers/{printer}/prices")
async def put_prices(printer: str, request: Request) -> dict[str, Any]:
    """Replace a printer's price list and PaperCut flag (admin)."""
    _principal(request, Role.ADMIN)
    printer = validate.name(printer, "printer")
    body = await _body(request)
    raw = body.get("prices") or []
    if not isinstance(raw, list) or len(raw) > MAX_PRICES:
        raise _bad(f"prices must be a list of at most {MAX_PRICES} entries")
    papercut_flag = body.get("papercut", False)
    if not isinstance(papercut_flag, bool):
        raise _bad("papercut must be true or false")
    try:
        entries = tuple(
            PriceEntry(
                media=media_key(str(validate.body_object(e).get("media", "*"))),
                color=str(e.get("color", "")),
                sides=str(e.get("sides", "")),
                price=validate.price(e.get("price")),
            )
            for e in raw
        )
        price_list = PriceList(str(body.get("unit", "impression")), entries) if entries else None
    except PriceError as exc:
        raise _bad(str(exc)) from exc

    def store() -> dict[str, Any]:
        engine = _engine(request)
        with engine.begin() as conn:
            usage.store_pricing(conn, printer, price_list, papercut_flag)
            return _pricing_json(printer, usage.load_pricing(conn, printer))

    return await run_in_threadpool(store)


@router.get("/printers/{printer}/prices")
async def get_prices(printer: str, request: Request) -> dict[str, Any]:
    """A printer's price list (admin, node)."""
    _principal(request, Role.ADMIN, Role.NODE)
    printer = validate.name(printer, "printer")

    def load() -> dict[str, Any]:
        with _engine(request).connect() as conn:
            return _pricing_json(printer, usage.load_pricing(conn, printer))

    return await run_in_threadpool(load)


# -- accounts ----------------------------------------------------------------------------------


def _account_json(request: Request, ref: AccountRef, with_entries: bool) -> dict[str, Any]:
    with _engine(request).connect() as conn:
        account = accounts.get(conn, ref)
        if account is None:
            raise NotFound(404, f"no account {ref}")
        data = account.to_json()
        if with_entries:
            data["entries"] = [
                {
                    "id": int(e["id"]),
                    "kind": e["kind"],
                    "amount": str(ledger.from_minor(int(e["amount_minor"]), account.currency)),
                    "transaction_id": e["transaction_id"],
                    "job_uuid": e["job_uuid"],
                    "comment": e["comment"],
                    "created_at": e["created_at"],
                }
                for e in accounts.entries(conn, ref)
            ]
    return data


MAX_MEMBERS = 1000


def _members(value: Any, ref: AccountRef) -> tuple[str, ...] | None:
    """A shared account's members: "user:NAME" or "group:NAME" each; None when not given."""
    if value is None:
        return None
    if ref.kind != accounts.SHARED:
        raise _bad("members: only a shared account has members")
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise _bad(f"members must be a list of at most {MAX_MEMBERS} entries")
    out = []
    for item in value:
        kind, _, who = item.partition(":") if isinstance(item, str) else ("", "", "")
        if kind not in ("user", "group"):
            raise _bad('members: each entry is "user:NAME" or "group:NAME"')
        out.append(f"{kind}:{validate.name(who, 'members')}")
    return tuple(dict.fromkeys(out))


@router.put("/accounts/{kind}/{name}")
async def put_account(kind: str, name: str, request: Request) -> dict[str, Any]:
    """Create or configure an account (admin): ``enforced``, ``overdraft``, ``quota_pages``;
    for a shared account ``members`` (``["user:alice", "group:physics"]``): who may charge it."""
    _principal(request, Role.ADMIN)
    ref = _account_ref(kind, name)
    body = await _body(request)
    currency = _currency(request)
    enforced = body.get("enforced")
    if enforced is not None and not isinstance(enforced, bool):
        raise _bad("enforced must be true or false")
    overdraft = None
    if body.get("overdraft") is not None:
        overdraft = _minor(money(body["overdraft"], "overdraft"), currency, "overdraft")
    set_quota = "quota_pages" in body
    quota = validate.optional_integer(body, "quota_pages") if set_quota else None
    members = _members(body.get("members"), ref)

    def store() -> dict[str, Any]:
        with _engine(request).begin() as conn:
            accounts.configure(
                conn,
                ref,
                currency,
                enforced=enforced,
                overdraft_minor=overdraft,
                quota_pages=quota,
                set_quota=set_quota,
                members=members,
            )
        return _account_json(request, ref, False)

    return await run_in_threadpool(store)


@router.get("/accounts/{kind}/{name}")
async def get_account(kind: str, name: str, request: Request) -> dict[str, Any]:
    """An account with its journal (admin)."""
    _principal(request, Role.ADMIN)
    ref = _account_ref(kind, name)
    return await run_in_threadpool(_account_json, request, ref, True)


@router.post("/accounts/{kind}/{name}/adjust")
async def adjust_account(kind: str, name: str, request: Request) -> dict[str, Any]:
    """Add credit (positive) or charge (negative) an account (admin), with a comment."""
    _principal(request, Role.ADMIN)
    ref = _account_ref(kind, name)
    body = await _body(request)
    currency = _currency(request)
    amount = _minor(money(body.get("amount"), "amount", signed=True), currency, "amount")
    comment = validate.text(body, "comment", min_len=0, max_len=255, default="adjustment")

    def store() -> dict[str, Any]:
        with _engine(request).begin() as conn:
            accounts.ensure(conn, ref, currency)
            accounts.post(conn, ref, "adjustment", amount, comment)
        return _account_json(request, ref, False)

    return await run_in_threadpool(store)


# -- print-outs, counters, reports -------------------------------------------------------------


@router.get("/printouts/{uuid}")
async def get_printout(uuid: str, request: Request) -> dict[str, Any]:
    """The print-out's status, its Printer Usage transaction and summary (admin)."""
    _principal(request, Role.ADMIN)
    uuid = validate.job_uuid(uuid)

    def load() -> dict[str, Any]:
        with _engine(request).connect() as conn:
            return reports.printout(conn, uuid).to_json()

    return await run_in_threadpool(load)


@router.post("/jobs/{uuid}/counters", status_code=204)
async def post_counters(uuid: str, request: Request) -> Response:
    """The printing node reports the printer's SNMP impression-counter delta for the job."""
    caller = _principal(request, Role.NODE)
    uuid = validate.job_uuid(uuid)
    body = await _body(request)
    delta = validate.integer(body, "snmp_delta", maximum=100_000_000)

    def store() -> None:
        with _engine(request).begin() as conn:
            claimed = conn.execute(
                jobs.select().with_only_columns(jobs.c.claimed_by).where(jobs.c.uuid == uuid)
            ).scalar_one_or_none()
            if claimed != caller.node:
                raise Forbidden(403, f"job {uuid} was not claimed by node {caller.node}")
            if not usage.record_counters(conn, uuid, delta):
                raise NotFound(404, f"job {uuid} has not been released")

    await run_in_threadpool(store)
    return Response(status_code=204)


@router.get("/transactions")
async def list_transactions(request: Request) -> Response:
    """Printer Usage transactions with their details (admin); ``format=csv`` for CSV."""
    _principal(request, Role.ADMIN)
    filters = _filters(request)

    def load() -> list[reports.UsageRow]:
        with _engine(request).connect() as conn:
            return reports.usage_rows(conn, filters)

    rows = await run_in_threadpool(load)
    if request.query_params.get("format") == "csv":
        return _csv_response(reports.details_csv(rows), "transactions")
    return JSONResponse({"transactions": [r.to_json() for r in rows]})


@router.get("/reports")
async def get_report(request: Request) -> Response:
    """Sums per ``group`` (user, printer, account, period) with their transaction ids (admin);
    ``period`` day/month/year; filters user, printer, account, since, until; ``format=csv``."""
    _principal(request, Role.ADMIN)
    q = request.query_params
    by = q.get("group", "user")
    period = q.get("period", "month")
    if by not in reports.GROUPS:
        raise _bad(f"group must be one of {list(reports.GROUPS)}")
    if period not in reports.PERIODS:
        raise _bad(f"period must be one of {list(reports.PERIODS)}")
    filters = _filters(request)

    def load() -> list[reports.ReportRow]:
        with _engine(request).connect() as conn:
            return reports.group(reports.usage_rows(conn, filters), by, period)

    rows = await run_in_threadpool(load)
    if q.get("format") == "csv":
        return _csv_response(reports.report_csv(rows), f"usage-by-{by}")
    return JSONResponse({"group": by, "period": period, "rows": [r.to_json() for r in rows]})


# -- PaperCut ----------------------------------------------------------------------------------


@router.put("/papercut")
async def put_papercut(request: Request) -> dict[str, Any]:
    """Configure PaperCut (admin): ``database_url`` (its external database, read-only use),
    ``xmlrpc_url``, ``auth_token``, ``poll_ms``. The token is never returned."""
    _principal(request, Role.ADMIN)
    body = await _body(request)
    settings = papercut.PaperCutSettings(
        database_url=validate.text(body, "database_url", max_len=1024),
        xmlrpc_url=validate.text(body, "xmlrpc_url", max_len=1024),
        auth_token=validate.text(body, "auth_token", max_len=255),
        poll_ms=validate.integer(body, "poll_ms", minimum=100, maximum=3_600_000, default=5000),
    )
    await run_in_threadpool(papercut.store_settings, _engine(request), settings)
    return settings.to_json()


@router.get("/papercut")
async def get_papercut(request: Request) -> dict[str, Any]:
    """The PaperCut settings without the token (admin); 404 when not configured."""
    _principal(request, Role.ADMIN)
    settings = await run_in_threadpool(papercut.load_settings, _engine(request))
    if settings is None:
        raise NotFound(404, "PaperCut is not configured")
    return settings.to_json()


@router.post("/papercut/sync")
async def sync_papercut(request: Request) -> dict[str, Any]:
    """Run one PaperCut sync pass now (admin); answers what it settled."""
    _principal(request, Role.ADMIN)

    def once() -> dict[str, Any]:
        sync = papercut.PaperCutSync(_engine(request))
        try:
            return sync.run_once().to_json()
        finally:
            sync.close()

    try:
        return await run_in_threadpool(once)
    except papercut.PaperCutError as exc:
        raise InvalidRequest(502, str(exc)) from exc
